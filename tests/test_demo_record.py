"""The demo's record: comparison at the printed digits, README's table, the committed record.

``test_readme_table_is_the_committed_record`` is the one that fails when README's table
and docs/results/demo.json disagree (rewrite with ``benchmarks/readme_table.py``).
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from patchvad.demo_record import (
    README_END,
    README_START,
    compare_to_record,
    default_record_path,
    format_cell,
    load_record,
    make_record,
    machine_info,
    readme_block,
    readme_table,
    replace_readme_block,
    reproduction_lines,
)
from patchvad.errors import ConfigError
from patchvad.metrics.table import table_metrics

REPO = Path(__file__).resolve().parents[1]
KEYS = [spec.key for spec in table_metrics()]
SETUP = {"preset": "small", "seeds": 3, "training_steps": 400, "train_videos": 240, "test_videos": 80,
         "synth_preset": "default", "benchmark_seed": 2026}
MACHINE = {"cpu": "Test CPU", "simd": ["X86_V3"], "cpu_count": 2, "platform": "Linux-test", "python": "3.11.9",
           "torch": "2.5.1", "patchvad": "0.1.0", "commit": "0123456789abcdef0123456789abcdef01234567", "dirty": False}

# README's table at commit 196c33b (6 columns): mean, std per method. Frame AUC macro and
# patch AP (not in README) get fixed values.
README_NUMBERS = {
    "proximity": [(0.681, 0.045), (0.304, 0.048), (0.109, 0.016), (0.324, 0.066), (0.488, 0.108), (0.830, 0.019)],
    "plain_topk": [(0.603, 0.034), (0.267, 0.034), (0.083, 0.013), (0.283, 0.051), (0.402, 0.080), (0.799, 0.028)],
    "video_mil": [(0.514, 0.068), (0.176, 0.036), (0.007, 0.003), (0.0, 0.0), (0.0, 0.0), (0.550, 0.066)],
    "motion_floor": [(0.557, 0.0), (0.180, 0.0), (0.051, 0.0), (0.135, 0.001), (0.301, 0.006), (0.820, 0.001)],
    "random": [(0.499, 0.028), (0.166, 0.004), (0.002, 0.001), (0.002, 0.003), (0.014, 0.020), (0.504, 0.012)],
}
README_COLS = ["frame_auc_micro", "frame_ap", "tiou", "rbdc", "tbdc", "pauc"]
README_TABLE = """\
| method | frame AUC (micro) | frame AP | TIoU | RBDC | TBDC | patch AUC |
|---|---|---|---|---|---|---|
| proximity (ours) | 0.681 ± 0.045 | 0.304 ± 0.048 | 0.109 ± 0.016 | 0.324 ± 0.066 | 0.488 ± 0.108 | 0.830 ± 0.019 |
| plain top-k | 0.603 ± 0.034 | 0.267 ± 0.034 | 0.083 ± 0.013 | 0.283 ± 0.051 | 0.402 ± 0.080 | 0.799 ± 0.028 |
| video-level MIL | 0.514 ± 0.068 | 0.176 ± 0.036 | 0.007 ± 0.003 | 0.000 | 0.000 | 0.550 ± 0.066 |
| motion floor (no training) | 0.557 ± 0.000 | 0.180 ± 0.000 | 0.051 ± 0.000 | 0.135 ± 0.001 | 0.301 ± 0.006 | 0.820 ± 0.001 |
| random | 0.499 ± 0.028 | 0.166 ± 0.004 | 0.002 ± 0.001 | 0.002 ± 0.003 | 0.014 ± 0.020 | 0.504 ± 0.012 |"""


def _metrics(numbers: dict[str, list[tuple[float, float]]]) -> dict:
    """A metrics.json summary holding ``numbers`` (README's columns) and 0.5 ± 0.1 elsewhere."""
    methods = {}
    for method, cells in numbers.items():
        mean = {k: 0.5 for k in KEYS}
        std = {k: 0.1 for k in KEYS}
        for k, (m, s) in zip(README_COLS, cells, strict=True):
            mean[k], std[k] = m, s
        seeds = {str(i): {k: mean[k] for k in KEYS} for i in range(3)}
        methods[method] = {"mean": mean, "std": std, "seeds": seeds, "n": {k: 3 for k in KEYS}}
    return {"methods": methods, "spread": "sample standard deviation over seeds (ddof=1)"}


def _record(numbers: dict = README_NUMBERS) -> dict:
    return make_record(_metrics(numbers), {"benchmark": 50.04, "features": 135.0}, setup=SETUP,
                       total_seconds=449.0, machine=MACHINE)


def test_record_holds_every_table_metric_setup_machine_and_times() -> None:
    record = _record()
    here = machine_info()
    assert isinstance(here["cpu"], str) and isinstance(here["simd"], list)
    assert record["metrics"] == KEYS
    assert list(record["methods"]) == list(README_NUMBERS)
    assert record["methods"]["proximity"]["mean"]["tiou"] == 0.109
    assert record["methods"]["proximity"]["std"]["tiou"] == 0.016
    assert record["methods"]["proximity"]["seeds"]["2"]["tiou"] == 0.109
    assert set(record["methods"]["random"]["mean"]) == set(KEYS)
    assert record["setup"] == SETUP and record["machine"] == MACHINE
    assert record["timings_seconds"] == {"benchmark": 50.0, "features": 135.0}
    assert record["total_seconds"] == 449.0
    assert record["reused"] == {}
    assert "ratios" not in record
    json.dumps(record, allow_nan=False)                                     # plain JSON


def test_record_of_undefined_metric_is_null() -> None:
    metrics = _metrics({"proximity": README_NUMBERS["proximity"]})
    metrics["methods"]["proximity"]["mean"]["pap"] = float("nan")
    metrics["methods"]["proximity"]["std"]["pap"] = None
    record = make_record(metrics, {}, setup=SETUP, machine=MACHINE)
    assert record["methods"]["proximity"]["mean"]["pap"] is None
    assert record["total_seconds"] == 0.0


def test_identical_run_reproduces() -> None:
    record = _record()
    assert compare_to_record(_metrics(README_NUMBERS), record) == []
    assert compare_to_record(record, record) == []


def test_fourth_decimal_below_the_printed_digits_reproduces() -> None:
    numbers = copy.deepcopy(README_NUMBERS)
    numbers["proximity"][2] = (0.1094, 0.0161)        # prints 0.109 ± 0.016 like 0.109 ± 0.016
    numbers["random"][0] = (0.4986, 0.0284)           # prints 0.499 ± 0.028
    assert compare_to_record(_metrics(numbers), _record()) == []


def test_fourth_decimal_that_changes_the_printed_digits_is_named() -> None:
    recorded = copy.deepcopy(README_NUMBERS)
    recorded["proximity"][2] = (0.1094, 0.016)
    numbers = copy.deepcopy(README_NUMBERS)
    numbers["proximity"][2] = (0.1096, 0.016)         # 0.110 vs 0.109
    numbers["video_mil"][3] = (0.0, 0.0006)           # std 0.001 vs 0.000
    assert compare_to_record(_metrics(numbers), _record(recorded)) == [
        "proximity TIoU: got 0.110 ± 0.016, recorded 0.109 ± 0.016",
        "video_mil RBDC: got 0.000 ± 0.001, recorded 0.000 ± 0.000",
    ]


def test_methods_on_one_side_only_and_undefined_values_are_named() -> None:
    record = _record()
    metrics = _metrics({**README_NUMBERS, "oracle": README_NUMBERS["proximity"]})
    del metrics["methods"]["random"]
    metrics["methods"]["motion_floor"]["mean"]["pauc"] = None
    assert compare_to_record(metrics, record) == [
        "motion_floor PAUC: got n/a, recorded 0.820 ± 0.001",
        "random: in the record, not in this run",
        "oracle: in this run, not in the record",
    ]


def test_ratio_rows_are_compared_when_present() -> None:
    metrics = _metrics(README_NUMBERS)
    metrics["ratios"] = {"proximity/oracle": {"tiou": 0.2504, "rbdc": 0.61}}
    record = make_record(metrics, {}, setup=SETUP, machine=MACHINE)
    assert record["ratios"] == metrics["ratios"]
    assert compare_to_record(metrics, record) == []
    metrics["ratios"] = {"proximity/oracle": {"tiou": 0.2506, "rbdc": 0.61}}
    assert compare_to_record(metrics, record) == ["proximity/oracle TIoU: got 0.251, recorded 0.250"]
    del metrics["ratios"]
    assert compare_to_record(metrics, record) == ["proximity/oracle: in the record only"]


def test_readme_table_is_readmes_format() -> None:
    assert readme_table(_record()) == README_TABLE


def test_readme_table_names_unknown_methods_and_adds_ratio_rows() -> None:
    metrics = _metrics({"proximity": README_NUMBERS["proximity"], "sultani": README_NUMBERS["random"]})
    metrics["methods"]["sultani"]["mean"]["tiou"] = None
    metrics["ratios"] = {"proximity/oracle": {"frame_auc_micro": 0.7, "tiou": 0.25, "pauc": None}}
    lines = readme_table(make_record(metrics, {}, setup=SETUP, machine=MACHINE)).splitlines()
    assert lines[3] == "| sultani | 0.499 ± 0.028 | 0.166 ± 0.004 | n/a | 0.002 ± 0.003 | 0.014 ± 0.020 | 0.504 ± 0.012 |"
    assert lines[4] == "| proximity (ours) / oracle | 0.700 | n/a | 0.250 | n/a | n/a | n/a |"
    assert len(lines) == 5


def test_format_cell() -> None:
    assert format_cell(0.0, 0.0) == "0.000"                 # every seed exactly 0
    assert format_cell(0.0, None) == "0.000"
    assert format_cell(0.557, 0.0) == "0.557 ± 0.000"
    assert format_cell(0.0004, 0.0) == "0.000 ± 0.000"      # not exactly 0: the spread is shown
    assert format_cell(None, None) == "n/a"


def test_readme_block_round_trip() -> None:
    text = f"intro\n\n{README_START}\nold table\n{README_END}\n\nafter\n"
    assert readme_block(text) == "old table"
    new = replace_readme_block(text, README_TABLE)
    assert new == f"intro\n\n{README_START}\n{README_TABLE}\n{README_END}\n\nafter\n"
    assert readme_block(new) == README_TABLE
    with pytest.raises(ConfigError, match="demo-table:start"):
        readme_block("no markers")


def test_readme_table_is_the_committed_record() -> None:
    """README's table is generated from docs/results/demo.json (fails when they disagree).

    Fix: ``python benchmarks/readme_table.py`` (rewrites README's table from the record).
    """
    record = load_record(default_record_path())
    assert default_record_path() == REPO / "docs" / "results" / "demo.json"
    assert readme_block((REPO / "README.md").read_text(encoding="utf-8")) == readme_table(record), (
        "README's demo table disagrees with docs/results/demo.json; run benchmarks/readme_table.py")


def test_reproduction_lines(tmp_path: Path) -> None:
    record = _record()
    assert reproduction_lines(record, tmp_path / "none.json") == [
        f"no committed record at {tmp_path / 'none.json'}: nothing to compare this run with"]
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(record))
    assert reproduction_lines(record, path) == [f"reproduces {path} to the printed digits"]
    tiny = copy.deepcopy(record)
    tiny["setup"].update(preset="tiny", seeds=1)
    assert reproduction_lines(tiny, path) == [
        f"not comparable with {path}: the committed record ran another setup "
        "(preset: tiny here, small in the record; seeds: 1 here, 3 in the record)"]
    other = copy.deepcopy(record)
    other["methods"]["random"]["mean"]["rbdc"] = 0.004
    assert reproduction_lines(other, path) == [
        f"does not reproduce {path}: 1 number(s) differ at the printed digits",
        "  random RBDC: got 0.004 ± 0.003, recorded 0.002 ± 0.003"]
    # another CPU, or a record that does not name its CPU: said after the differing numbers
    elsewhere = copy.deepcopy(other)
    elsewhere["machine"].update(cpu="Other CPU", simd=["X86_V3", "X86_V4"])
    assert reproduction_lines(elsewhere, path)[2:] == [
        "  the record was made on another CPU (Test CPU (X86_V3); this run: Other CPU (X86_V3, X86_V4)); "
        "the same commit can give other numbers on a CPU with other vector instructions"]
    unnamed = copy.deepcopy(record)
    del unnamed["machine"]["cpu"]
    path.write_text(json.dumps(unnamed))
    assert reproduction_lines(other, path)[2:] == [
        "  the record does not name its CPU (this run: Test CPU (X86_V3)); the same commit can give "
        "other numbers on a CPU with other vector instructions"]
    assert reproduction_lines(unnamed, path) == [f"reproduces {path} to the printed digits"]
    path.write_text(json.dumps({"methods": {}, "format": 99}))
    assert "format 99" in reproduction_lines(record, path)[0]


def _script():
    spec = importlib.util.spec_from_file_location("readme_table", REPO / "benchmarks" / "readme_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_script_checks_rewrites_and_copies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = _script()
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_START}\n| stale |\n{README_END}\n\nrest\n", encoding="utf-8")
    run = tmp_path / "runs" / "record.json"
    run.parent.mkdir()
    run.write_text(json.dumps(_record()))
    committed = tmp_path / "docs" / "results" / "demo.json"
    args = ["--readme", str(readme), "--record", str(committed)]
    assert script.main([*args, "--check"]) == 2                     # no committed record yet
    assert script.main([*args, "--from", str(run)]) == 0            # copy, then rewrite
    assert json.loads(committed.read_text()) == _record()
    assert readme.read_text() == f"# x\n\n{README_START}\n{README_TABLE}\n{README_END}\n\nrest\n"
    assert script.main([*args, "--check"]) == 0
    committed.write_text(json.dumps(_record({**README_NUMBERS, "random": README_NUMBERS["proximity"]})))
    capsys.readouterr()
    assert script.main([*args, "--check"]) == 1
    out = capsys.readouterr().out
    assert "-| random | 0.499 ± 0.028" in out and "+| random | 0.681 ± 0.045" in out
    assert "disagrees" in out
