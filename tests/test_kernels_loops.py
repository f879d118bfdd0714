"""A BatchLoop runs its serial compilation below the crossover (tinybnn.kernels.loops)."""

import pytest

from tinybnn.kernels import loops, pool


@pytest.mark.parametrize("batch,threads,expected", [(1, 2, "serial"), (3, 2, "serial"),
                                                     (4, 2, "parallel"), (100, 1, "serial")])
def test_batch_loops_run_serially_below_the_crossover(batch, threads, expected, monkeypatch):
    """A BatchLoop picks its serial compilation for a small batch or a single thread."""
    monkeypatch.setattr(loops.numba, "get_num_threads", lambda: threads)
    loop = pool._maxpool
    assert loop.pick(batch) is getattr(loop, expected)
    assert loop.chunks(batch) == (threads if expected == "parallel" else 1)
