"""``proximity``: the method of the paper: patch scorer + window + Proximity-Aware Top-k MIL."""

from __future__ import annotations

from patchvad.model.methods.base import PatchMILMethod


class Proximity(PatchMILMethod):
    """Patch scorer trained with the optimal window and Proximity-Aware Top-k (``loss`` config as given)."""

    name = "proximity"
    description = "patch scorer, optimal window + Proximity-Aware Top-k MIL (the paper's method)"
