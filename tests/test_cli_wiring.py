"""Every verb of the command line: argv -> the library call, with each flag on its parameter.

The library function under each verb is replaced by a recorder with the real function's
signature (a call it would not accept fails here), so the test runs in milliseconds;
the real runs are tested elsewhere (tests/test_cli.py, tests/test_demo.py,
tests/test_predict.py, tests/model/test_fit_sultani_cli.py). Each verb is run with every
flag set away from its default, and once with the defaults. A flag renamed or dropped
fails here, and so does a flag added without a case below (``test_every_flag_is_covered``).
Errors: a PatchvadError from the library is one line ``patchvad VERB: error: ...`` on
stderr and exit status 2.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from patchvad import cli
from patchvad.errors import ConfigError


class Recorder:
    """Stands in for ``real``: binds each call to its signature (defaults applied) and returns ``result``."""

    def __init__(self, real: Callable, result: Any = None):
        self.signature = inspect.signature(real)
        self.result = result
        self.calls: list[dict[str, Any]] = []
        self.raises: BaseException | None = None

    def __call__(self, *args, **kwargs):
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        self.calls.append(dict(bound.arguments))
        if self.raises is not None:
            raise self.raises
        return self.result(self.calls[-1]) if callable(self.result) else self.result

    @property
    def only(self) -> dict[str, Any]:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


def _report(**fields) -> SimpleNamespace:
    return SimpleNamespace(summary=lambda *where: "summary line", **fields)


def _patch(monkeypatch: pytest.MonkeyPatch, module: str, name: str, result: Any = None) -> Recorder:
    import importlib

    mod = importlib.import_module(module)
    rec = Recorder(getattr(mod, name), result)
    monkeypatch.setattr(mod, name, rec)
    return rec


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not under torchrun, whatever the environment says (extract and fit read it)."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


# -- one case per verb: the library function, argv with every flag, what must arrive ------


def _demo(mp):
    return {"run_demo": _patch(mp, "patchvad.demo", "run_demo", {"methods": {}})}


def _synth(mp):
    return {"generate_benchmark": _patch(mp, "patchvad.data.synth.generate", "generate_benchmark",
                                         lambda call: Path(call["root"]))}


def _footage(mp):
    return {"footage_command": _patch(mp, "patchvad.data.synth.footage", "footage_command", 0)}


def _compare(mp):
    return {"compare_command": _patch(mp, "patchvad.compare", "compare_command", {"runs": {}})}


def _curves(mp):
    return {"curves_command": _patch(mp, "patchvad.curves", "curves_command", {})}


def _extract(mp, failed: dict | None = None):
    from patchvad.features import backbones

    sig = inspect.signature(backbones.PatchFeatureExtractor.__init__)
    made: list[dict] = []

    def make(**kwargs):
        sig.bind(None, **kwargs)                 # the real constructor would accept these
        made.append(kwargs)
        return SimpleNamespace(spec=SimpleNamespace())

    mp.setattr("patchvad.features.extract.PatchFeatureExtractor", make)
    return {"extract_dataset": _patch(mp, "patchvad.features.extract", "extract_dataset",
                                      _report(failed=failed or {})), "extractor": made}


def _reduce(mp):
    return {"reduce_store": _patch(mp, "patchvad.features.reduce", "reduce_store", _report())}


def _prepare(mp):
    return {"prepare_dataset": _patch(mp, "patchvad.data.adapters", "prepare_dataset",
                                      _report(ok=True, dataset="ucsd_ped2", mismatches=[], problems=[]))}


def _fit(mp):
    result = SimpleNamespace(checkpoint=Path("run/model.safetensors"), method="sultani", seed=7, best_step=3,
                             val_auc=0.5, seconds=1.0, world_size=1, batch_size=None)
    return {"fit": _patch(mp, "patchvad.training.loop", "fit", result)}


def _test(mp):
    return {"test": _patch(mp, "patchvad.inference", "test",
                           SimpleNamespace(out=Path("pred"), videos=2, snippets_per_second=10.0))}


def _ensemble(mp):
    return {"ensemble": _patch(mp, "patchvad.ensemble", "ensemble",
                               SimpleNamespace(out=Path("ens"), method="proximity", members=[1, 2], videos=2))}


def _predict(mp, failed: dict | None = None):
    return {"predict_command": _patch(mp, "patchvad.predict", "predict_command",
                                      SimpleNamespace(failed=failed or {}, done=[], skipped=[]))}


def _adapt(mp):
    return {"adapt_command": _patch(mp, "patchvad.adapt", "adapt_command")}


def _evaluate(mp):
    mp.setattr("patchvad.metrics.evaluate.format_table", lambda metrics: "TABLE")
    return {"evaluate_folder": _patch(mp, "patchvad.metrics.evaluate", "evaluate_folder", {"frame_auc_micro": 0.75})}


P = Path
# case -> (patch, argv with every flag away from its default, expected {function: {parameter: value}},
#          argv with the defaults, expected then); the verb is argv[0]
CASES: dict[str, tuple] = {
    "demo": (
        _demo,
        ["demo", "--out", "o", "--preset", "tiny", "--seeds", "2", "--ablate", "--jobs", "3"],
        {"run_demo": {"out": P("o"), "preset": "tiny", "seeds": 2, "ablate": True, "jobs": 3}},
        ["demo"],
        {"run_demo": {"out": P("runs/demo"), "preset": "small", "seeds": 3, "ablate": False, "jobs": None}},
    ),
    "synth": (
        _synth,
        ["synth", "r", "--train", "3", "--test", "2", "--seed", "5", "--preset", "tiny", "--overwrite",
         "--workers", "1", "--oracle-labels", "labels"],
        {"generate_benchmark": {"root": P("r"), "n_train": 3, "n_test": 2, "seed": 5, "preset": "tiny",
                                "workers": 1, "overwrite": True, "oracle_labels": "labels"}},
        ["synth", "--out", "r"],
        # The counts default to the preset's (docs/synthetic.md: 240 + 60 for "default").
        {"generate_benchmark": {"root": P("r"), "n_train": 240, "n_test": 60, "seed": 0, "preset": "default",
                                "workers": os.cpu_count() or 1, "overwrite": False, "oracle_labels": None}},
    ),
    "synth --background": (
        _footage,
        ["synth", "--out", "r", "--background", "street.mp4", "--scale", "40,90", "--clip-frames", "50",
         "--width", "320", "--train", "4", "--test", "3", "--seed", "2", "--workers", "1", "--overwrite"],
        {"footage_command": {"footage": "street.mp4", "root": P("r"), "train": 4, "test": 3, "seed": 2,
                             "clip_frames": 50, "width": 320, "scale": "40,90", "workers": 1, "overwrite": True}},
        ["synth", "r", "--background", "street.mp4"],
        {"footage_command": {"footage": "street.mp4", "root": P("r"), "train": None, "test": None, "seed": 0,
                             "clip_frames": None, "width": None, "scale": None, "workers": os.cpu_count() or 1,
                             "overwrite": False}},
    ),
    "compare": (
        _compare,
        ["compare", "--data", "d", "--features", "f", "--out", "o", "--methods", "proximity", "oracle",
         "--seeds", "3", "4", "--config", "c.yaml", "--oracle-labels", "gt", "--fresh", "--jobs", "2"],
        {"compare_command": {"data": P("d"), "features": P("f"), "out": P("o"), "methods": ["proximity", "oracle"],
                             "seeds": [3, 4], "config": P("c.yaml"), "fresh": True, "jobs": 2,
                             "oracle_labels": P("gt"),
                             "command": "patchvad compare --data d --features f --out o --methods proximity oracle "
                                        "--seeds 3 4 --config c.yaml --oracle-labels gt --jobs 2"}},
        ["compare", "--data", "d", "--features", "f", "--out", "o"],
        {"compare_command": {"data": P("d"), "features": P("f"), "out": P("o"), "methods": None,
                             "seeds": [0, 1, 2], "config": None, "fresh": False, "jobs": 1,
                             "oracle_labels": None}},
    ),
    "curves": (
        _curves,
        ["curves", "--data", "d", "--features", "f", "--out", "o", "--sizes", "8", "16", "--methods", "proximity",
         "oracle", "--seeds", "3", "4", "--config", "c.yaml", "--oracle-labels", "gt", "--fresh", "--jobs", "2"],
        {"curves_command": {"data": P("d"), "features": P("f"), "out": P("o"), "sizes": [8, 16],
                            "methods": ["proximity", "oracle"], "seeds": [3, 4], "config": P("c.yaml"),
                            "oracle_labels": P("gt"), "jobs": 2, "fresh": True,
                            "command": "patchvad curves --data d --features f --out o --sizes 8 16 --methods "
                                       "proximity oracle --seeds 3 4 --config c.yaml --oracle-labels gt --jobs 2"}},
        ["curves", "--data", "d", "--features", "f", "--out", "o", "--sizes", "40"],
        {"curves_command": {"data": P("d"), "features": P("f"), "out": P("o"), "sizes": [40], "methods": None,
                            "seeds": [0, 1, 2], "config": None, "oracle_labels": None, "jobs": 1, "fresh": False,
                            "command": "patchvad curves --data d --features f --out o --sizes 40 --seeds 0 1 2"}},
    ),
    "extract": (
        _extract,
        ["extract", "r", "--out", "f", "--backbone", "clip-vit-b16", "--grid", "7x9", "--input-size", "160",
         "--snippet-len", "8", "--stride", "4", "--passes", "3", "--no-motion", "--device", "cpu:0",
         "--batch-size", "5", "--splits", "test", "--threads", "1", "--decode-workers", "2"],
        {"extractor": {"backbone": "clip-vit-b16", "grid": (7, 9), "input_size": 160, "snippet_len": 8,
                       "stride": 4, "passes": 3, "motion": False, "device": "cpu:0"},
         "extract_dataset": {"root": P("r"), "out": P("f"), "splits": ("test",), "batch_size": 5,
                             "decode_workers": 2, "rank": 0, "world_size": 1}},
        ["extract", "r", "--out", "f"],
        {"extractor": {"backbone": "effnet-lite0", "grid": 14, "input_size": 224, "snippet_len": 16,
                       "stride": None, "passes": 2, "motion": True, "device": "cpu"},
         "extract_dataset": {"root": P("r"), "out": P("f"), "splits": ("train", "test"), "batch_size": 8,
                             "decode_workers": 0}},
    ),
    "reduce": (
        _reduce,
        ["reduce", "f", "--data", "d", "--out", "o", "--dim", "16", "--samples", "1000", "--seed", "4"],
        {"reduce_store": {"features": P("f"), "data_root": P("d"), "out": P("o"), "dim": 16, "samples": 1000,
                          "seed": 4}},
        ["reduce", "f", "--data", "d", "--out", "o", "--dim", "64"],
        {"reduce_store": {"features": P("f"), "data_root": P("d"), "out": P("o"), "dim": 64, "samples": 200_000,
                          "seed": 0}},
    ),
    "prepare": (
        _prepare,
        ["prepare", "ucsd_ped2", "--source", "s", "--out", "o", "--copy", "--lenient", "--frames-as", "mp4",
         "--option", "hold=16", "--option", "a=b", "--workers", "2"],
        {"prepare_dataset": {"name": "ucsd_ped2", "source": P("s"), "out": P("o"), "copy_videos": True,
                             "strict": False, "frames_as": "mp4", "options": ["hold=16", "a=b"], "workers": 2}},
        ["prepare", "ucsd_ped2", "--source", "s", "--out", "o"],
        {"prepare_dataset": {"name": "ucsd_ped2", "source": P("s"), "out": P("o"), "copy_videos": False,
                             "strict": True, "frames_as": "folder", "options": [], "workers": 4}},
    ),
    "fit": (
        _fit,
        ["fit", "--data", "d", "--features", "f", "--out", "o", "--method", "oracle", "--seed", "7",
         "--config", "c.yaml", "--resume", "--oracle-labels", "labels", "--quiet"],
        {"fit": {"data_root": P("d"), "features": P("f"), "out": P("o"), "method": "oracle", "seed": 7,
                 "config": P("c.yaml"), "resume": True, "oracle_labels": P("labels"), "log": None}},
        ["fit", "--data", "d", "--features", "f", "--out", "o"],
        {"fit": {"data_root": P("d"), "features": P("f"), "out": P("o"), "method": "proximity", "seed": 0,
                 "config": None, "resume": False, "oracle_labels": None}},
    ),
    "test": (
        _test,
        ["test", "--ckpt", "m.safetensors", "--data", "d", "--features", "f", "--out", "p"],
        {"test": {"ckpt": P("m.safetensors"), "data_root": P("d"), "features": P("f"), "out": P("p")}},
        None, None,
    ),
    "ensemble": (
        _ensemble,
        ["ensemble", "p0", "p1", "p2", "--data", "d", "--out", "o"],
        {"ensemble": {"members": [P("p0"), P("p1"), P("p2")], "data_root": P("d"), "out": P("o")}},
        None, None,
    ),
    "predict": (
        _predict,
        ["predict", "cams/*.mp4", "--ckpt", "m.safetensors", "--out", "o", "--stream", "--threshold", "0.3",
         "--delay", "2", "--history", "8", "--device", "cuda:1", "--no-overlay", "--force", "--report"],
        {"predict_command": {"source": "cams/*.mp4", "ckpt": P("m.safetensors"), "out": P("o"), "stream": True,
                             "threshold": 0.3, "delay": 2, "history": 8, "device": "cuda:1", "overlay": False,
                             "force": True, "report_page": True}},
        ["predict", "v.mp4", "--ckpt", "m.safetensors", "--out", "o"],
        {"predict_command": {"source": "v.mp4", "ckpt": P("m.safetensors"), "out": P("o"), "stream": False,
                             "threshold": None, "delay": 1, "history": 64, "device": "cpu", "overlay": True,
                             "force": False, "report_page": False}},
    ),
    "adapt": (
        _adapt,
        ["adapt", "--ckpt", "m.safetensors", "--normal", "a.mp4", "cams/*.mp4", "--out", "o.safetensors",
         "--false-alarms", "0.05", "--device", "cuda:1"],
        {"adapt_command": {"ckpt": P("m.safetensors"), "normal": ["a.mp4", "cams/*.mp4"], "out": P("o.safetensors"),
                           "false_alarms": 0.05, "device": "cuda:1"}},
        ["adapt", "--ckpt", "m.safetensors", "--normal", "a.mp4", "--out", "o.safetensors"],
        {"adapt_command": {"ckpt": P("m.safetensors"), "normal": ["a.mp4"], "out": P("o.safetensors"),
                           "false_alarms": 0.01, "device": "cpu", "min_snippets": 16}},
    ),
    "evaluate": (
        _evaluate,
        ["evaluate", "--dataset", "d", "--predictions", "p", "--out", "{tmp}/m.json"],
        {"evaluate_folder": {"dataset_root": P("d"), "predictions_dir": P("p"), "grid": None}},
        ["evaluate", "--dataset", "d", "--predictions", "p"],
        {"evaluate_folder": {"dataset_root": P("d"), "predictions_dir": P("p"), "grid": None}},
    ),
}


def _check(recorders: dict, expected: dict) -> None:
    for name, params in expected.items():
        rec = recorders[name]
        got = rec[-1] if isinstance(rec, list) else rec.only
        for param, value in params.items():
            assert got[param] == value, f"{name}({param}=...): {got[param]!r} != {value!r}"
            assert type(got[param]) is type(value), f"{name}({param}): {type(got[param])} is not {type(value)}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_flag_reaches_its_parameter(case: str, monkeypatch, tmp_path) -> None:
    patch, argv, expected, _, _ = CASES[case]
    recorders = patch(monkeypatch)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 0
    _check(recorders, expected)


@pytest.mark.parametrize("case", sorted(c for c in CASES if CASES[c][3] is not None))
def test_defaults_reach_the_library(case: str, monkeypatch) -> None:
    patch, _, _, argv, expected = CASES[case]
    recorders = patch(monkeypatch)
    assert cli.main(argv) == 0
    _check(recorders, expected)


def test_every_flag_is_covered() -> None:
    """Each verb of build_parser has a case, and each of its flags appears in one of its cases' argv."""
    parser = cli.build_parser()
    verbs = next(a for a in parser._actions if a.dest == "command").choices
    assert set(verbs) == {argv[0] for _, argv, *_ in CASES.values()}
    for verb, sub in verbs.items():
        flags = {s for a in sub._actions for s in a.option_strings if s not in ("-h", "--help")}
        used = {word for _, argv, *_ in CASES.values() if argv[0] == verb for word in argv}
        assert flags <= used, f"{verb}: no wiring case for {sorted(flags - used)}"


# -- what the verbs print and return --------------------------------------------------


def test_side_effects_and_exit_status(monkeypatch, tmp_path, capsys) -> None:
    import torch

    # extract: threads set before the run, exit status 1 when a video failed
    before = torch.get_num_threads()
    try:
        _extract(monkeypatch, failed={"v": "broken"})
        assert cli.main(["extract", "r", "--out", "f", "--threads", "1"]) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert capsys.readouterr().out.strip() == "summary line"
    # predict: exit status 1 when a source failed
    _predict(monkeypatch, failed={"a.mp4": "broken"})
    assert cli.main(["predict", "a.mp4", "--ckpt", "m", "--out", "o"]) == 1
    # fit without --quiet logs; the summary names the checkpoint, method and seed
    rec = _fit(monkeypatch)["fit"]
    assert cli.main(["fit", "--data", "d", "--features", "f", "--out", "o"]) == 0
    assert callable(rec.only["log"])
    assert capsys.readouterr().out.startswith(f"{Path('run/model.safetensors')}  (method sultani, seed 7, step 3")
    # evaluate writes the metrics it got to --out and prints the table
    _evaluate(monkeypatch)
    assert cli.main(["evaluate", "--dataset", "d", "--predictions", "p", "--out", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text()) == {"frame_auc_micro": 0.75}
    assert capsys.readouterr().out.splitlines() == ["TABLE", f"metrics written to {tmp_path / 'm.json'}"]
    # synth prints its summary line
    _synth(monkeypatch)
    assert cli.main(["synth", str(tmp_path / "s"), "--preset", "tiny", "--train", "2", "--test", "1"]) == 0
    assert capsys.readouterr().out.startswith("synth: wrote 2 training and 1 test videos")


@pytest.mark.parametrize("case", sorted(CASES))
def test_library_errors_are_one_line_with_exit_status_2(case: str, monkeypatch, tmp_path, capsys) -> None:
    patch, argv, _, _, _ = CASES[case]
    verb = argv[0]
    recorders = patch(monkeypatch)
    target = next(r for r in recorders.values() if isinstance(r, Recorder))
    target.raises = ConfigError("the problem, and what to do", path=tmp_path / "thing.yaml")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    line = f"patchvad {verb}: error: {tmp_path / 'thing.yaml'}: the problem, and what to do"
    assert captured.err.splitlines() == [line]


def test_interrupt_keeps_finished_work(monkeypatch, capsys) -> None:
    rec = _fit(monkeypatch)["fit"]
    rec.raises = KeyboardInterrupt()
    assert cli.main(["fit", "--data", "d", "--features", "f", "--out", "o"]) == 130
    assert capsys.readouterr().err.splitlines() == ["patchvad fit: interrupted; finished work is kept"]


def test_synth_refuses_conflicting_options(monkeypatch, capsys) -> None:
    """One output folder, and each option only with the mode it belongs to: one line, exit status 2."""
    painted, footage = _synth(monkeypatch)["generate_benchmark"], _footage(monkeypatch)["footage_command"]
    for argv, why in ((["synth"], "give the output folder once"),
                      (["synth", "r", "--out", "r2"], "give the output folder once"),
                      (["synth", "r", "--background", "f.mp4", "--oracle-labels", "l"],
                       "--oracle-labels applies to the painted benchmark only"),
                      (["synth", "r", "--scale", "40"], "--scale, --clip-frames and --width apply to --background")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("patchvad synth: error: ") and why in err[0], (argv, err)
    assert painted.calls == [] and footage.calls == []


def test_usage_errors_exit_2_without_calling_the_library(monkeypatch, capsys) -> None:
    rec = _fit(monkeypatch)["fit"]
    for argv in (["fit", "--data", "d", "--features", "f"],                          # --out missing
                 ["fit", "--data", "d", "--features", "f", "--out", "o", "--method", "nope"],
                 ["extract", "r", "--out", "f", "--grid", "7y9"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
    assert rec.calls == []
    assert "usage: patchvad" in capsys.readouterr().err
