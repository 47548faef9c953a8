"""Fixtures for the dataset-adapter tests (helpers: tests/adapters/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_shared


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real annotation files; the test is skipped (with the reason) when absent, failed under CI=true."""
    return require_shared("README.md").parent
