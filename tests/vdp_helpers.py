"""Test helpers: random structures, random scalar probes of a structure, and an explicit
(dense P x P) view of the factored structures, written independently of the library's path."""

import numpy as np

from tinybnn.gaussian import Diagonal, Factored, FactoredGrad, FlatFactored, Full, Point


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


def probe(y, rng):
    """A random linear functional l(y) of a structure and its gradient dl/dy (a structure).

    Returns (f, dy) where f(y) -> float. For a factored y the functional reads the explicit
    per-channel covariances, and dy is their adjoint written with explicit loops.
    """
    Rm = rng.normal(size=y.mean.shape)
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
    if isinstance(x, Point):
        return [("mean", x.mean, False)]
    if isinstance(x, Diagonal):
        return [("mean", x.mean, False), ("var", x.var, False)]
    if isinstance(x, Full):
        return [("mean", x.mean, False), ("cov", x.cov, True)]
    return [("mean", x.mean, False), ("patches", x.patches, False), ("s", x.s, False)]


def input_grad(dx, field):
    """The gradient in ``dx`` matching ``input_arrays`` field names (s summed over the batch)."""
    if field == "var":
        return dx.var
    if field == "cov":
        return dx.cov
    if field == "s":
        return dx.s.sum(axis=0)
    return getattr(dx, field)
