"""Import layers: the arrows of src/patchvad point down (docs/design: model/ imports no trainer or harness).

Every import statement of every module counts, also those inside functions (lazy
imports) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "patchvad"

#: package of patchvad -> the top-level modules/packages of patchvad it must not import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "model": frozenset({"training", "inference", "adapt", "metrics", "compare", "demo", "viz", "cli"}),
    "metrics": frozenset({"model", "training", "inference", "adapt", "compare", "demo", "viz", "cli"}),
    "training": frozenset({"inference", "adapt", "compare", "demo", "viz", "cli"}),
    **{low: frozenset({"model", "training", "inference", "adapt", "metrics", "compare", "viz", "demo", "cli"})
       for low in ("features", "io", "data")},
}


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every module ``source`` imports (``module``: its own dotted name).

    ``from a import b`` yields ``a``, and ``patchvad.b`` too when ``a`` is ``patchvad``
    (there ``b`` is a module); relative imports are resolved against ``module``'s package.
    """
    package = module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            if target == "patchvad":
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def violations(source: str, module: str) -> list[str]:
    """Imports of ``module`` (``patchvad.<layer>...``) that point up, as ``line: name``."""
    parts = module.split(".")
    forbidden = FORBIDDEN.get(parts[1], frozenset()) if len(parts) > 2 else frozenset()
    bad = []
    for line, name in imported_modules(source, module):
        names = name.split(".")
        if len(names) >= 2 and names[0] == "patchvad" and names[1] in forbidden:
            bad.append(f"{line}: {name}")
    return bad


def _module_name(path: Path) -> str:
    """``patchvad.model.methods.base``; a package's own file keeps its ``__init__`` (its package is the folder)."""
    return ".".join(path.relative_to(SRC).with_suffix("").parts)


def test_arrows_point_down() -> None:
    bad = []
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module.split(".")[1] not in FORBIDDEN:
            continue
        checked += 1
        bad += [f"{path.relative_to(SRC)}:{v}" for v in violations(path.read_text(encoding="utf-8"), module)]
    assert checked > 40, "the layered packages were not found"
    assert not bad, "imports that point up a layer:\n" + "\n".join(bad)


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("def f():\n    from patchvad.training import fit\n", "patchvad.model.model", ["2: patchvad.training"]),
    ("from patchvad import inference\n", "patchvad.model.scorer", ["1: patchvad.inference"]),
    ("import patchvad.viz.report as r\n", "patchvad.metrics.frame", ["1: patchvad.viz.report"]),
    ("from ...compare import plan\n", "patchvad.model.methods.base", ["1: patchvad.compare"]),
    ("from ..metrics import frame\n", "patchvad.features.__init__", ["1: patchvad.metrics"]),
    ("from ..metrics import frame\n", "patchvad.features.store", ["1: patchvad.metrics"]),
    ("from patchvad.model.methods import METHODS\n", "patchvad.compare", []),
    ("from patchvad.metrics.table import METRICS\n", "patchvad.model.model", ["1: patchvad.metrics.table"]),
    ("from patchvad.model.scorer import PatchScorer\n", "patchvad.model.model", []),
    ("from patchvad.data.folder import DatasetFolder\n", "patchvad.metrics.evaluate", []),
    ("from patchvad.models import x\n", "patchvad.metrics.evaluate", []),
])
def test_violations_finds_upward_imports(source: str, module: str, expected: list[str]) -> None:
    assert violations(source, module) == expected
