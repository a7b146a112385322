"""The command line's frame: the registry of subcommands, the parser that configures a
subcommand only when it is used, one-line errors and the entry point :func:`main`."""

from __future__ import annotations

import argparse
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from ctrnn_dyn import compile_cache

__all__ = [
    "main",
    "subcommand",
    "SUBCOMMANDS",
    "build_parser",
    "UsageError",
    "check_output_dir",
    "Handler",
    "Configure",
]


Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], Handler]


#: name -> (help, configure function); filled by :func:`subcommand`.
SUBCOMMANDS: dict[str, tuple[str, Configure]] = {}


def subcommand(name: str, *, help: str) -> Callable[[Configure], Configure]:  # noqa: A002
    """Register ``configure(parser) -> handler`` as the subcommand ``name``."""

    def register(configure: Configure) -> Configure:
        SUBCOMMANDS[name] = (help, configure)
        return configure

    return register


class UsageError(Exception):
    """A user's mistake found by a subcommand's handler.

    :func:`main` prints ``ctrnn-dyn COMMAND: error: argument ARGUMENT: MESSAGE`` (one line; the
    traceback only with ``--verbose``) and exits with status 2.

    Args:
        argument: the option or positional at fault (``"--out"``), or ``None``.
        message: what is wrong and what is expected.
    """

    def __init__(self, argument: str | None, message: str) -> None:
        self.argument = argument
        self.message = message
        super().__init__(f"argument {argument}: {message}" if argument else message)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``PROG: error: MESSAGE (see PROG -h)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _LazySubParsers(argparse._SubParsersAction):
    """Sub-parsers whose arguments are added only when their subcommand is chosen (the
    top-level ``--help`` lists the subcommands without importing what they need)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        sub = self._name_parser_map.get(values[0])
        if sub is not None:
            _configure(sub)
        super().__call__(parser, namespace, values, option_string)


def _configure(sub: argparse.ArgumentParser) -> None:
    configure = getattr(sub, "_ctrnn_configure", None)
    if configure is None:
        return
    sub._ctrnn_configure = None
    sub.set_defaults(_handler=configure(sub), _parser=sub)
    # --verbose/--quiet are also accepted after the subcommand (default: the top level's),
    # under whichever of their spellings the subcommand has left free
    for flags, dest, help_text in ((("-v", "--verbose"), "verbose",
                                    "log at INFO level, show tracebacks"),
                                   (("-q", "--quiet"), "quiet",
                                    "no progress lines, warnings and errors only")):
        free = [f for f in flags if f not in sub._option_string_actions]
        if len(free) == len(flags) or (free and free[-1].startswith("--")):
            sub.add_argument(*free, dest=dest, action="store_true", default=argparse.SUPPRESS,
                             help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per registered subcommand.

    A subcommand's configure function runs when that subcommand is parsed (``--help`` of the
    top level configures none).
    """
    parser = _Parser(
        prog="ctrnn-dyn",
        description="Train continuous-time RNNs and reverse-engineer their dynamics.",
    )
    parser.register("action", "parsers", _LazySubParsers)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at INFO level, show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress lines, warnings and errors only")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, configure) in SUBCOMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        sub._ctrnn_configure = configure
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    """Root at WARNING (INFO with ``verbose``); the package's progress lines at INFO unless
    ``quiet``."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    logging.getLogger("ctrnn_dyn").setLevel(logging.WARNING if quiet else logging.INFO)


def _exit_with(parser: argparse.ArgumentParser, status: int, message: str,
               verbose: bool) -> NoReturn:
    if verbose:
        traceback.print_exc()
    hint = "" if verbose or status == 2 else " (run with --verbose for the traceback)"
    parser.exit(status, f"{parser.prog}: error: {message}{hint}\n")


#: exceptions a handler may raise for a user's mistake: reported in one line, exit status 2
_USER_ERRORS = (UsageError, ValueError, TypeError, FileNotFoundError, FileExistsError,
                NotADirectoryError, IsADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ctrnn-dyn`` console script; returns the exit status.

    Exits (``SystemExit``) with status 2 on a user's mistake, printing one line that names the
    argument (argparse's own errors, :class:`UsageError`, and a ``ValueError``, ``TypeError``
    or file error from the handler); other exceptions print one line and exit with status 1,
    ``KeyboardInterrupt`` with 130. ``--verbose`` adds the traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    _configure_logging(verbose, bool(getattr(args, "quiet", False)))
    sub = getattr(args, "_parser", parser)
    try:
        compile_cache.enable()  # a second run loads what this one compiles
        return int(args._handler(args) or 0)
    except _USER_ERRORS as err:
        _exit_with(sub, 2, str(err), verbose)
    except KeyboardInterrupt:
        _exit_with(sub, 130, "interrupted", verbose)
    except Exception as err:  # noqa: BLE001 - one line instead of a traceback
        _exit_with(sub, 1, f"{type(err).__name__}: {err}", verbose)


def check_output_dir(path: Path, argument: str = "--out", *, create: bool = True) -> Path:
    """Check that ``path`` is, or can be created as, a directory, and create it (unless
    ``create`` is false); returns it.

    Raises:
        UsageError: ``path`` is a file, one of its parents is a file, or it cannot be created
            (the message names ``argument``).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(argument, f"{path} is a file; expected a directory (it is created if "
                                   "it does not exist)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(argument, f"cannot create {path}: {parent} is a file, not a "
                                           "directory")
            break
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(argument, f"cannot create {path}: {err.strerror or err}") from err
    return path
