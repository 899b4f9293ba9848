"""The command line, `python -m cnnlab COMMAND` or `cnnlab COMMAND`: one module per command, each
holding its arguments beside its action; bad input exits 2 with one line."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.cli.dispatch import main

__all__ = ["main"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "main": "dispatch",
    },
)
