"""The factored covariance loops equal their NumPy twins, for any number of per-thread partial
sums (tinybnn.kernels.factored)."""

import numpy as np
import pytest

from tinybnn.kernels import factored as kf
from vdp_helpers import KERNEL_DTYPES as DTYPES, kernel_close as close


def factored_inputs(rng, dtype, B=3, P=20, d=6, N=4, L=5, K=3):
    patches = rng.normal(size=(B, P, d)).astype(dtype)
    rows = rng.integers(0, P, size=(B, N, L))
    scale = (rng.random((B, N, L)) > 0.3).astype(dtype)
    M3 = rng.normal(size=(N, L, K)).astype(dtype)
    At = rng.normal(size=(B, N, K, d)).astype(dtype)
    G = rng.normal(size=(B, K, K)).astype(dtype)
    G = G + G.transpose(0, 2, 1)
    s = rng.uniform(0.1, 1, N).astype(dtype)
    c = rng.normal(size=B).astype(dtype)
    tau = rng.uniform(0.1, 1, (B, N)).astype(dtype)
    return patches, rows, scale, M3, At, G, s, c, tau


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B", [3, 1])
def test_factored_kernels(dtype, B):
    patches, rows, scale, M3, At, G, s, c, tau = factored_inputs(np.random.default_rng(2), dtype,
                                                                 B=B)
    for got, want in zip(kf.factored_project(patches, rows, scale, M3, s),
                         kf.factored_project_numpy(patches, rows, scale, M3, s)):
        close(got, want, dtype)
        assert got.dtype == dtype
    for got, want in zip(kf.factored_project_backward(patches, rows, scale, At, G, s, c, tau),
                         kf.factored_project_backward_numpy(patches, rows, scale, At, G, s, c, tau)):
        close(got, want, dtype)
        assert got.dtype == dtype
    GAt = G[:, None] @ At
    close(kf.factored_patch_grad(patches, rows, scale, M3, GAt, s, c),
          kf.factored_patch_grad_numpy(patches, rows, scale, M3, GAt, s, c), dtype)


@pytest.mark.parametrize("compiled", ["parallel", "serial"])
def test_factored_backward_partial_sums_do_not_depend_on_the_thread_count(compiled):
    """The per-thread partial sums of dM3 add up to the same result for any number of chunks,
    in the parallel and the serial compilation of the loop (tinybnn.kernels.loops.BatchLoop)."""
    patches, rows, scale, M3, At, G, s, c, tau = factored_inputs(np.random.default_rng(6),
                                                                 np.float64, B=5)
    want = kf.factored_project_backward_numpy(patches, rows, scale, At, G, s, c, tau)
    loop = getattr(kf._factored_project_backward, compiled)
    for chunks in (1, 2, 3, 7):
        got = loop(patches, rows, scale, At, G, s, c, tau, kf.padded_length(patches.shape[2]),
                   chunks)
        for a, b in zip(got, want):
            close(a, b, np.float64)
