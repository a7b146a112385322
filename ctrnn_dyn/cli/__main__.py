"""``python -m ctrnn_dyn.cli``: the ``ctrnn-dyn`` command."""

import sys

from ctrnn_dyn.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
