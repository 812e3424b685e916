"""``python -m clipos_lab``: the command line (see :mod:`clipos_lab.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
