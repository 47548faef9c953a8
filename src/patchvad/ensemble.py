"""Seed ensembles: average the patch maps of several predictions folders of one test split.

``patchvad ensemble PRED_A PRED_B PRED_C --data ROOT --out PRED``: for every test video
the members' maps ``(T, Gh, Gw)`` are averaged, and the snippet scores, frame scores,
boxes and tracks are made from the mean map by the same code as ``patchvad test``
(:func:`patchvad.inference.prediction_from_maps`, with the members' selection
settings). The result is an ordinary predictions folder: ``patchvad evaluate`` scores it.

Why (docs/model.md, "Seed ensembles"): at the demo's size single seeds sometimes
collapse onto maps that left the motion evidence; the mean of three seeds' maps was
better than the mean seed on both development benchmarks, and on one of them better
than the best seed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchvad.config import RunConfig
from patchvad.data.folder import DatasetFolder
from patchvad.errors import CheckpointError, PredictionError
from patchvad.inference import BoxConfig, prediction_from_maps, write_tracks
from patchvad.io.files import atomic_write_json
from patchvad.model.methods import METHODS
from patchvad.model.model import read_metadata
from patchvad.model.selections import SelectionConfig
from patchvad.predictions import read_prediction, write_prediction

INFERENCE_FILE = "inference.json"


@dataclass
class EnsembleResult:
    """What :func:`ensemble` wrote: the folder, its members and the number of videos."""

    out: Path
    members: list[Path]
    videos: int
    method: str


def _member_config(pred_dir: Path) -> tuple[str, SelectionConfig]:
    """``(method, selection settings)`` a predictions folder was made with.

    From its ``inference.json`` (``patchvad test`` records the selection settings), or,
    for folders written before it did, from the checkpoint it names (looked up as
    given, then relative to the folder and to each folder above it).
    """
    record = pred_dir / INFERENCE_FILE
    try:
        info = json.loads(record.read_text())
        method = str(info["method"])
    except FileNotFoundError:
        raise PredictionError(f"no {INFERENCE_FILE}: not a folder written by `patchvad test`", path=pred_dir) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise PredictionError(f"unreadable {INFERENCE_FILE} ({exc})", path=record) from None
    if isinstance(info.get("selection"), dict):
        try:
            return method, SelectionConfig.from_record(info["selection"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictionError(f"unreadable selection settings ({exc})", path=record) from None
    ckpt = Path(str(info.get("checkpoint", "")))
    candidates = [ckpt] if ckpt.is_absolute() else [ckpt, *(d / ckpt for d in (pred_dir, *pred_dir.parents))]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise PredictionError(f"its {INFERENCE_FILE} records no selection settings and its checkpoint "
                              f"'{ckpt}' is not found; rerun `patchvad test`", path=pred_dir)
    try:
        config = RunConfig.from_yaml(read_metadata(found)["config"], source=f"{found} (embedded config)")
    except (CheckpointError, KeyError) as exc:
        raise PredictionError(f"its checkpoint gives no selection settings ({exc})", path=found) from None
    return method, config.loss.selection_config()


def ensemble(members: Sequence[str | Path], data_root: str | Path, out: str | Path,
             box_cfg: BoxConfig = BoxConfig(), log=None) -> EnsembleResult:
    """Average the maps of ``members`` (predictions folders of the same test split) into ``out``.

    Raises:
        PredictionError: fewer than two members, members of different methods or
            selection settings, of a video-level method (no maps to average), a video
            missing from a member, or maps / snippet layouts that differ between members
            (features of other extractions).
    """
    folders = [Path(m) for m in members]
    if len(folders) < 2:
        raise PredictionError(f"an ensemble needs at least two predictions folders, got {len(folders)}")
    if len({m.resolve() for m in folders}) < len(folders):
        raise PredictionError("the same predictions folder is named twice")
    configs = [_member_config(m) for m in folders]
    method, selection = configs[0]
    for m, (other_method, other_sel) in zip(folders[1:], configs[1:], strict=True):
        if (other_method, other_sel) != (method, selection):
            raise PredictionError(f"made with {other_method} ({other_sel.rule}, k={other_sel.k}), but "
                                  f"{folders[0]} with {method} ({selection.rule}, k={selection.k}): members "
                                  f"must be seeds of one method", path=m)
    if method in METHODS and METHODS[method].video_level:
        raise PredictionError(f"{method} predicts whole frames; its maps hold no places to average", path=folders[0])
    test_set = DatasetFolder(data_root, check_files=False).test_set()
    out = Path(out)
    if out.resolve() in {m.resolve() for m in folders}:
        raise PredictionError("the output folder is one of the members", path=out)
    out.mkdir(parents=True, exist_ok=True)
    for entry in test_set:
        preds = [read_prediction(m, entry.stem, frame_count=entry.frames) for m in folders]
        for m, p in zip(folders[1:], preds[1:]):
            if p.maps is None or preds[0].maps is None:
                raise PredictionError(f"{entry.stem}: no maps.npy", path=m if p.maps is None else folders[0])
            assert p.frame_to_snippet is not None and preds[0].frame_to_snippet is not None   # read with the maps
            if p.maps.shape != preds[0].maps.shape or not np.array_equal(p.frame_to_snippet,
                                                                          preds[0].frame_to_snippet):
                raise PredictionError(f"{entry.stem}: maps {p.maps.shape} / snippet layout differ from "
                                      f"{folders[0]}'s {preds[0].maps.shape} (features of another extraction?)",
                                      path=m)
        if entry.width is None or entry.height is None:
            raise PredictionError(f"{entry.stem}: the manifest gives no frame size (width, height) for the boxes",
                                  path=Path(data_root))
        # Every member's maps: a member without them raised above.
        maps = [p.maps for p in preds if p.maps is not None]
        f2s = preds[0].frame_to_snippet
        assert f2s is not None                                                  # read with the maps
        mean_map = np.stack(maps).mean(axis=0, dtype=np.float64).astype(np.float32)
        pred = prediction_from_maps(mean_map, f2s, (entry.width, entry.height), selection, box_cfg)
        assert pred.tracks is not None                                          # prediction_from_maps sets it
        folder = write_prediction(out, entry.stem, pred.frame_scores, pred.boxes, pred.maps, pred.frame_to_snippet)
        write_tracks(folder, pred.tracks)
    atomic_write_json(out / INFERENCE_FILE, {"ensemble_of": [str(m) for m in folders], "method": method,
                                             "selection": selection.to_record(),
                                             "videos": len(test_set)})
    if log:
        log(f"averaged {len(folders)} members' maps over {len(test_set)} test videos")
    return EnsembleResult(out=out, members=folders, videos=len(test_set), method=method)


def ensemble_command(args: argparse.Namespace) -> EnsembleResult:
    """Body of ``patchvad ensemble`` (``args.members``, ``args.data``, ``args.out``)."""
    import sys

    res = ensemble(args.members, args.data, args.out, log=lambda m: print(m, file=sys.stderr))
    print(f"{res.out}  ({res.method}, {len(res.members)} members, {res.videos} videos)")
    return res


__all__ = ["EnsembleResult", "ensemble", "ensemble_command"]
