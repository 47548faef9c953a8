"""Fixtures of the metrics tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import build_dataset


@pytest.fixture
def make_dataset(tmp_path: Path):
    def make(videos: list[dict], name: str = "ds") -> Path:
        return build_dataset(tmp_path / name, videos)
    return make
