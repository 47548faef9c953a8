"""``plain_topk``: the ablation without proximity and without window."""

from __future__ import annotations

import dataclasses

from patchvad.config import RunConfig
from patchvad.model.methods.base import PatchMILMethod


class PlainTopK(PatchMILMethod):
    """The proximity model's scorer and loss with window ``none`` and selection ``plain``."""

    name = "plain_topk"
    description = "the same patch scorer with plain top-k MIL (no window, no proximity)"

    def configure(self, cfg: RunConfig) -> RunConfig:
        """Window ``none``, selection ``plain``; everything else as given."""
        return dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, window="none", selection="plain"))
