"""Selection rules (one file each) and their registry.

    base.py    SelectionConfig, Selection, the SelectionRule interface
    gauss.py   Gaussian proximity around the peak (default)
    radius.py  top-k inside the peak's neighbourhood
    plain.py   plain top-k (no proximity)

A new rule: one file with a :class:`SelectionRule` subclass and one line in
``SELECTIONS`` below (or :func:`register_selection` from outside the package).
"""

from __future__ import annotations

from patchvad.errors import ConfigError
from patchvad.model.selections.base import Selection, SelectionConfig, SelectionRule
from patchvad.model.selections.gauss import GaussianProximity, proximity_weights
from patchvad.model.selections.plain import PlainTopK
from patchvad.model.selections.radius import RadiusProximity

SELECTIONS: dict[str, SelectionRule] = {rule.name: rule for rule in (
    GaussianProximity(),
    RadiusProximity(),
    PlainTopK(),
)}


def get_selection(name: str) -> SelectionRule:
    """The registered rule called ``name`` (ConfigError naming the choices otherwise)."""
    try:
        return SELECTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown selection mode '{name}' ({', '.join(SELECTIONS)})") from None


def register_selection(rule: SelectionRule) -> SelectionRule:
    """Add ``rule`` to the registry under ``rule.name`` (refuses to replace another rule)."""
    if not rule.name:
        raise ValueError("a selection rule needs a name")
    if rule.name in SELECTIONS and SELECTIONS[rule.name] is not rule:
        raise ValueError(f"selection rule '{rule.name}' is registered already")
    SELECTIONS[rule.name] = rule
    return rule


__all__ = ["SELECTIONS", "Selection", "SelectionConfig", "SelectionRule", "get_selection", "proximity_weights",
           "register_selection"]
