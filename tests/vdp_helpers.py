"""Test helpers: random structures, random scalar probes of a structure, and an explicit
(dense P x P) view of the factored structures, written independently of the library's path.
For the Projected structure (a Full kept as factors) the helpers also convert a dense covariance
gradient into gradients with respect to its factors, with explicit formulas."""

import numpy as np

from tinybnn.architectures import paper_cnn
from tinybnn.gaussian import (Diagonal, Factored, FactoredGrad, FlatFactored, Full, Point,
                              Projected, ProjectedGrad)


def spd(rng, B, K):
    """B random symmetric positive definite (K, K) matrices of order-one scale."""
    A = rng.normal(size=(B, K, K))
    return A @ A.transpose(0, 2, 1) / K + 0.1 * np.eye(K)


def random_point(rng, shape):
    return Point(rng.normal(size=shape))


def random_diagonal(rng, shape):
    return Diagonal(rng.normal(size=shape), rng.uniform(0.1, 1.0, size=shape))


def random_full(rng, B, K):
    return Full(rng.normal(size=(B, K)), spd(rng, B, K))


def random_projected(rng, B=3, D0=6, K=4):
    """A Projected structure: diag(a) (U^T diag(v) U + diag(e)) diag(a), a in {0} u [0.5, 1.5]."""
    scale = rng.uniform(0.5, 1.5, size=(B, K)) * (rng.random((B, K)) > 0.25)
    return Projected(rng.normal(size=(B, K)), rng.normal(size=(D0, K)) / np.sqrt(D0),
                     rng.uniform(0.1, 1.0, size=(B, D0)), rng.uniform(0.1, 1.0, size=(B, K)), scale)


def projected_factor_grads(x, G):
    """dl/d(var, extra, U) of a Projected x from the gradient G (B, K, K) of its dense cov.

    With H_b = diag(a_b) G_b diag(a_b): dvar_bi = (U H_b U^T)_ii, dextra_bk = (H_b)_kk,
    dU = 2 sum_b diag(var_b) U H_b (G symmetric).
    """
    a = x.scale
    H = G * a[:, :, None] * a[:, None, :]
    UH = np.einsum("ik,bkl->bil", x.U, H)  # (B, D0, K)
    dvar = np.einsum("bil,il->bi", UH, x.U)
    dextra = np.diagonal(H, axis1=1, axis2=2).copy()
    dU = 2 * np.einsum("bi,bil->il", x.var, UH)
    return dvar, dextra, dU


def random_factored(rng, B=2, N=3, H=3, W=3, P=12, d=4, flat=False, binary_scale=False):
    """A Factored structure with arbitrary rows and scales (constants) and tracked patches."""
    mean = rng.normal(size=(B, N, H, W))
    patches = rng.normal(size=(B, P, d))
    rows = rng.integers(0, P, size=(B, N, H, W))
    scale = (rng.random((B, N, H, W)) > 0.3).astype(float) if binary_scale \
        else rng.uniform(0.5, 1.5, size=(B, N, H, W))
    s = rng.uniform(0.2, 1.0, size=N)
    if flat:
        return FlatFactored(mean.reshape(B, -1), patches, rows.reshape(B, N, -1),
                            scale.reshape(B, N, -1), s, True)
    return Factored(mean, patches, rows, scale, s, True)


def factor_rows(x):
    """F (B, N, L, d) with F[b, n, l] = scale * patches[b, rows[b, n, l]] (explicit loops)."""
    B, N = x.rows.shape[:2]
    rows = x.rows.reshape(B, N, -1)
    scale = x.scale.reshape(B, N, -1)
    F = np.zeros(rows.shape + (x.patches.shape[2],))
    for b in range(B):
        for n in range(N):
            for l in range(rows.shape[2]):
                F[b, n, l] = scale[b, n, l] * x.patches[b, rows[b, n, l]]
    return F


def dense_blocks(x):
    """The explicit per-channel covariances s_k F_k F_k^T of a factored structure (B, N, L, L)."""
    F = factor_rows(x)
    return x.s[None, :, None, None] * F @ F.transpose(0, 1, 3, 2)


def dense_full(x):
    """A FlatFactored structure as an explicit block-diagonal Full (B, N L, N L)."""
    blocks = dense_blocks(x)
    B, N, L, _ = blocks.shape
    S = np.zeros((B, N * L, N * L))
    for n in range(N):
        S[:, n * L:(n + 1) * L, n * L:(n + 1) * L] = blocks[:, n]
    return Full(x.mean.copy(), S)


def probe(y, rng, dense=False):
    """A random linear functional l(y) of a structure and its gradient dl/dy (a structure).

    Returns (f, dy) where f(y) -> float. For a factored y the functional reads the explicit
    per-channel covariances, and dy is their adjoint written with explicit loops. For a
    Projected y it reads the factors (dy a ProjectedGrad), or with ``dense=True`` the dense
    ``cov`` like any Full (dy a Full).
    """
    Rm = rng.normal(size=y.mean.shape)
    if isinstance(y, Projected) and not dense:
        Rv, Re, RU = (rng.normal(size=a.shape) for a in (y.var, y.extra, y.U))

        def f(z):
            return float((Rm * z.mean).sum() + (Rv * z.var).sum() + (Re * z.extra).sum()
                         + (RU * z.U).sum())
        return f, ProjectedGrad(Rm, Rv, Re, RU)
    if isinstance(y, Point):
        return (lambda z: float((Rm * z.mean).sum())), Point(Rm)
    if isinstance(y, Diagonal):
        Rv = rng.normal(size=y.var.shape)
        return (lambda z: float((Rm * z.mean).sum() + (Rv * z.var).sum())), Diagonal(Rm, Rv)
    if isinstance(y, Full):
        R = rng.normal(size=y.cov.shape)
        R = R + R.transpose(0, 2, 1)
        return (lambda z: float((Rm * z.mean).sum() + (R * z.cov).sum())), Full(Rm, R)
    B, N = y.rows.shape[:2]
    L = y.rows[0, 0].size
    R = rng.normal(size=(B, N, L, L))
    R = R + R.transpose(0, 1, 3, 2)
    F = factor_rows(y)
    ds = np.einsum("bnij,bnid,bnjd->bn", R, F, F)
    dF = 2 * y.s[None, :, None, None] * R @ F  # (B, N, L, d)
    dpatches = np.zeros_like(y.patches)
    rows, scale = y.rows.reshape(B, N, -1), y.scale.reshape(B, N, -1)
    for b in range(B):
        for n in range(N):
            for l in range(L):
                dpatches[b, rows[b, n, l]] += scale[b, n, l] * dF[b, n, l]
    f = lambda z: float((Rm * z.mean).sum() + (R * dense_blocks(z)).sum())  # noqa: E731
    return f, FactoredGrad(Rm, ds, dpatches if y.track_patches else None)


def input_arrays(x):
    """(name, array, symmetric) for every differentiable field of an input structure."""
    if isinstance(x, Projected):
        return [("mean", x.mean, False), ("var", x.var, False), ("extra", x.extra, False),
                ("U", x.U, False)]
    if isinstance(x, Point):
        return [("mean", x.mean, False)]
    if isinstance(x, Diagonal):
        return [("mean", x.mean, False), ("var", x.var, False)]
    if isinstance(x, Full):
        return [("mean", x.mean, False), ("cov", x.cov, True)]
    return [("mean", x.mean, False), ("patches", x.patches, False), ("s", x.s, False)]


def input_grad(dx, field, x=None):
    """The gradient in ``dx`` matching ``input_arrays`` field names (s summed over the batch).

    For a Projected input ``x`` whose gradient came back as a Full, the factors' gradients are
    computed from the dense one (:func:`projected_factor_grads`).
    """
    if isinstance(x, Projected) and type(dx) is Full and field != "mean":
        return dict(zip(("var", "extra", "U"), projected_factor_grads(x, dx.cov)))[field]
    if field == "var":
        return dx.var
    if field == "cov":
        return dx.cov
    if field == "s":
        return dx.s.sum(axis=0)
    return getattr(dx, field)


# the kernels' tests: each numba loop against its NumPy twin, in both dtypes
KERNEL_DTYPES = [np.float64, np.float32]
KERNEL_TOL = {np.float64: 1e-12, np.float32: 1e-5}


def kernel_close(a, b, dtype):
    """a equals b to the kernels' tolerance for ``dtype``."""
    tol = KERNEL_TOL[dtype]
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def factored_inputs(rng, dtype, B=3, P=20, d=6, N=4, L=5, K=3):
    """Random inputs of the factored loops: patches, rows, a 0/1 scale, M3, At, a symmetric G, s,
    c and tau."""
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


def assert_same_model(imported, original):
    """The two networks have the same spec and bit-identical parameters of the same dtypes."""
    assert imported.spec() == original.spec()
    assert imported.params.keys() == original.params.keys()
    for k, v in original.params.items():
        assert imported.params[k].dtype == v.dtype, k
        np.testing.assert_array_equal(imported.params[k], v, err_msg=k)


def digits_cnn(n_kernels=6, *, seed=0, bayesian=True, dtype=np.float64):
    """The paper's CNN sized for the 8 x 8 digits (3 x 3 kernels), variances near 5e-5: the
    small network of the training, resume and model-file tests."""
    return paper_cnn(n_kernels, bayesian=bayesian, input_shape=(1, 8, 8), kernel_size=3,
                     seed=seed, rho_range=(-10, -9), dtype=dtype)
