"""Each numba kernel equals its NumPy twin (float64 and float32), and im2col/col2im and
gather/scatter are adjoint pairs. Inputs include the layouts the layers pass: broadcast views
(the identity rows and unit scale of a first convolution) and float32."""

import numpy as np
import pytest

from tinybnn import kernels as kn
from tinybnn import kernels_factored as kf
from tinybnn import kernels_step as ks

DTYPES = [np.float64, np.float32]
TOL = {np.float64: 1e-12, np.float32: 1e-5}


def close(a, b, dtype):
    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * max(1.0, np.abs(b).max()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,r", [((2, 1, 7, 6), 3), ((3, 2, 5, 5), 2), ((1, 3, 4, 4), 4)])
def test_im2col_col2im(dtype, shape, r):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    X = kn.im2col(x, r)
    close(X, kn.im2col_numpy(x, r), dtype)
    B, C, H, W = shape
    assert X.shape == (B, (H - r + 1) * (W - r + 1), C * r * r)
    if X.shape[1] > 1:
        assert X[0, 1, 0] == x[0, 0, 0, 1]  # row-major positions, (c, i, j) patch order
    g = rng.normal(size=X.shape).astype(dtype)
    close(kn.col2im(g, shape, r), kn.col2im_numpy(g, shape, r), dtype)
    # adjoint: <im2col(x), g> == <x, col2im(g)>
    assert np.isclose((X * g).sum(), (x * kn.col2im(g, shape, r)).sum(), rtol=TOL[dtype] * 10)


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
    in the parallel and the serial compilation of the loop (kernels.BatchLoop)."""
    patches, rows, scale, M3, At, G, s, c, tau = factored_inputs(np.random.default_rng(6),
                                                                 np.float64, B=5)
    want = kf.factored_project_backward_numpy(patches, rows, scale, At, G, s, c, tau)
    loop = getattr(kf._factored_project_backward, compiled)
    for chunks in (1, 2, 3, 7):
        got = loop(patches, rows, scale, At, G, s, c, tau, kf.padded_length(patches.shape[2]),
                   chunks)
        for a, b in zip(got, want):
            close(a, b, np.float64)


@pytest.mark.parametrize("batch,threads,expected", [(1, 2, "serial"), (3, 2, "serial"),
                                                     (4, 2, "parallel"), (100, 1, "serial")])
def test_batch_loops_run_serially_below_the_crossover(batch, threads, expected, monkeypatch):
    """A BatchLoop picks its serial compilation for a small batch or a single thread."""
    monkeypatch.setattr(kn.numba, "get_num_threads", lambda: threads)
    loop = kn._maxpool
    assert loop.pick(batch) is getattr(loop, expected)
    assert loop.chunks(batch) == (threads if expected == "parallel" else 1)


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


# ---------------------------------------------------------------------------------------------
# the per-step loops (tinybnn.kernels_step)
# ---------------------------------------------------------------------------------------------


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


def spd_batch(rng, B, K, dtype):
    A = rng.normal(size=(B, K, K))
    return (A @ A.transpose(0, 2, 1) / K + 0.1 * np.eye(K)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nll_full_kernel(dtype):
    rng = np.random.default_rng(11)
    B, K = 4, 6
    mean, target = rng.random((B, K)).astype(dtype), np.eye(K, dtype=dtype)[[0, 3, 5, 1]]
    cov = spd_batch(rng, B, K, dtype)
    got, want = ks.nll_full(mean, cov, target, 1e-3), ks.nll_full_numpy(mean, cov, target, 1e-3)
    assert got[4] == want[4] == -1
    for a, w in zip(got[:4], want[:4]):
        assert a.dtype == dtype
        close(a, w, dtype)
    cov[2] = -np.eye(K)  # not positive definite, even with the jitter: example 2 is named
    assert ks.nll_full(mean, cov, target, 1e-3)[4] == 2
    assert ks.nll_full_numpy(mean, cov, target, 1e-3)[4] == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_full_kernels(dtype):
    rng = np.random.default_rng(12)
    B, K = 3, 5
    mu, S = (3 * rng.normal(size=(B, K))).astype(dtype), spd_batch(rng, B, K, dtype)
    for a, w in zip(ks.softmax_full(mu, S), ks.softmax_full_numpy(mu, S)):
        close(a, w, dtype)
    p, J, JS, _ = ks.softmax_full_numpy(mu, S)
    g, G = rng.normal(size=(B, K)).astype(dtype), spd_batch(rng, B, K, dtype)
    for a, w in zip(ks.softmax_full_backward(p, J, JS, g, G),
                    ks.softmax_full_backward_numpy(p, J, JS, g, G)):
        close(a, w, dtype)


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
