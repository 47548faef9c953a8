"""UCSD Ped1 / Ped2 (Mahadevan et al., CVPR 2010) -> the generic folder.

Official layout (``UCSD_Anomaly_Dataset.v1p2``)::

    UCSDped2/Train/Train001/001.tif ...        training clips (frame folders), all normal
    UCSDped2/Test/Test001/001.tif ...          test clips, each with anomalies
    UCSDped2/Test/Test001_gt/001.bmp ...       pixel masks (Ped2: all 12 clips; Ped1: 10)
    UCSDped2/Test/UCSDped2.m                   frame-level GT, one gt_frame per test clip

The v1p2 folder holds both subsets, whose clips share names; from there only the
subset's own folder (``UCSDped2/`` or ``UCSDped1/``) is read.

``gt_frame = [61:180]`` lists **1-based inclusive** MATLAB ranges (Ped1 has lines with
several, ``[5:90, 140:200]``), in clip order. Frame labels come from the .m file, the
official frame-level ground truth. Regions come from the pixel masks: connected
components (8-connected) per frame, linked into tracks across consecutive frames by box
overlap. Mask frames are matched to clip frames by position in natural order, which
also covers the ``frame001.bmp`` naming of Ped2's Test006/009/012 masks. A lossless
repack of the masks, ``test_gt_masks.npz`` (``Test0NN`` -> ``np.packbits`` of
``(T, H, W)`` along the width), is read when the BMP folders are absent.

The frame folders carry no rate; 10 fps is recorded.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patchvad.data.adapters.common import (
    MediaInfo,
    PlannedVideo,
    PrepareContext,
    SourceIndex,
    check_splits,
    clean_regions,
    image_errors,
    list_frame_files,
    masks_to_regions,
    read_lines,
    summarize,
)
from patchvad.errors import DatasetError

FPS = 10.0
OPTIONS: dict = {}
_SEQ = re.compile(r"^(Train|Test)(\d{3})$")


@dataclass(frozen=True)
class Variant:
    """Official facts of one UCSD subset.

    Attributes:
        clip_frames: official frame count per clip name, where known (Ped2's test
            clips: the number of masks of each in the release, shared/data README).
    """

    key: str
    title: str
    folder: str
    m_file: str
    videos: dict[str, tuple[int, int | None]]
    frames: dict[str, int]
    anomalous_frames: int | None
    clip_frames: dict[str, int]

    @property
    def name(self) -> str:
        return f"ucsd_{self.key}"

    def clips(self) -> list[str]:
        """The official clip names, ``Train001 .. TestNNN``."""
        return [f"{split.capitalize()}{k:03d}" for split in ("train", "test")
                for k in range(1, self.videos[split][0] + 1)]


_PED2_TEST = (180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180)
PED2 = Variant("ped2", "UCSD Ped2", "UCSDped2", "UCSDped2.m", {"train": (16, 0), "test": (12, 12)},
               {"train": 2550, "test": 2010}, 1648,
               {f"Test{k:03d}": n for k, n in enumerate(_PED2_TEST, 1)})
PED1 = Variant("ped1", "UCSD Ped1", "UCSDped1", "UCSDped1.m", {"train": (34, 0), "test": (36, 36)},
               {"train": 6800, "test": 7200}, None, {})
REFERENCE = "UCSD Anomaly Dataset v1p2"


def read_m_file(path: Path) -> list[list[tuple[int, int]]]:
    """``UCSDpedN.m`` -> per test clip, the 1-based inclusive ``(first, last)`` ranges."""
    clips = []
    for line, text in read_lines(path):
        if "gt_frame" not in text:
            continue
        match = re.search(r"\[([^\]]*)\]", text)
        if not match:
            raise DatasetError("gt_frame line without [...]", path=path, line=line)
        ranges = []
        for token in re.split(r"[,;\s]+", match.group(1).strip()):
            if not token:
                continue
            parts = token.split(":")
            try:
                if len(parts) == 1:
                    a = b = int(parts[0])
                elif len(parts) == 2:
                    a, b = int(parts[0]), int(parts[1])
                else:
                    raise ValueError
            except ValueError:
                raise DatasetError(f"'{token}' is not a MATLAB range a:b", path=path, line=line) from None
            if a < 1 or b < a:
                raise DatasetError(f"range {a}:{b} is not 1-based ascending", path=path, line=line)
            ranges.append((a, b))
        clips.append(ranges)
    return clips


def _pick(paths: list[Path], variant: Variant) -> tuple[Path | None, str]:
    """One of several same-named paths: the one under the variant's folder (UCSDped2)."""
    if len(paths) == 1:
        return paths[0], ""
    if not paths:
        return None, "not found"
    mine = [p for p in paths if any(variant.key in part.lower() for part in p.parts)]
    if len(mine) == 1:
        return mine[0], ""
    return None, "ambiguous: " + ", ".join(str(p) for p in paths[:4])


def _read_bmp_masks(folder: Path) -> np.ndarray:
    from PIL import Image

    masks = []
    for path in list_frame_files(folder):
        try:
            with Image.open(path) as image:
                masks.append(np.asarray(image.convert("L")) > 0)
        except image_errors() as exc:
            raise DatasetError(f"cannot read mask ({type(exc).__name__}: {exc})", path=path) from exc
        if masks[-1].shape != masks[0].shape:
            raise DatasetError(f"mask of {masks[-1].shape[1]}x{masks[-1].shape[0]} among masks of "
                               f"{masks[0].shape[1]}x{masks[0].shape[0]}", path=path)
    if not masks:
        raise DatasetError("mask folder holds no images", path=folder)
    return np.stack(masks)


def _read_npz_masks(path: Path, key: str, width: int) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise DatasetError("not an .npz archive (a single array)", path=path)
            if key not in data.files:
                return None
            packed = data[key]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise DatasetError(f"not a readable .npz ({type(exc).__name__}: {exc})", path=path) from exc
    if packed.ndim != 3 or packed.dtype != np.uint8:
        raise DatasetError(f"{key}: expected (T, H, W/8) uint8 bit-packed masks, found {packed.shape} "
                           f"{packed.dtype}", path=path)
    return np.unpackbits(packed, axis=2)[:, :, :width].astype(bool)


def _subset_index(ctx: PrepareContext, variant: Variant) -> SourceIndex:
    """The part of the source that holds ``variant``'s files.

    The v1p2 folder holds both subsets, whose clips share names (Train001, Test001,
    Test001_gt); from there only the subset's own folder is read, so Ped2 never counts
    Ped1's clips and Ped1 never borrows Ped2's masks.

    Raises:
        DatasetError: the source is the other subset's folder, holds only the other
            subset, or holds several folders of this one.
    """
    other = PED1 if variant is PED2 else PED2
    names = set(ctx.source.absolute().parts) | set(ctx.source.resolve().parts)
    if variant.folder in names:
        return ctx.index                     # the source is the subset's folder (or inside it)
    if other.folder in names:
        raise DatasetError(f"the source is (inside) the {other.title} folder {other.folder}/, but "
                           f"'prepare {variant.name}' reads {variant.title}: pass its {variant.folder}/ folder, or "
                           f"the UCSD_Anomaly_Dataset.v1p2 folder that holds both, or run "
                           f"'prepare {other.name}'", path=ctx.source)
    mine = ctx.index.dirs(variant.folder)
    if len(mine) > 1:
        raise DatasetError(f"several {variant.folder}/ folders under the source ({', '.join(map(str, mine))}); "
                           f"pass the one to read as --source", path=ctx.source)
    if mine:
        return ctx.index.under(mine[0])
    if ctx.index.dirs(other.folder):
        raise DatasetError(f"no {variant.folder}/ folder under the source, which holds {other.folder}/ only: "
                           f"unpack {variant.title} from the UCSD Anomaly Dataset (UCSD_Anomaly_Dataset.v1p2) "
                           f"here, or run 'prepare {other.name}'", path=ctx.source)
    return ctx.index                         # a renamed subset folder: read the whole source


def _plan(ctx: PrepareContext, variant: Variant) -> list[PlannedVideo]:
    report = ctx.report
    index = _subset_index(ctx, variant)
    m_path = index.find_file([variant.m_file], f"{variant.title} frame-level ground truth",
                             origin=f"It ships with the dataset in {variant.folder}/Test/ of the UCSD Anomaly "
                             f"Dataset (UCSD_Anomaly_Dataset.v1p2, Mahadevan et al. 2010)")
    gt = read_m_file(m_path)
    report.expect(f"gt_frame entries in {m_path.name}", variant.videos["test"][0], len(gt), REFERENCE)

    folders: dict[str, Path] = {}
    ambiguous: dict[str, str] = {}
    names = sorted({p.name for p in index.all_dirs(lambda p: bool(_SEQ.match(p.name)))})
    for name in names:
        candidates = [d for d in index.dirs(name) if list_frame_files(d)]
        path, why = _pick(candidates, variant)
        if path is None:
            if candidates:
                ambiguous[name] = why
            continue
        folders[name] = path
    report.problem_list("clips found in several frame folders", [f"{n} ({why})" for n, why in ambiguous.items()])
    official = variant.clips()
    report.problem_list(f"clips of the official {variant.title} release not found under {index.source} "
                        f"(expected {variant.folder}/Train/TrainNNN/ and {variant.folder}/Test/TestNNN/ frame "
                        f"folders)", [n for n in official if n not in folders and n not in ambiguous])
    report.problem_list(f"clips that are not in the official {variant.title} release",
                        sorted(set(folders) - set(official)))
    npz_path, _ = _pick(index.files("test_gt_masks.npz"), variant)
    infos = ctx.probe_many(list(folders.values()))
    official_frames = variant.clip_frames
    report.problem_list("clips whose frame count is not the official one (found, official)",
                        [f"{name} ({infos[f].frames}, {official_frames[name]})" for name, f in sorted(folders.items())
                         if f in infos and name in official_frames and infos[f].frames != official_frames[name]])

    plans: list[PlannedVideo] = []
    disagree: list[str] = []
    no_masks: list[str] = []
    for name, folder in sorted(folders.items()):
        if folder not in infos:
            continue
        info = infos[folder]
        split = "train" if name.startswith("Train") else "test"
        planned = PlannedVideo(stem=name, source=folder, link_name=f"{name[:-3]}/{name}", split=split,
                               label=0, cls="", info=info, fps=info.fps or FPS)
        if split == "test":
            clip = int(name[-3:])
            if clip > len(gt):
                report.problem(f"{name}: no gt_frame entry {clip} in {m_path.name}")
                continue
            # 1-based inclusive a:b -> 0-based half-open [a-1, b).
            labels = np.zeros(info.frames, dtype=np.uint8)
            for a, b in gt[clip - 1]:
                if b > info.frames:
                    report.problem(f"{name}: gt_frame range {a}:{b} past the clip's {info.frames} frames")
                labels[a - 1:min(b, info.frames)] = 1
            planned.frame_labels = labels
            planned.label = int(labels.any())
            masks = _masks(ctx, index, variant, name, folder, info, npz_path)
            if masks is None:
                no_masks.append(name)
            else:
                differ = int((masks.reshape(len(masks), -1).any(axis=1) != labels.astype(bool)).sum())
                if differ:
                    disagree.append(f"{name} ({differ})")
                report.counts["frames where masks and .m disagree"] = \
                    report.counts.get("frames where masks and .m disagree", 0) + differ
                regions = masks_to_regions((f, masks[f]) for f in range(len(masks)) if masks[f].any())
                planned.regions, _ = clean_regions(regions, info.frames, info.width, info.height)
        plans.append(planned)
    report.note_list("test clips without pixel masks (frame labels only)", no_masks)
    report.note_list("clips whose mask frames disagree with the .m frame labels (frames)", disagree)
    check_splits(report, plans, variant.videos, REFERENCE)
    for split, expected in variant.frames.items():
        report.expect(f"{split} frames", expected, sum(p.info.frames for p in plans if p.split == split), REFERENCE)
    summarize(report, plans)
    if variant.anomalous_frames is not None:
        report.expect("anomalous test frames", variant.anomalous_frames, report.counts["anomalous test frames"],
                      REFERENCE)
    return plans


def _masks(ctx: PrepareContext, index: SourceIndex, variant: Variant, name: str, folder: Path, info: MediaInfo,
           npz_path: Path | None) -> np.ndarray | None:
    """``(T, H, W)`` bool masks of one test clip, or None when the dataset has none for it."""
    beside = folder.parent / f"{name}_gt"
    if beside.is_dir():
        mask_dir: Path | None = beside
    else:
        mask_dir, _ = _pick(index.dirs(f"{name}_gt"), variant)
    masks: np.ndarray | None
    if mask_dir is not None:
        masks = _read_bmp_masks(mask_dir)
    elif npz_path is not None:
        masks = _read_npz_masks(npz_path, name, info.width)
        if masks is None:
            return None
    else:
        return None
    if masks.shape != (info.frames, info.height, info.width):
        where = mask_dir or npz_path
        ctx.report.problem(f"{where}: masks of shape {masks.shape} for a clip of {info.frames} frames of "
                           f"{info.width}x{info.height}")
        return None
    return masks


def plan_ped2(ctx: PrepareContext) -> list[PlannedVideo]:
    """UCSD Ped2: 16 train / 12 test clips, 2,010 test frames."""
    return _plan(ctx, PED2)


def plan_ped1(ctx: PrepareContext) -> list[PlannedVideo]:
    """UCSD Ped1: 34 train / 36 test clips, 7,200 test frames."""
    return _plan(ctx, PED1)


__all__ = ["PED1", "PED2", "OPTIONS", "plan_ped1", "plan_ped2", "read_m_file"]
