"""The ``ctrnn-dyn`` command line.

Subcommands are registered with :func:`subcommand`; adding one is one function::

    @subcommand("reproduce", help="reproduce a figure")
    def _reproduce(parser: argparse.ArgumentParser) -> Handler:
        parser.add_argument("name")
        def run(args: argparse.Namespace) -> int:
            ...
            return 0
        return run

``ctrnn-dyn train --task flipflop --hidden 64 --steps 3000 --out DIR`` trains a CT-RNN and
writes ``DIR/checkpoint``, ``DIR/history.csv``, ``DIR/loss.png`` and ``DIR/summary.json``;
``--resume`` continues a killed run from ``DIR/checkpoint`` (bit-identical to an uninterrupted
run with the same options).

Errors: a user's mistake (a bad value, a missing or unreadable file, a run that cannot be
resumed as asked) ends with exit status 2 and one line ``ctrnn-dyn COMMAND: error: ...`` naming
the argument and what is expected; ``--verbose`` adds the traceback. A handler reports a mistake
it finds by raising :class:`UsageError`; :func:`main` also turns a ``ValueError``,
``TypeError`` or file error escaping a handler into that line, so a new subcommand gets this
for free. Progress: tqdm bars on a terminal, otherwise one log line per stage on stderr
(``--quiet`` hides them).

Only argparse is imported to build the parser; each subcommand's arguments are added when that
subcommand is used, and its handler imports JAX, so ``ctrnn-dyn --help`` is quick. Before a
handler runs, :func:`ctrnn_dyn.compile_cache.enable` turns on XLA's persistent compilation cache
in a private directory, so a second run compiles nothing the first one compiled.
"""

from __future__ import annotations

import ctrnn_dyn.cli.commands  # noqa: F401 - importing it registers the subcommands
from ctrnn_dyn.cli.core import SUBCOMMANDS as SUBCOMMANDS
from ctrnn_dyn.cli.core import Configure as Configure
from ctrnn_dyn.cli.core import Handler as Handler
from ctrnn_dyn.cli.core import UsageError as UsageError
from ctrnn_dyn.cli.core import build_parser as build_parser
from ctrnn_dyn.cli.core import check_output_dir as check_output_dir
from ctrnn_dyn.cli.core import main as main
from ctrnn_dyn.cli.core import subcommand as subcommand

__all__ = ["main", "subcommand", "SUBCOMMANDS", "build_parser", "UsageError",
           "check_output_dir"]
