"""The main job end to end on the tiny preset: every output exists and agrees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from patchvad.demo import DEMO_METHODS, run_demo
from patchvad.errors import ConfigError
from patchvad.io.video import probe


@pytest.mark.slow
def test_tiny_demo_writes_everything(tmp_path: Path) -> None:
    lines: list[str] = []
    metrics = run_demo(tmp_path / "demo", preset="tiny", seeds=1, echo=lines.append)
    out = tmp_path / "demo"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert set(on_disk["methods"]) == set(DEMO_METHODS)
    for method in DEMO_METHODS:
        entry = on_disk["methods"][method]
        assert set(entry["seeds"]) == {"0"}
        for key in ("frame_auc_micro", "frame_auc_macro", "frame_ap", "tiou", "tiou_threshold", "rbdc", "tbdc",
                    "pauc", "pap"):
            assert key in entry["seeds"]["0"]
        assert (out / "models" / method / "seed0" / "model.safetensors").is_file()
    assert on_disk["methods"]["proximity"]["mean"] == metrics["methods"]["proximity"]["mean"]
    # One overlay per anomaly type: the first test video of each type, by name.
    first: dict[str, str] = {}
    for line in sorted((out / "data" / "manifest.csv").read_text().splitlines()[1:]):
        video, split, label, cls = line.split(",")[:4]
        if split == "test" and label == "1":
            first.setdefault(cls, Path(video).stem)
    assert len(first) >= 2
    assert sorted(p.stem for p in (out / "overlays").glob("*.mp4")) == sorted(first.values())
    html = (out / "report.html").read_text()
    # The page shows exactly the numbers of metrics.json (3 decimals).
    tiou = on_disk["methods"]["proximity"]["mean"]["tiou"]
    assert f"{tiou:.3f}" in html
    videos = re.findall(r'<video[^>]*src="([^"]+)"', html) + re.findall(r'<source[^>]*src="([^"]+)"', html)
    assert videos, "no overlay video on the page"
    for src in videos:
        assert probe(out / src).frame_count > 0
    assert any("proximity" in line for line in lines)            # the terminal table
    # A rerun reuses every finished stage.
    again: list[str] = []
    run_demo(out, preset="tiny", seeds=1, echo=again.append)
    assert any("reusing" in line for line in again)
    # Another preset into the same folder would mix videos under the same names: refused.
    with pytest.raises(ConfigError, match="synth.json.*24 training \\+ 8 test videos"):
        run_demo(out, preset="small", seeds=1, echo=again.append)
