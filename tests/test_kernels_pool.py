"""Max-pool, gather and scatter equal their NumPy twins, gather and scatter are adjoint, and
gather reads the broadcast views a first convolution passes (tinybnn.kernels.pool)."""

import numpy as np
import pytest

from tinybnn.kernels import pool as kn
from vdp_helpers import KERNEL_DTYPES as DTYPES, KERNEL_TOL as TOL, kernel_close as close


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 6, 4), (2, 2, 5, 7), (1, 1, 1, 1)])
def test_maxpool_gather_scatter(dtype, shape):
    rng = np.random.default_rng(1)
    m = rng.normal(size=shape).astype(dtype)
    m[0, 0, :2, :2] = 0.0  # a tie: the first maximum (row-major) wins
    idx, pooled = kn.maxpool(m)
    idx0, pooled0 = kn.maxpool_numpy(m)
    np.testing.assert_array_equal(idx, idx0)
    np.testing.assert_array_equal(idx, kn.maxpool_argmax_numpy(m))
    close(pooled, pooled0, dtype)
    if shape[2] >= 2 and shape[3] >= 2 and m[0, 0, :2, :2].max() == 0:
        assert idx[0, 0, 0, 0] == 0
    close(kn.gather(m, idx), kn.gather_numpy(m, idx), dtype)
    g = rng.normal(size=idx.shape).astype(dtype)
    close(kn.scatter(g, idx, shape), kn.scatter_numpy(g, idx, shape), dtype)
    # adjoint: <gather(m), g> == <m, scatter(g)>
    assert np.isclose((kn.gather(m, idx) * g).sum(), (m * kn.scatter(g, idx, shape)).sum(),
                      rtol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_reads_broadcast_views(dtype):
    """The first conv's identity rows and unit scale are broadcast views, gathered in place."""
    B, C, H, W = 3, 2, 4, 6
    m = np.random.default_rng(4).normal(size=(B, C, H, W)).astype(dtype)
    idx, _ = kn.maxpool(m)
    rows = np.broadcast_to(np.arange(H * W).reshape(1, 1, H, W), m.shape)
    ones = np.broadcast_to(np.ones((), dtype=dtype), m.shape)
    np.testing.assert_array_equal(kn.gather(rows, idx), idx)
    np.testing.assert_array_equal(kn.gather(ones, idx), np.ones(idx.shape, dtype))
