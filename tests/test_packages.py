"""The package layout: every package names its public things, each name resolves to what its
submodule defines, no name hides a submodule, and importing a package stays cheap."""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

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


def _module_imports() -> dict[str, set[str]]:
    """Each cnnlab module's imports of other cnnlab modules at module level (what runs on import)."""
    root = Path(cnnlab.__file__).parent
    modules = {
        ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in root.rglob("*.py")
    }
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnlab"):
                found |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                }
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {dep for dep in found if dep in modules and dep != name}
    return graph


def test_no_module_imports_itself_in_a_cycle():
    graph, done, path = _module_imports(), set(), []

    def visit(name: str) -> None:
        if name in path:
            raise AssertionError(f"import cycle: {' -> '.join([*path[path.index(name) :], name])}")
        if name in done:
            return
        path.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
