"""The per-step loops equal their NumPy twins: Adam and the elbo's column sums to the last bit, the
NLL of a Full output and the L1 penalty to rounding (tinybnn.kernels.step)."""

import numpy as np
import pytest

from tinybnn.kernels import step as ks
from vdp_helpers import KERNEL_DTYPES as DTYPES, KERNEL_TOL as TOL, kernel_close as close, spd


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_rounds_exactly_as_numpy(dtype):
    """Three Adam steps in the loop and in NumPy give bit-identical parameters and moments."""
    rng = np.random.default_rng(10)
    p0, m0, v0 = (rng.normal(size=(7, 5)).astype(dtype) for _ in range(3))
    v0 = np.abs(v0)
    a, b = [x.copy() for x in (p0, m0, v0)], [x.copy() for x in (p0, m0, v0)]
    for t in range(1, 4):
        g = rng.normal(size=(7, 5)).astype(dtype)
        c1, c2 = 1 - 0.9**t, 1 - 0.999**t
        ks.adam_update(*a[:1], g, *a[1:], 1e-3 / c1, 0.9, 0.999, c2, 1e-8)
        ks.adam_update_numpy(*b[:1], g, *b[1:], 1e-3 / c1, 0.9, 0.999, c2, 1e-8)
    for x, y in zip(a, b):
        assert x.dtype == dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_full_kernel(dtype):
    rng = np.random.default_rng(11)
    B, K = 4, 6
    mean, target = rng.random((B, K)).astype(dtype), np.eye(K, dtype=dtype)[[0, 3, 5, 1]]
    cov = spd(rng, B, K).astype(dtype)
    got, want = ks.nll_full(mean, cov, target, 1e-3), ks.nll_full_numpy(mean, cov, target, 1e-3)
    assert got[4] == want[4] == -1
    for a, w in zip(got[:4], want[:4]):
        assert a.dtype == dtype
        close(a, w, dtype)
    cov[2] = -np.eye(K)  # not positive definite, even with the jitter: example 2 is named
    assert ks.nll_full(mean, cov, target, 1e-3)[4] == 2
    assert ks.nll_full_numpy(mean, cov, target, 1e-3)[4] == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_and_sign(dtype):
    rng = np.random.default_rng(13)
    M = rng.normal(size=(40, 6)).astype(dtype)
    M[0, :3] = 0.0  # sign(0) = 0
    total, dM = ks.l1_and_sign(M, 0.5)
    want_total, want_dM = ks.l1_and_sign_numpy(M, 0.5)
    np.testing.assert_array_equal(dM, want_dM)
    assert dM.dtype == dtype and dM[0, 0] == 0
    assert total == pytest.approx(float(want_total), rel=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_squares_and_scaled_rounds_exactly_as_numpy(dtype):
    """The elbo's squared column norms and M / a / b: NumPy's numbers, bit for bit (the loss
    of a run must not move with the loop), in the array's dtype."""
    rng = np.random.default_rng(12)
    M = rng.normal(size=(4608, 10)).astype(dtype)
    for prior_var in (0.7, 1.0):  # 1: the division by it is skipped (it is exact)
        got = ks.column_squares_and_scaled(M, prior_var, 55000)
        want = ks.column_squares_and_scaled_numpy(M, prior_var, 55000)
        for a, w in zip(got, want):
            assert a.dtype == w.dtype == dtype
            np.testing.assert_array_equal(a, w)
    exact = (M.astype(np.float64) ** 2).sum(axis=0)  # and they are the squared column norms
    np.testing.assert_allclose(got[0], exact, rtol=TOL[dtype])
    np.testing.assert_allclose(got[1], M.astype(np.float64) / 55000, rtol=TOL[dtype])
