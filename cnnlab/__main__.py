"""Entry point for `python -m cnnlab`."""

import os
import sys

# TensorFlow's C++ start-up chatter would bury the progress lines; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cnnlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
