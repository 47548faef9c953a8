"""Write zoo_reference.json: the parameter names and shapes of the checkpoints behind
patchvad's timm / OpenCLIP backbones, as the libraries themselves define them.

tests/test_backbones_hub.py builds random checkpoints with exactly these names and
shapes and loads them through the real loading code (strict key check). The file is
recorded from the libraries, not written by hand; regenerate it where timm and
open_clip import (they need a torchvision that works with the installed torch):

    python tests/data/zoo_reference.py

Pinned versions it was recorded with: timm 1.0.31, open_clip_torch 3.3.0.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import timm

from patchvad.features.backbones.vit import CLIP_MODELS, TIMM_MODELS

# OpenCLIP model name and quick_gelu flag of each registry entry (open_clip's pretrained table).
OPEN_CLIP = {"clip-vit-b16": ("ViT-B-16", True), "clip-vit-b16-laion2b": ("ViT-B-16", False)}


def main() -> None:
    out: dict[str, dict] = {"versions": {"timm": timm.__version__, "open_clip": open_clip.__version__}, "models": {}}
    for name in CLIP_MODELS:
        arch, quick = OPEN_CLIP[name]
        model = open_clip.create_model(arch, pretrained=None, quick_gelu=quick)
        out["models"][name] = {k: list(v.shape) for k, v in model.state_dict().items()}
    for name in TIMM_MODELS:
        model = timm.create_model(name, pretrained=False)   # the checkpoint's own input size and head
        out["models"][f"timm:{name}"] = {k: list(v.shape) for k, v in model.state_dict().items()}
    path = Path(__file__).with_suffix(".json")
    path.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"wrote {path} ({len(out['models'])} models)")


if __name__ == "__main__":
    main()
