"""The sibling packages stand alone: firmware_bridge, calib and trt_build import nothing from edge.

Every import is found by walking the syntax tree, so imports inside functions (and importlib.import_module
calls with a literal name) count as much as the ones at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIBLINGS = ("firmware_bridge", "calib", "trt_build")
FORBIDDEN = {
    "firmware_bridge": {"edge"},
    "calib": {"edge"},
    "trt_build": {"edge"},
    "lpbf_common": {"edge", "firmware_bridge", "calib", "trt_build"},  # the neutral package below them all
}


def imported_modules(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the source, at any depth."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _call_name(node.func) in ("import_module", "__import__")):
            found.append((node.lineno, node.args[0].value))
    return found


def _call_name(func: ast.expr) -> str:
    """Name of a called function (`import_module` for importlib.import_module too)."""
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def test_walker_sees_imports_inside_functions_and_import_module_calls():
    src = ("import os\n"
           "def f():\n"
           "    from edge.messages import LayerEvent\n"
           "    class C:\n"
           "        def g(self):\n"
           "            import edge.sim.printer as p\n"
           "    return importlib.import_module('edge.config')\n")
    expected = [(1, "os"), (3, "edge.messages"), (6, "edge.sim.printer"), (7, "edge.config")]
    assert sorted(imported_modules(src)) == expected


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}: no Python files found under {ROOT / package}"
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {name}"
           for path in files
           for line, name in imported_modules(path.read_text(encoding="utf-8"), str(path))
           if name.split(".")[0] in FORBIDDEN[package]]
    assert not bad, f"{package} must stand alone:\n" + "\n".join(bad)


def test_siblings_are_the_packages_edge_uses():
    """The list above covers every sibling package that edge imports (a new sibling must be added here)."""
    used = {name.split(".")[0]
            for path in (ROOT / "edge").rglob("*.py")
            for _, name in imported_modules(path.read_text(encoding="utf-8"), str(path))}
    top_level = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert used & (top_level - {"edge"}) == set(SIBLINGS) | {"lpbf_common"}
