"""Each numba kernel equals its NumPy twin (float64 and float32), and im2col/col2im and
gather/scatter are adjoint pairs."""

import numpy as np
import pytest

from tinybnn import kernels as kn

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
    idx = kn.maxpool_argmax(m)
    np.testing.assert_array_equal(idx, kn.maxpool_argmax_numpy(m))
    if shape[2] >= 2 and shape[3] >= 2 and m[0, 0, :2, :2].max() == 0:
        assert idx[0, 0, 0, 0] == 0
    close(kn.gather(m, idx), kn.gather_numpy(m, idx), dtype)
    g = rng.normal(size=idx.shape).astype(dtype)
    close(kn.scatter(g, idx, shape), kn.scatter_numpy(g, idx, shape), dtype)


def factored_inputs(rng, dtype, B=3, P=20, d=6, N=4, L=5, K=3):
    patches = rng.normal(size=(B, P, d)).astype(dtype)
    rows = rng.integers(0, P, size=(B, N, L))
    scale = (rng.random((B, N, L)) > 0.3).astype(dtype)
    M3 = rng.normal(size=(N, L, K)).astype(dtype)
    GAt = rng.normal(size=(B, N, K, d)).astype(dtype)
    s = rng.uniform(0.1, 1, N).astype(dtype)
    c = rng.normal(size=B).astype(dtype)
    return patches, rows, scale, M3, GAt, s, c


@pytest.mark.parametrize("dtype", DTYPES)
def test_factored_kernels(dtype):
    patches, rows, scale, M3, GAt, s, c = factored_inputs(np.random.default_rng(2), dtype)
    At, tau = kn.factored_project(patches, rows, scale, M3)
    At0, tau0 = kn.factored_project_numpy(patches, rows, scale, M3)
    close(At, At0, dtype)
    close(tau, tau0, dtype)
    close(kn.factored_project_backward(patches, rows, scale, GAt, s),
          kn.factored_project_backward_numpy(patches, rows, scale, GAt, s), dtype)
    close(kn.factored_patch_grad(patches, rows, scale, M3, GAt, s, c),
          kn.factored_patch_grad_numpy(patches, rows, scale, M3, GAt, s, c), dtype)
