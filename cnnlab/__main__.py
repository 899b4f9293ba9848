"""Entry point for `python -m cnnlab`."""

import sys

from cnnlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
