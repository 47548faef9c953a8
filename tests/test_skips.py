"""A green CI run cannot hide tests that never ran.

Tests that need something outside the repository (the real data in ``../shared/data``,
a headless Chromium) skip through one helper, ``tests/conftest.py`` ``skip_or_fail`` /
``require_shared``, which fails instead when ``CI=true``. Only optional extras that may
be absent (``pytest.importorskip``) skip by themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA, require_shared, skip_or_fail


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_under_ci_a_missing_resource_fails(monkeypatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="CI=true: .*no-such-file"):
        require_shared("no-such-file")
    with pytest.raises(pytest.fail.Exception, match="CI=true: chromium"):
        skip_or_fail("chromium")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_elsewhere_a_missing_resource_skips(monkeypatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="no-such-file"):
        require_shared("no-such-file")


def test_a_present_resource_is_returned(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    if not SHARED_DATA.is_dir():
        skip_or_fail(f"{SHARED_DATA} not found")
    first = min(SHARED_DATA.iterdir())
    assert require_shared(first.name) == first


def test_no_test_skips_by_itself() -> None:
    """Every skip outside tests/conftest.py goes through its helper (importorskip excepted)."""
    raw = re.compile(r"pytest\.skip\(|mark\.skip(if)?\b|pytest\.xfail\(|mark\.xfail\b")
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if path == REPO / "tests" / "conftest.py" or path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if raw.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "skip through conftest.skip_or_fail / require_shared:\n" + "\n".join(offenders)
