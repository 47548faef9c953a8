"""Methods (one file each) and their registry.

    base.py          the Method interface; the patch-MIL and video-MIL families
    proximity.py     the paper's method
    plain_topk.py    ablation: no window, no proximity
    video_mil.py     video-level top-k MIL
    sultani.py       Sultani et al. ranking MIL
    motion_floor.py  no training: scene-relative motion
    normal_memory.py no training: distance to a memory of normal training patches
    random.py        chance level
    oracle.py        supervised upper bound (ground-truth cells of the training videos)

A new method: one file with a :class:`Method` subclass and one line in ``METHODS``
below (or :func:`register_method` from outside the package). The CLI's ``--method``
choices, config validation, the demo, ``compare`` and ``ensemble`` read this registry.
"""

from __future__ import annotations

from patchvad.model.methods.base import Method, PatchMILMethod, VideoMILMethod
from patchvad.model.methods.motion_floor import MotionFloor
from patchvad.model.methods.normal_memory import NormalMemory
from patchvad.model.methods.oracle import Oracle
from patchvad.model.methods.plain_topk import PlainTopK
from patchvad.model.methods.proximity import Proximity
from patchvad.model.methods.random import Random
from patchvad.model.methods.sultani import Sultani
from patchvad.model.methods.video_mil import VideoMIL
from patchvad.registry import add, lookup

METHODS: dict[str, Method] = {method.name: method for method in (
    Proximity(),
    PlainTopK(),
    VideoMIL(),
    Sultani(),
    MotionFloor(),
    NormalMemory(),
    Random(),
    Oracle(),
)}


def get_method(name: str) -> Method:
    """The registered method called ``name`` (ConfigError naming the choices otherwise)."""
    return lookup(METHODS, name, f"unknown method '{name}'; choose one of {list(METHODS)}")


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry under ``method.name`` (refuses to replace another method)."""
    return add(METHODS, method.name, method, "method")


def method_names(*, trained: bool | None = None, video_level: bool | None = None) -> tuple[str, ...]:
    """Registered names, optionally only the (un)trained or (not) video-level ones."""
    return tuple(name for name, m in METHODS.items()
                 if (trained is None or m.trained == trained) and (video_level is None or m.video_level == video_level))


__all__ = ["METHODS", "Method", "PatchMILMethod", "VideoMILMethod", "get_method", "method_names",
           "register_method"]
