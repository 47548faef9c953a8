"""Selection rules (one file each) and their registry.

    base.py    SelectionConfig, Selection, the SelectionRule interface
    gauss.py   Gaussian proximity around the peak (default)
    radius.py  top-k inside the peak's neighbourhood
    plain.py   plain top-k (no proximity)

A new rule: one file with a :class:`SelectionRule` subclass and one line in
``SELECTIONS`` below (or :func:`register_selection` from outside the package).
"""

from __future__ import annotations

from patchvad.model.selections.base import Selection, SelectionConfig, SelectionRule
from patchvad.model.selections.gauss import GaussianProximity, proximity_weights
from patchvad.model.selections.plain import PlainTopK
from patchvad.model.selections.radius import RadiusProximity
from patchvad.registry import add, lookup

SELECTIONS: dict[str, SelectionRule] = {rule.name: rule for rule in (
    GaussianProximity(),
    RadiusProximity(),
    PlainTopK(),
)}


def get_selection(name: str) -> SelectionRule:
    """The registered rule called ``name`` (ConfigError naming the choices otherwise)."""
    return lookup(SELECTIONS, name, f"unknown selection mode '{name}' ({', '.join(SELECTIONS)})")


def register_selection(rule: SelectionRule) -> SelectionRule:
    """Add ``rule`` to the registry under ``rule.name`` (refuses to replace another rule)."""
    return add(SELECTIONS, rule.name, rule, "selection rule")


__all__ = ["SELECTIONS", "Selection", "SelectionConfig", "SelectionRule", "get_selection", "proximity_weights",
           "register_selection"]
