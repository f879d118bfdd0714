"""The linear layer's mean path on the flattened pooled maps (``mu M``, ``mu^T g``, ``g M^T``):
K = 10 columns make these products too thin for BLAS to run well; here they run on both threads
and share their passes over ``mu``."""

import numba
import numpy as np

from .loops import parallel_jit


def factored_mean_numpy(mu, M, b):
    """m = mu M + b (B, K) and nn = ||mu_b||^2 (B,), for mu (B, D), M (D, K), b (K,)."""
    return mu @ M + b, np.einsum("bd,bd->b", mu, mu)


def factored_mean(mu, M, b):
    """numba twin of :func:`factored_mean_numpy`, parallel over the batch."""
    m = np.empty((mu.shape[0], M.shape[1]), dtype=mu.dtype)
    nn = np.empty(mu.shape[0], dtype=mu.dtype)
    _factored_mean(mu.shape[0], mu, M, b, m, nn)
    return m, nn


@parallel_jit
def _factored_mean(mu, M, b, m, nn):
    """m[e] = mu[e] M + b and nn[e] = mu[e] . mu[e] in one pass over mu[e] and M, read as they
    are stored (M (D, K) row by row: K = 10 products per input j, no transposed copy)."""
    B, D = mu.shape
    K = M.shape[1]
    for e in numba.prange(B):
        x, out = mu[e], m[e]
        for k in range(K):
            out[k] = b[k]
        sq = mu.dtype.type(0)
        for j in range(D):
            xj = x[j]
            sq += xj * xj
            w = M[j]
            for k in range(K):
                out[k] += xj * w[k]
        nn[e] = sq


def factored_mean_backward_numpy(mu, g, M, c):
    """dM = mu^T g (D, K) and dmu = g M^T + 2 c mu (B, D); g (B, K), c (B,)."""
    return mu.T @ g, g @ M.T + 2.0 * c[:, None] * mu


def factored_mean_backward(mu, g, M, c):
    """numba twin of :func:`factored_mean_backward_numpy`, parallel over blocks of D."""
    dM = np.empty(M.shape, dtype=mu.dtype)
    dmu = np.empty(mu.shape, dtype=mu.dtype)
    _factored_mean_backward(mu.shape[0], mu, g, M, c, dM, dmu)
    return dM, dmu


MEAN_BLOCK = 256  # inputs j per block: the block's rows of M and dM stay in L1


@parallel_jit
def _factored_mean_backward(mu, g, M, c, dM, dmu):
    """One pass over mu for both products, M and dM read and written row by row (K = 10
    numbers per input j, as stored). The inputs are cut into blocks of MEAN_BLOCK; a thread
    takes a block and walks the batch, so the block's rows of M and dM stay in cache and no
    two threads write the same entries."""
    B, D = mu.shape
    K = M.shape[1]
    for blk in numba.prange(-(-D // MEAN_BLOCK)):
        lo, hi = blk * MEAN_BLOCK, min(D, (blk + 1) * MEAN_BLOCK)
        for j in range(lo, hi):
            for k in range(K):
                dM[j, k] = 0
        for e in range(B):
            two_c, ge = 2 * c[e], g[e]
            for j in range(lo, hi):
                xj = mu[e, j]
                w, a = M[j], dM[j]
                acc = two_c * xj
                for k in range(K):
                    acc += ge[k] * w[k]
                    a[k] += xj * ge[k]
                dmu[e, j] = acc
