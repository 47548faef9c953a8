"""``patchvad predict --report``: the HTML page of a predict run on footage.

The model is a ``motion_floor`` checkpoint (no training: quick, and its answer known,
as in tests/test_predict.py): on a static scene where one object moves during a known
span, frames of that span score high and make an event. The page is checked against
the files predict wrote: one section per video, one timeline each, one event card per
event of ``events.json`` with an embedded thumbnail, and overlay links that resolve.
"""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from patchvad import cli
from patchvad.data.folder import write_manifest
from patchvad.errors import PredictionError
from patchvad.features.extract import extract_dataset
from patchvad.io.video import write_video
from patchvad.viz import build_predict_report

W, H, N = 160, 120, 64
SPAN = (16, 47)               # frames in which the object moves (inclusive)
GRID = dict(grid=7, input_size=112, snippet_len=16, passes=2)


def scene(path: Path, seed: int, moving: bool) -> None:
    """A textured static scene with sensor noise; a red block moves during SPAN when ``moving``."""
    rng = np.random.default_rng(seed)
    bg = (rng.random((H // 8, W // 8, 3)) * 120 + 50).repeat(8, 0).repeat(8, 1).astype(np.float32)
    frames = []
    for t in range(N):
        f = bg + rng.normal(0, 2.0, bg.shape)
        if moving and SPAN[0] <= t <= SPAN[1]:
            x = 10 + 3 * (t - SPAN[0])
            f[50:80, x:x + 16] = (230, 40, 40)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    write_video(path, frames, fps=25)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from patchvad.training import fit

    base = tmp_path_factory.mktemp("predict_report")
    rows = []
    for i in range(2):
        scene(base / "data" / "videos" / f"train_{i}.mp4", seed=i, moving=bool(i))
        rows.append({"video": f"videos/train_{i}.mp4", "split": "train", "label": i})
    write_manifest(base / "data", rows)
    extract_dataset(base / "data", base / "feats", progress=False, **GRID)
    res = fit(base / "data", base / "feats", base / "run", method="motion_floor", seed=0, log=None)
    footage = base / "footage"
    footage.mkdir()
    scene(footage / "gate.mp4", seed=100, moving=True)
    scene(footage / "yard.mp4", seed=101, moving=False)
    return {"ckpt": res.checkpoint, "footage": footage}


class Page(HTMLParser):
    """The parts of report.html the tests read: video sections with their images, events and links."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: dict | None = None
        self.in_event = False
        self.depth = 0
        self.data_json = ""
        self.in_data = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("data-stem") is not None:
            self.current = {"events_attr": int(a["data-events"]), "timelines": 0, "events": [], "videos": [],
                            "links": [], "title": ""}
            self.sections[a["data-stem"]] = self.current
            return
        if tag == "section":
            self.current = None
        if tag == "script" and a.get("id") == "patchvad-predict":
            self.in_data = True
        if self.current is None:
            return
        if tag == "img" and "timeline" in (a.get("class") or ""):
            self.current["timelines"] += 1
        if tag == "figure" and a.get("data-event") is not None:
            self.current["events"].append({"k": int(a["data-event"]), "start": float(a["data-start"]),
                                           "end": float(a["data-end"]), "peak": float(a["data-peak"]),
                                           "thumbs": []})
            self.in_event = True
        if tag == "img" and self.in_event and "thumb" in (a.get("class") or ""):
            self.current["events"][-1]["thumbs"].append(a["src"])
        if tag == "video":
            self.current["videos"].append(a["src"])
        if tag == "a" and a.get("href"):
            self.current["links"].append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.in_event = False
        if tag == "script":
            self.in_data = False

    def handle_data(self, data: str) -> None:
        if self.in_data:
            self.data_json += data


def read_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def check_page(out: Path, stems: list[str]) -> Page:
    """Everything the page must show for ``stems``, against the files predict wrote."""
    page = read_page(out / "report.html")
    assert list(page.sections) == stems
    data = json.loads(page.data_json)
    assert [v["stem"] for v in data["videos"]] == stems
    for stem in stems:
        sec = page.sections[stem]
        record = json.loads((out / stem / "events.json").read_text())
        assert sec["timelines"] == 1
        assert len(sec["events"]) == len(record["events"]) == sec["events_attr"]
        for k, (card, ev) in enumerate(zip(sec["events"], record["events"])):
            assert card["k"] == k
            assert (card["start"], card["end"], card["peak"]) == (ev["start_time"], ev["end_time"], ev["peak_score"])
            assert len(card["thumbs"]) == 1 and card["thumbs"][0].startswith("data:image/jpeg;base64,")
            thumb = Image.open(io.BytesIO(base64.b64decode(card["thumbs"][0].split(",", 1)[1])))
            source = Image.open(out / stem / ev["thumbnail"])
            assert thumb.size == source.size            # under 640 px wide: embedded at its own size
        assert sec["videos"] == [f"{stem}/overlay.mp4"]
        for href in sec["videos"] + sec["links"]:
            if not href.startswith("#"):
                assert (out / unquote(href)).is_file(), href
        assert [v["events"] for v in data["videos"] if v["stem"] == stem] == [record["events"]]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]    # atomic writes leave no temporary file
    return page


def test_report_for_a_folder_of_videos(setup, tmp_path) -> None:
    out = tmp_path / "out"
    lines: list[str] = []
    argv = ["predict", str(setup["footage"]), "--ckpt", str(setup["ckpt"]), "--out", str(out), "--threshold", "0.5",
            "--report"]
    assert cli.main(argv) == 0
    page = check_page(out, ["gate", "yard"])
    # The moving object makes at least one event in gate; yard is still: none.
    assert len(page.sections["gate"]["events"]) >= 1
    assert page.sections["yard"]["events"] == []
    html = (out / "report.html").read_text()
    assert "No event: no frame scored at or above 0.500" in html
    # A rerun (here through a glob) skips the finished gate and redoes yard: the page still shows both,
    # in source order; it can also be made again from the folder alone.
    from patchvad.predict import predict_command

    (out / "yard" / "events.json").unlink()
    report = predict_command(str(setup["footage"] / "*.mp4"), setup["ckpt"], out, threshold=0.5, report_page=True,
                             echo=lines.append)
    assert report.skipped == ["gate"] and [d.stem for d in report.done] == ["yard"]
    assert any("report.html" in line for line in lines)
    check_page(out, ["gate", "yard"])
    assert json.loads((out / "predict.json").read_text())["videos"] == ["gate", "yard"]
    (out / "report.html").unlink()
    assert build_predict_report(out) == out / "report.html"
    check_page(out, ["gate", "yard"])


def test_report_for_one_file_without_overlay(setup, tmp_path) -> None:
    out = tmp_path / "one"
    argv = ["predict", str(setup["footage"] / "gate.mp4"), "--ckpt", str(setup["ckpt"]), "--out", str(out),
            "--threshold", "0.5", "--report", "--no-overlay"]
    assert cli.main(argv) == 0
    page = read_page(out / "report.html")
    assert list(page.sections) == ["gate"]
    sec = page.sections["gate"]
    record = json.loads((out / "gate" / "events.json").read_text())
    assert sec["timelines"] == 1 and len(sec["events"]) == len(record["events"]) >= 1
    assert sec["videos"] == [] and "No overlay video" in (out / "report.html").read_text()


def test_report_of_a_folder_without_a_run_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(PredictionError, match="predict.json"):
        build_predict_report(tmp_path)
