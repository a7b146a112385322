"""``python -m ctrnn_dyn.reproduce NAME|all --out DIR [--quick] [--seed S]``."""

from __future__ import annotations

import argparse
import logging
import sys

from ctrnn_dyn.reproduce import add_reproduce_arguments, run_reproduce_command


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the reproduction(s); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m ctrnn_dyn.reproduce",
        description="Reproduce a classic figure: writes OUT/NAME.png and OUT/NAME.json.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    add_reproduce_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_reproduce_command(args)


if __name__ == "__main__":
    sys.exit(main())
