"""The package layout: every package names its public things, each name resolves to what its
submodule defines, no name hides a submodule, and importing a package stays cheap."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import cnnlab

PACKAGES = sorted(m.name for m in pkgutil.walk_packages(cnnlab.__path__, "cnnlab.") if m.ispkg)
HEAVY = ("tensorflow", "keras", "optuna", "mlflow", "streamlit", "pandas")


@pytest.mark.parametrize("name", PACKAGES)
def test_each_package_exports_names_that_resolve_and_hide_no_submodule(name):
    package = importlib.import_module(name)
    summary = (package.__doc__ or "").strip().split("\n\n")[0]
    assert summary and len(summary.splitlines()) <= 3, "it opens with two or three lines on what it is"
    submodules = {m.name for m in pkgutil.iter_modules(package.__path__)}
    exported = getattr(package, "__all__", [])
    for public in exported:
        value = getattr(package, public)
        if public in submodules:
            assert value is importlib.import_module(f"{name}.{public}"), f"{name}.{public} is the submodule"
        else:
            assert getattr(value, "__module__", name).startswith(name), f"{name}.{public} comes from {name}"
    # A re-exported function named like its submodule would turn into the module once the
    # submodule is imported (`from cnnlab.training import resume` gave the module).
    for public in set(exported) & submodules:
        assert importlib.import_module(f"{name}.{public}").__name__ == f"{name}.{public}"
        assert not callable(getattr(package, public)), f"{name}.{public} names both a submodule and a function"


def test_importing_every_package_imports_no_heavy_library():
    code = (
        "import importlib, sys\n"
        f"for name in {PACKAGES!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
