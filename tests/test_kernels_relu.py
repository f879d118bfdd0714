"""The ReLU loops equal their NumPy twins, on broadcast scales and NaNs too
(tinybnn.kernels.relu)."""

import numpy as np
import pytest

from tinybnn.kernels import relu as kn
from vdp_helpers import KERNEL_DTYPES as DTYPES


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("broadcast_scale", [False, True])
def test_relu_kernels(dtype, broadcast_scale):
    rng = np.random.default_rng(5)
    mean = rng.normal(size=(3, 4, 7)).astype(dtype)
    mean[0, 0, :3] = 0.0  # exactly 0: mask 0
    mean[0, 1, 0] = np.nan  # a NaN stays NaN in the mean, masked in the scale
    scale = (np.broadcast_to(np.ones((), dtype=dtype), mean.shape) if broadcast_scale
             else rng.uniform(0.5, 1.5, mean.shape).astype(dtype))
    out, sc = kn.relu_scale(mean, scale)
    out0, sc0 = kn.relu_scale_numpy(mean, scale)
    np.testing.assert_array_equal(out, out0)
    np.testing.assert_array_equal(sc, sc0)
    assert out.dtype == sc.dtype == dtype
    g = rng.normal(size=mean.shape).astype(dtype)
    np.testing.assert_array_equal(kn.relu_backward(g, out), kn.relu_backward_numpy(g, out0))
    assert kn.relu_backward(g, out).dtype == dtype
