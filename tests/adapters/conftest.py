"""Fixtures for the dataset-adapter tests (helpers: tests/adapters/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import SHARED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real annotation files; the test is skipped (with the reason) when absent."""
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"real annotation files not found at {SHARED} (expected <repo>/../shared/data)")
    return SHARED
