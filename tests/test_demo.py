"""The main job end to end on the tiny preset: every output exists and agrees.

``patchvad demo --ablate`` runs through the command line. The ablation is cut to one
factor with two settings (one trained, the default reused): each setting is a whole fit,
and the full table (15 settings) would cost minutes; every setting of the full table is
checked without training in ``test_every_ablation_setting_changes_its_factor_only``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from patchvad import cli, demo, demo_record
from patchvad.config import RunConfig
from patchvad.demo import ABLATION, DEMO_METHODS, DEMO_PRESETS, ORACLE_LABELS, run_demo
from patchvad.errors import ConfigError
from patchvad.io.files import sha256_file
from patchvad.io.video import probe


@pytest.mark.slow
def test_tiny_demo_writes_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(demo, "ABLATION", {"k": ABLATION["k"][:2]})          # k = 2 (trained), 4 (the default)
    committed = tmp_path / "committed.json"                                  # none: the run says so
    monkeypatch.setattr(demo_record, "default_record_path", lambda: committed)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--preset", "tiny", "--seeds", "1", "--ablate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"no committed record at {committed}: nothing to compare this run with"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert set(on_disk["methods"]) == set(DEMO_METHODS)
    for method in DEMO_METHODS:
        entry = on_disk["methods"][method]
        assert set(entry["seeds"]) == {"0"}
        for key in ("frame_auc_micro", "frame_auc_macro", "frame_ap", "tiou", "tiou_threshold", "rbdc", "tbdc",
                    "pauc", "pap"):
            assert key in entry["seeds"]["0"]
        assert (out / "models" / method / "seed0" / "model.safetensors").is_file()
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
    assert any(line.startswith("proximity ") for line in lines)            # the terminal table
    # The training curves of the trained methods: a "Training" section with one figure.
    training = re.search(r'<section id="training">(.*?)</section>', html, re.S)
    assert training is not None and training.group(1).count("<img") == 1
    # The runs shared one encoding cache: one normaliser per model configuration.
    assert list((out / "encodings" / "normalisers").glob("*.safetensors"))

    # The supervised oracle: its labels outside the dataset root, its row, weak / oracle per metric.
    labels = out / ORACLE_LABELS
    assert (labels / "oracle.json").is_file() and not list((out / "data").rglob("oracle.json"))
    assert "oracle" in DEMO_METHODS and set(on_disk["ratios"]) == {"proximity/oracle", "plain_topk/oracle",
                                                                   "video_mil/oracle"}
    oracle_mean = on_disk["methods"]["oracle"]["mean"]
    for name, row in on_disk["ratios"].items():
        weak = on_disk["methods"][name.split("/")[0]]["mean"]
        for key, value in row.items():
            if weak[key] is None or not oracle_mean[key]:
                assert value is None, (name, key)
            else:
                assert value == pytest.approx(weak[key] / oracle_mean[key], rel=1e-12), (name, key)
    ratio = on_disk["ratios"]["proximity/oracle"]["tiou"]
    assert any(line.startswith("oracle ") for line in lines)
    ratio_line = next(line for line in lines if line.startswith("proximity/oracle "))
    assert (f"{ratio:.3f}" if ratio is not None else "n/a") in ratio_line
    assert 'data-method="oracle" data-role="upper-bound"' in html and 'data-ratio="proximity/oracle"' in html
    row = re.search(r'<tr class="ratio" data-ratio="proximity/oracle">(.*?)</tr>', html)
    assert row is not None and f'data-metric="tiou" data-value="{"" if ratio is None else repr(ratio)}"' in row[1]
    digests = {p.relative_to(labels): sha256_file(p) for p in labels.rglob("*") if p.is_file()}

    # The ablation: k = 2 trained beside the main run, k = 4 (the default) is the main run itself.
    ablation = on_disk["ablation"]
    assert ablation["default"]["k"] == "4" and set(ablation["factors"]) == {"k"}
    assert set(ablation["factors"]["k"]) == {"2", "4"}
    main_run = on_disk["methods"]["proximity"]["mean"]
    for key in ablation["metrics"]:
        assert ablation["factors"]["k"]["4"]["mean"][key] == main_run[key]
        assert math.isfinite(ablation["factors"]["k"]["2"]["mean"][key])
    trained = out / "ablation" / "k=2" / "seed0"
    assert RunConfig.load(trained / "model" / "config.yaml").loss.k == 2
    assert (trained / "model" / "model.safetensors").is_file()
    assert (trained / "predictions" / "inference.json").is_file()
    assert not (out / "ablation" / "k=4").exists()
    assert re.search(r'<table id="ablation"', html)
    assert re.search(r'data-factor="k" data-setting="4">(?:(?!</tr>).)*<span class="tag">default</span>', html)
    assert 'data-factor="k" data-setting="2"' in html
    # The run's record: the numbers of metrics.json, the setup, nothing reused.
    record = demo_record.load_record(out / "record.json")
    assert record["setup"]["preset"] == "tiny" and record["setup"]["seeds"] == 1
    assert record["reused"] == {"benchmark": False, "feature_videos": 0, "fits": 0}
    assert demo_record.compare_to_record(on_disk, record) == []
    assert record["methods"]["proximity"]["mean"]["tiou"] == tiou
    (tmp_path / "first.json").write_text(json.dumps(record))
    # A rerun reuses every finished stage and reproduces the first run's record; a folder
    # from before the oracle (no labels) gets its labels written again from the benchmark,
    # the same bytes, and nothing else is redone.
    shutil.rmtree(labels)
    stamp = (out / "models" / "proximity" / "seed0" / "model.safetensors").stat().st_mtime_ns
    again: list[str] = []
    run_demo(out, preset="tiny", seeds=1, echo=again.append, record=tmp_path / "first.json")
    assert any("reusing" in line for line in again)
    assert any("writing the training videos' oracle labels" in line for line in again)
    assert {p.relative_to(labels): sha256_file(p) for p in labels.rglob("*") if p.is_file()} == digests
    assert (out / "models" / "proximity" / "seed0" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again[-1] == f"reproduces {tmp_path / 'first.json'} to the printed digits"
    rerun = demo_record.load_record(out / "record.json")
    assert rerun["reused"] == {"benchmark": True, "feature_videos": 32, "fits": len(DEMO_METHODS)}
    # Another preset into the same folder would mix videos under the same names: refused.
    with pytest.raises(ConfigError, match="synth.json.*24 training \\+ 8 test videos"):
        run_demo(out, preset="small", seeds=1, echo=again.append)


def test_every_ablation_setting_changes_its_factor_only() -> None:
    """Each setting of ``--ablate``'s table is a valid configuration that differs from the
    default proximity model in its own field only; exactly one setting per factor is the
    default (the main run, reused rather than trained again)."""
    tiny = DEMO_PRESETS["tiny"]
    base = demo.demo_config("proximity", tiny).to_dict()
    for factor, settings in ABLATION.items():
        defaults = 0
        for name, override in settings:
            cfg = demo.demo_config("proximity", tiny, override).to_dict()
            changed = {(section, key) for section in base for key in base[section] if isinstance(base[section], dict)
                       and cfg[section][key] != base[section][key]}
            wanted = {(section, key) for section, values in override.items() for key in values}
            assert changed <= wanted, (factor, name, changed)
            for section, values in override.items():
                assert values.items() <= cfg[section].items(), (factor, name)
            defaults += not changed
        assert defaults == 1, f"{factor}: {defaults} settings equal the default model"


def test_oracle_labels_of_another_benchmark_are_refused(tmp_path: Path) -> None:
    """A resumed demo checks its oracle labels' record against the preset, like the benchmark's."""
    tiny = DEMO_PRESETS["tiny"]
    data, labels = tmp_path / "data", tmp_path / ORACLE_LABELS
    data.mkdir()
    labels.mkdir()
    (data / "synth.json").write_text(json.dumps({"counts": {"train": tiny.n_train, "test": tiny.n_test},
                                                 "seed": tiny.benchmark_seed, "preset": tiny.synth_preset}))
    record = {"counts": {"train": tiny.n_train}, "seed": tiny.benchmark_seed, "preset": tiny.synth_preset}
    (labels / "oracle.json").write_text(json.dumps(record))
    demo._check_reusable(data, tiny, labels)
    (labels / "oracle.json").write_text(json.dumps({**record, "seed": tiny.benchmark_seed + 1}))
    with pytest.raises(ConfigError, match="oracle labels of 24 training videos"):
        demo._check_reusable(data, tiny, labels)


def test_a_method_of_its_own_steps_keeps_the_other_settings() -> None:
    """``method_train`` changes its method's ``train`` settings only, after the preset's and before an override."""
    p = demo.DemoPreset("tiny", n_train=4, n_test=2, steps=40, train=(("eval_every", 10),),
                        method_train=(("oracle", (("steps", 120), ("eval_every", 20))),))
    weak, bound = demo.demo_config("proximity", p), demo.demo_config("oracle", p)
    assert (weak.train.steps, weak.train.eval_every) == (40, 10)
    assert (bound.train.steps, bound.train.eval_every) == (120, 20)
    assert bound.method == "oracle" and bound.model == weak.model and bound.loss == weak.loss
    assert demo.demo_config("oracle", p, {"train": {"steps": 7}}).train.steps == 7
