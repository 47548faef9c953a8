"""Public-dataset adapters: official files -> the generic dataset folder.

``patchvad prepare DATASET --source DIR --out ROOT`` reads a dataset as its authors
distribute it (videos or frame folders, split lists, annotation files) and writes
``ROOT/manifest.csv``, ``ROOT/tracks/*.csv`` and ``ROOT/frame_labels/*.npy``, with the
ground truth derived from the annotation files and each video's real frame count.
Every adapter checks its counts against the official numbers; see docs/datasets.md.

Example::

    from patchvad.data.adapters import prepare_dataset
    report = prepare_dataset("ucsd_ped2", "/data/UCSD_Anomaly_Dataset.v1p2", "/data/ped2")
    print(report.summary())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchvad.data.adapters import (
    avenue,
    shanghaitech,
    street_scene,
    ubnormal,
    ucf_crime,
    ucsd_ped,
    xd_violence,
)
from patchvad.data.adapters.common import (
    OUTPUT_DIRS,
    REPORT_NAME,
    CountCheck,
    FrameCounter,
    MediaInfo,
    PlannedVideo,
    PrepareContext,
    PrepareReport,
    SourceIndex,
    check_output_root,
    default_frame_counter,
    echo,
    write_dataset,
    write_failure,
)
from patchvad.errors import ConfigError, DatasetError


@dataclass(frozen=True)
class Adapter:
    """One dataset's adapter.

    Attributes:
        name: registry key (``patchvad prepare NAME``).
        title: the dataset's name for messages.
        plan: reads the official files and returns the plan (see ``common.PlannedVideo``).
        options: dataset-specific options: name -> parser of the option's text value.
        summary: one line for ``patchvad prepare --help``: what the dataset is and what
            ground truth it gives.
        docs: its section of the documentation (``docs/datasets.md#anchor``).
    """

    name: str
    title: str
    plan: Callable[[PrepareContext], list[PlannedVideo]]
    options: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    summary: str = ""
    docs: str = ""


_DOCS = "docs/datasets.md#"
ADAPTERS: dict[str, Adapter] = {
    "ucf_crime": Adapter(
        "ucf_crime", ucf_crime.TITLE, ucf_crime.plan, ucf_crime.OPTIONS,
        "UCF-Crime (Sultani et al. 2018): 1,900 surveillance videos, 13 anomaly classes; frame labels, "
        "optional Liu & Ma boxes", _DOCS + "ucf-crime-ucf_crime"),
    "shanghaitech": Adapter(
        "shanghaitech", shanghaitech.TITLE, shanghaitech.plan, shanghaitech.OPTIONS,
        "ShanghaiTech Campus, weakly supervised split (Zhong et al. 2019): 437 videos; frame masks, optional "
        "AED tracks or pixel masks", _DOCS + "shanghaitech-weakly-supervised-split-shanghaitech"),
    "ubnormal": Adapter(
        "ubnormal", ubnormal.TITLE, ubnormal.plan, ubnormal.OPTIONS,
        "UBnormal (Acsintoae et al. 2022): 543 synthetic videos in 29 scenes; frame labels and object tracks",
        _DOCS + "ubnormal-ubnormal"),
    "xd_violence": Adapter(
        "xd_violence", xd_violence.TITLE, xd_violence.plan, xd_violence.OPTIONS,
        "XD-Violence (Wu et al. 2020): 4,754 movie and online videos, 6 violence classes; frame labels only",
        _DOCS + "xd-violence-xd_violence-frame-level-only"),
    "street_scene": Adapter(
        "street_scene", street_scene.TITLE, street_scene.plan, street_scene.OPTIONS,
        "Street Scene (Ramachandra & Jones 2020): 81 frame sequences of one street; anomaly tracks (boxes)",
        _DOCS + "street-scene-street_scene"),
    "ucsd_ped2": Adapter(
        "ucsd_ped2", ucsd_ped.PED2.title, ucsd_ped.plan_ped2, ucsd_ped.OPTIONS,
        "UCSD Ped2 (Mahadevan et al. 2010): 28 clips; .m frame labels, boxes from the pixel masks",
        _DOCS + "ucsd-ped2-ucsd_ped2-and-ped1-ucsd_ped1"),
    "ucsd_ped1": Adapter(
        "ucsd_ped1", ucsd_ped.PED1.title, ucsd_ped.plan_ped1, ucsd_ped.OPTIONS,
        "UCSD Ped1 (Mahadevan et al. 2010): 70 clips; .m frame labels, boxes for the 10 clips with masks",
        _DOCS + "ucsd-ped2-ucsd_ped2-and-ped1-ucsd_ped1"),
    "avenue": Adapter(
        "avenue", avenue.TITLE, avenue.plan, avenue.OPTIONS,
        "CUHK Avenue (Lu et al. 2013): 37 videos; frame labels and boxes from the pixel masks",
        _DOCS + "cuhk-avenue-avenue"),
}


def datasets_help() -> str:
    """The dataset list of ``patchvad prepare --help``: name, one line, docs section."""
    width = max(len(name) for name in ADAPTERS)
    lines = ["datasets (DATASET):"]
    for name, adapter in ADAPTERS.items():
        lines.append(f"  {name:<{width}}  {adapter.summary}")
        lines.append(f"  {'':<{width}}  {adapter.docs}")
    lines += ["", "--source is the dataset as its download unpacks; third-party files (split lists, tracks,",
              "boxes) go anywhere below it, in symlinked folders too. One --out holds one dataset."]
    return "\n".join(lines)


def _parse_options(adapter: Adapter, options: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """Validate dataset options given as a mapping or as ``KEY=VALUE`` strings."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        pairs: dict[str, Any] = {}
        for item in options:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"dataset option '{item}' is not KEY=VALUE")
            pairs[key.strip()] = value.strip()
        options = pairs
    parsed: dict[str, Any] = {}
    for key, value in options.items():
        if key not in adapter.options:
            allowed = ", ".join(sorted(adapter.options)) or "none"
            raise ConfigError(f"{adapter.name} has no option '{key}' (options: {allowed})")
        try:
            parsed[key] = adapter.options[key](value) if isinstance(value, str) else value
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{adapter.name} option {key}={value!r}: {exc}") from None
    return parsed


def prepare_dataset(name: str, source: str | Path, out: str | Path, copy_videos: bool = False,
                    strict: bool = True, probe: FrameCounter | None = None, *, frames_as: str = "folder",
                    options: Mapping[str, Any] | Sequence[str] | None = None,
                    workers: int = 4) -> PrepareReport:
    """Read a public dataset's official files and write the generic folder at ``out``.

    Args:
        name: a key of :data:`ADAPTERS`.
        source: the dataset as downloaded (never written to).
        out: the dataset root to write. When it is a folder above ``source`` the
            videos are referenced in place; otherwise they are hard-linked under
            ``out/videos`` (or copied with ``copy_videos``).
        copy_videos: copy video files / frame images instead of hard-linking them.
        strict: refuse to write when any count differs from the official number or
            any problem was found: the :class:`DatasetError` names them all (long lists
            abbreviated) and ``out/prepare_failed.json`` holds the full report. When
            False, write what is consistent and report the rest.
        probe: frame-count probe ``path -> MediaInfo``; default decodes nothing but
            counts video packets / image files.
        frames_as: ``"folder"`` (frame folders stay folders of images) or ``"mp4"``
            (transcode them to H.264, lossy, for readers of video files only).
        options: dataset-specific options (``{"hold": 16}`` or ``["hold=16"]``).
        workers: threads used for probing.

    Returns:
        The :class:`PrepareReport` (also written to ``out/prepare_report.json``).

    Raises:
        DatasetError: missing or malformed official files, (strict) mismatches, or an
            ``out`` that holds another prepared dataset (one folder, one dataset).
        ConfigError: unknown dataset or option.
    """
    if name not in ADAPTERS:
        raise ConfigError(f"unknown dataset '{name}'; known: {', '.join(sorted(ADAPTERS))} "
                          f"(patchvad prepare --help describes each)")
    adapter = ADAPTERS[name]
    source, root = Path(source), Path(out)
    if not source.is_dir():
        raise DatasetError("source folder not found", path=source)
    parsed = _parse_options(adapter, options)
    in_place = check_output_root(source, root, adapter.name, adapter.title)
    report = PrepareReport(dataset=adapter.title, source=source, root=root, name=adapter.name)
    index = SourceIndex(source, exclude=[root / d for d in OUTPUT_DIRS])
    _report_links(report, index)
    ctx = PrepareContext(source=source, root=root, index=index, counter=probe or default_frame_counter,
                         report=report, options=parsed, workers=max(1, int(workers)))
    plans = adapter.plan(ctx)
    if strict and not report.ok:
        raise DatasetError(report.failure_text(write_failure(report, root)), path=source)
    if not plans:
        failed = write_failure(report, root)
        raise DatasetError(f"{adapter.title}: no usable video found; nothing to write\n{report.summary(failed)}",
                           path=source)
    return write_dataset(report, plans, root, in_place=in_place, copy=copy_videos, frames_as=frames_as)


def _report_links(report: PrepareReport, index: SourceIndex) -> None:
    """Notes on the symlinks the walk followed out of the source or did not follow."""
    report.note_list("symlinks followed to files or folders outside --source (link -> target)",
                     [f"{link} -> {target}" for link, target in index.outside_links])
    report.note_list("folders whose images are symlinks to files outside --source (images)",
                     [f"{folder} ({n})" for folder, n in index.outside_images])
    report.note_list("symlinks not followed (link -> target: why)",
                     [f"{link} -> {target}: {why}" for link, target, why in index.skipped_links])
    report.note_list("folders that could not be listed (skipped)", [str(p) for p in index.unlisted])


def prepare_command(dataset: str, source: str | Path, out: str | Path, copy_videos: bool = False,
                    strict: bool = True, *, frames_as: str = "folder", options: Sequence[str] = (),
                    workers: int = 4, probe: FrameCounter | None = None,
                    print_fn: Callable[[str], None] = echo) -> PrepareReport:
    """The ``patchvad prepare`` verb: prepare, then print the report.

    Errors propagate as :class:`~patchvad.errors.PatchvadError` (the CLI prints them).
    """
    report = prepare_dataset(dataset, source, out, copy_videos=copy_videos, strict=strict, probe=probe,
                             frames_as=frames_as, options=list(options), workers=workers)
    print_fn(report.summary(Path(out) / REPORT_NAME))
    if not report.ok:
        print_fn(f"{report.dataset}: written with {len(report.mismatches)} count mismatch(es) and "
                 f"{len(report.problems)} problem(s); see {Path(out) / 'prepare_report.json'}")
    return report


__all__ = [
    "ADAPTERS", "Adapter", "CountCheck", "FrameCounter", "MediaInfo", "PlannedVideo", "PrepareReport",
    "datasets_help", "default_frame_counter", "prepare_command", "prepare_dataset",
]
