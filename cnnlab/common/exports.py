"""Lazy re-exports: a package names its public things without importing the modules behind them.

Each package's `__init__` lists its public names and the submodule that defines each; a name (or a
submodule, as `package.submodule`) is imported on first use (PEP 562 module `__getattr__`), so `import cnnlab.data` or
`from cnnlab.analysis import evaluate` costs only the modules actually used, and the app's first
page and the CLI's help stay fast however much a package holds.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, which finds each name of `exports` (name -> submodule)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")  # a submodule, as `package.name`
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(importlib.import_module(package), name, value)  # found once, then a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
