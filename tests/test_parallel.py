"""patchvad.parallel.run_parallel: every result once; thread budget per spawned worker."""

from __future__ import annotations

import os

import pytest

from patchvad.parallel import run_parallel


def square_and_threads(x: int) -> tuple[int, int, int]:
    import torch

    return x, x * x, torch.get_num_threads()


def test_sequential_keeps_order_and_threads() -> None:
    import torch

    before = torch.get_num_threads()
    got = list(run_parallel(square_and_threads, [3, 1, 2], jobs=1))
    assert got == [(3, 9, before), (1, 1, before), (2, 4, before)]
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_processes_return_every_result_with_cores_per_job_threads() -> None:
    got = list(run_parallel(square_and_threads, [1, 2, 3, 4], jobs=2))
    assert sorted((x, y) for x, y, _ in got) == [(1, 1), (2, 4), (3, 9), (4, 16)]
    assert {t for _, _, t in got} == {max(1, (os.cpu_count() or 1) // 2)}
