"""Entry point for `python -m cnnlab`; the same as the `cnnlab` console script."""

import sys

from cnnlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
