"""README's demo table from the committed record (docs/results/demo.json).

Not a measurement: README's table (between ``<!-- demo-table:start -->`` and
``<!-- demo-table:end -->``) is generated from the reference run's record, so the
numbers README shows are the numbers a run wrote (``tests/test_demo_record.py`` fails
when they disagree).

    .venv/bin/python benchmarks/readme_table.py                # rewrite README's table
    .venv/bin/python benchmarks/readme_table.py --check        # exit 1 when they disagree
    .venv/bin/python benchmarks/readme_table.py --from runs/demo/record.json
                                    # commit a run's record as the reference, then rewrite

``--from`` copies the record ``patchvad demo`` wrote into docs/results/demo.json. The
README's prose around the table (run time, stage times, commit) is written by hand:
read them from the record this prints.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from patchvad.demo_record import load_record, readme_block, readme_table, replace_readme_block
from patchvad.errors import PatchvadError
from patchvad.io.files import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def _summary(record: dict) -> str:
    machine, setup = record.get("machine") or {}, record.get("setup") or {}
    total = record.get("total_seconds")
    reused = record.get("reused") or {}
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in (record.get("timings_seconds") or {}).items())
    commit = machine.get("commit") or "unknown"
    dirty = " (uncommitted changes)" if machine.get("dirty") else ""
    return (f"record: preset {setup.get('preset')}, {setup.get('seeds')} seeds; commit {commit[:7]}{dirty}; "
            f"{machine.get('cpu_count')} CPUs, {machine.get('platform')}, python {machine.get('python')}, "
            f"torch {machine.get('torch')}; total {total} s ({stages})"
            + ("; times of a resumed run (reused: " + ", ".join(f"{k} {v}" for k, v in reused.items()) + ")"
               if any(reused.values()) else ""))


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or ``--check``) README's demo table; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when README disagrees")
    ap.add_argument("--from", dest="source", type=Path,
                    help="a run's record.json to copy into --record first (patchvad demo writes OUT/record.json)")
    ap.add_argument("--record", type=Path, default=REPO / "docs" / "results" / "demo.json")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = ap.parse_args(argv)
    if args.check and args.source:
        ap.error("--check compares the committed record; it does not take --from")
    try:
        if args.source is not None:
            atomic_write_json(args.record, load_record(args.source))
            print(f"copied {args.source} -> {args.record}")
        record = load_record(args.record)
        text = args.readme.read_text(encoding="utf-8")
        have, want = readme_block(text, args.readme), readme_table(record)
        print(_summary(record))
        if have == want:
            print(f"{args.readme} agrees with {args.record}")
            return 0
        if args.check:
            sys.stdout.writelines(difflib.unified_diff((have + "\n").splitlines(True), (want + "\n").splitlines(True),
                                                       f"{args.readme} (now)", f"from {args.record}"))
            print(f"\n{args.readme} disagrees with {args.record}; run benchmarks/readme_table.py to rewrite it")
            return 1
        atomic_write_text(args.readme, replace_readme_block(text, want, args.readme))
        print(f"rewrote the demo table of {args.readme} from {args.record}")
        return 0
    except (PatchvadError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
