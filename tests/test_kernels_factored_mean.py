"""The linear layer's mean-path loops equal their NumPy twins (tinybnn.kernels.factored_mean)."""

import numpy as np
import pytest

from tinybnn.kernels import factored_mean as kf
from vdp_helpers import KERNEL_DTYPES as DTYPES, kernel_close as close


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,D,K", [(3, 600, 10), (1, 7, 3)])
def test_factored_mean_kernels(dtype, B, D, K):
    """The linear layer's mean path on a FlatFactored input; D = 600 spans three blocks of
    MEAN_BLOCK inputs, the last one partial."""
    rng = np.random.default_rng(7)
    mu = rng.normal(size=(B, D)).astype(dtype)
    M, b = rng.normal(size=(D, K)).astype(dtype), rng.normal(size=K).astype(dtype)
    g, c = rng.normal(size=(B, K)).astype(dtype), rng.normal(size=B).astype(dtype)
    for got, want in ((kf.factored_mean(mu, M, b), kf.factored_mean_numpy(mu, M, b)),
                      (kf.factored_mean_backward(mu, g, M, c),
                       kf.factored_mean_backward_numpy(mu, g, M, c))):
        for a, w in zip(got, want):
            assert a.shape == w.shape and a.dtype == dtype
            close(a, w, dtype)
