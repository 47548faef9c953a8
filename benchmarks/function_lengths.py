"""Function lengths in src/: the longest function and how many exceed a threshold.

A function's length is its line span, from the ``def`` line to its last line inclusive
(docstring, comments and blank lines inside it included; decorators not). Methods and
nested functions count as functions of their own; a nested function's lines also count
in the function around it.

    .venv/bin/python benchmarks/function_lengths.py [--over 60] [--list] [root ...]
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Function:
    """One function definition: where it starts and how many lines it spans."""

    path: Path
    line: int
    name: str
    length: int


def functions(path: Path) -> list[Function]:
    """Every function and method defined in one Python file (nested ones included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            end = node.end_lineno if node.end_lineno is not None else node.lineno
            found.append(Function(path, node.lineno, node.name, end - node.lineno + 1))
    return found


def main(argv: list[str] | None = None) -> None:
    """Print the longest function and the count of functions longer than ``--over`` lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[REPO / "src"],
                        help="folders or files to scan (default: src/)")
    parser.add_argument("--over", type=int, default=60, help="count functions longer than this many lines")
    parser.add_argument("--list", action="store_true", help="also list every function over the threshold")
    args = parser.parse_args(argv)
    files = sorted(p for root in args.roots for p in ([root] if root.is_file() else root.rglob("*.py")))
    found = [f for path in files for f in functions(path)]
    if not found:
        raise SystemExit(f"no Python functions under {', '.join(map(str, args.roots))}")

    def where(f: Function) -> str:
        try:
            return f"{f.path.resolve().relative_to(REPO)}:{f.line}"
        except ValueError:
            return f"{f.path}:{f.line}"

    longest = max(found, key=lambda f: f.length)
    over = sorted((f for f in found if f.length > args.over), key=lambda f: -f.length)
    print(f"functions: {len(found)} in {len(files)} files")
    print(f"longest: {longest.name} at {where(longest)}, {longest.length} lines")
    print(f"over {args.over} lines: {len(over)}")
    if args.list:
        for f in over:
            print(f"  {f.length:4d}  {f.name}  {where(f)}")


if __name__ == "__main__":
    main()
