"""List modules over --max-module lines and functions over --max-function lines (standard library only).

    python3 scripts/code_size.py edge firmware_bridge calib trt_build lpbf_common

Exit 1 when anything is over a limit, so it can gate a directory that is already clean. A function's size is
from its `def` (decorators included) to its last line, nested functions counted in their parent too.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def module_lines(path: Path) -> int:
    """Number of lines in a source file."""
    return len(path.read_text(encoding="utf-8").splitlines())


def long_functions(path: Path, limit: int) -> list[tuple[int, str, int]]:
    """(line, qualified name, lines) of every function or method longer than limit."""
    found: list[tuple[int, str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    size = child.end_lineno - first + 1
                    if size > limit:
                        found.append((first, name, size))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), "")
    return found


def main(argv: list[str] | None = None) -> int:
    """Print one line per offender, `path:line: what (N lines)`; exit 1 if there is any."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="Python files or folders to check")
    ap.add_argument("--max-module", type=int, default=500)
    ap.add_argument("--max-function", type=int, default=100)
    args = ap.parse_args(argv)
    files = sorted({f for p in args.paths for f in ([p] if p.is_file() else p.rglob("*.py"))})
    bad = 0
    for f in files:
        n = module_lines(f)
        if n > args.max_module:
            print(f"{f}:1: module ({n} lines > {args.max_module})")
            bad += 1
        for line, name, size in long_functions(f, args.max_function):
            print(f"{f}:{line}: function {name} ({size} lines > {args.max_function})")
            bad += 1
    print(f"{len(files)} files, {bad} over the limits", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
