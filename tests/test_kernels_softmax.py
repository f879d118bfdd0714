"""The first-order softmax loops equal their NumPy twins (tinybnn.kernels.softmax)."""

import numpy as np
import pytest

from tinybnn.kernels import softmax as ks
from vdp_helpers import KERNEL_DTYPES as DTYPES, kernel_close as close, spd


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_full_kernels(dtype):
    rng = np.random.default_rng(12)
    B, K = 3, 5
    mu, S = (3 * rng.normal(size=(B, K))).astype(dtype), spd(rng, B, K).astype(dtype)
    for a, w in zip(ks.softmax_full(mu, S), ks.softmax_full_numpy(mu, S)):
        close(a, w, dtype)
    p, J, JS, _ = ks.softmax_full_numpy(mu, S)
    g, G = rng.normal(size=(B, K)).astype(dtype), spd(rng, B, K).astype(dtype)
    for a, w in zip(ks.softmax_full_backward(p, J, JS, g, G),
                    ks.softmax_full_backward_numpy(p, J, JS, g, G)):
        close(a, w, dtype)
