"""The command line, `python -m cnnlab COMMAND` or `cnnlab COMMAND`: one module per command, each
holding its arguments beside its action; bad input exits 2 with one line."""

from cnnlab.cli.main import main

__all__ = ["main"]
