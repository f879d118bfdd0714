"""The backward loops of the factored covariance path (the forward pass, its notation and the
shared pieces are in :mod:`tinybnn.kernels.factored`): the gradients with respect to the linear
layer's mean rows M3 and the kernel variances s, and, for input gradients, to the patches.

Each kernel has a NumPy twin (suffix ``_numpy``) that ``tests/test_kernels_factored_backward.py``
checks it against; none calls BLAS.
"""

import numba
import numpy as np

from .factored import copy_patches, kept_rows, rows_of, thread_buffers
from .loops import inner_jit, parallel_jit


def factored_project_backward_numpy(patches, rows, scale, At, G, s, c, tau):
    """The factored linear backward, with respect to M3 and to the kernel variances s.

    GAt_bn = G_b At_bn                                    (K, d)
    dM3[n] = 2 s_n sum_b F_bn GAt_bn^T                    (N, L, K)
    ds_bn  = <GAt_bn, At_bn> + c_b tau_bn                 (B, N)

    At (B, N, K, d) and tau (B, N) from the forward, G (B, K, K) symmetric, s (N,), c (B,).
    """
    F = rows_of(patches, rows, scale)
    GAt = G[:, None] @ At  # (B, N, K, d)
    dM3 = 2.0 * s[:, None, None] * np.einsum("bnld,bnkd->nlk", F, GAt, optimize=True)
    ds = np.einsum("bnkd,bnkd->bn", GAt, At) + c[:, None] * tau
    return dM3, ds


def factored_project_backward(patches, rows, scale, At, G, s, c, tau):
    """numba twin of :func:`factored_project_backward_numpy` (via
    :func:`_factored_project_backward`, one partial dM3 per thread)."""
    B = At.shape[0]
    buffers = backward_buffers(_factored_project_backward.chunks(B), patches, At, rows)
    _factored_project_backward(B, patches, rows, scale, At, G, s, c, tau, *buffers)
    partial, ds = buffers[-2:]
    return partial[0], ds


def backward_buffers(chunks, patches, At, rows):
    """X, norm2, kept (:func:`~tinybnn.kernels.factored.thread_buffers`), GA (chunks, K4, dp)
    zeros (K4: K rounded up to a multiple of 4, the k blocks of the dot products), each thread's
    partial dM3 (chunks, N, L, K) zeros, and ds (B, N): what the backward loop writes in."""
    B, N, K, _ = At.shape
    L = rows.shape[2]
    X, norm2, kept = thread_buffers(chunks, patches, L)
    GA = np.zeros((chunks, -(-K // 4) * 4, X.shape[2]), patches.dtype)
    partial = np.zeros((chunks, N, L, K), patches.dtype)
    return X, norm2, kept, GA, partial, np.empty((B, N), patches.dtype)


@parallel_jit
def _factored_project_backward(patches, rows, scale, At, G, s, c, tau, X, norm2, kept, GA,
                               partial, ds):
    """Fill partial (zeros on entry; its first entry ends as dM3) and ds, using the threads'
    buffers (:func:`backward_buffers`).

    The (example, kernel) pairs are cut into ``chunks`` contiguous runs, one per thread, as in
    :func:`_factored_project`; each thread sums its pairs' contributions to dM3 into its own
    (N, L, K) partial; the partials are added last, times 2 s_n (:func:`_sum_scaled`).

    A thread copies an example's patch rows into X (P, dp), zero-padded as in the forward pass,
    when it reaches a new example. For each pair (b, n): GA = G_b At_bn (K, dp, zeros after d)
    and ds_bn (:func:`_G_At`); then for the kept rows l, dM3[n, l, k] += scale
    dot(X[rows[l]], GA[k]) (:func:`_add_row_products`).
    """
    B, N = At.shape[:2]
    chunks = X.shape[0]
    for t in numba.prange(chunks):
        current = np.int64(-1)  # the example in X[t] (np.int64: see _factored_project)
        for q in range(t * B * N // chunks, (t + 1) * B * N // chunks):
            b, n = q // N, q % N
            current = copy_patches(patches, b, X[t], norm2[t], current)
            ds[b, n] = _G_At(G[b], At[b, n], c[b] * tau[b, n], GA[t])  # GA rows >= K stay 0
            n_kept = kept_rows(scale[b, n], kept[t])
            _add_row_products(X[t], rows[b, n], scale[b, n], kept[t], n_kept, GA[t],
                              partial[t, n])
    _sum_scaled(partial, s, partial[0])


@inner_jit
def _G_At(G, At, start, GA):
    """GA[:K, :d] = G At (G (K, K), At (K, d)); returns start + <GA, At>, the pair's ds."""
    K, d = At.shape
    zero = At.dtype.type(0)
    for k in range(K):
        for i in range(GA.shape[1]):
            GA[k, i] = zero
    for k in range(K):
        for j in range(K):
            g = G[k, j]
            for i in range(d):
                GA[k, i] += g * At[j, i]
    acc = start
    for k in range(K):
        for i in range(d):
            acc += GA[k, i] * At[k, i]
    return acc


@inner_jit
def _add_row_products(X, rows, scale, kept, n_kept, GA, out):
    """out[l, k] += scale[l] dot(X[rows[l]], GA[k]) for the kept rows l (out (L, K)).

    Two rows and four k at a time: eight dot products share six loads. An odd last row is
    paired with itself at weight 0, and the last block of k is filled up with zero rows of GA
    (GA has K rounded up to a multiple of 4 rows), whose products are not stored.
    """
    K = out.shape[1]
    dp = X.shape[1]
    zero = X.dtype.type(0)
    for j in range(0, n_kept, 2):
        l0 = kept[j]
        l1 = kept[j + 1] if j + 1 < n_kept else l0
        s0 = scale[l0]
        s1 = scale[l1] if j + 1 < n_kept else zero
        x0, x1 = X[rows[l0]], X[rows[l1]]  # (dp,)
        for k in range(0, K, 4):
            g0, g1, g2, g3 = GA[k], GA[k + 1], GA[k + 2], GA[k + 3]
            a00, a01, a02, a03 = zero, zero, zero, zero
            a10, a11, a12, a13 = zero, zero, zero, zero
            for i in range(dp):
                u, v = x0[i], x1[i]
                a00 += u * g0[i]
                a01 += u * g1[i]
                a02 += u * g2[i]
                a03 += u * g3[i]
                a10 += v * g0[i]
                a11 += v * g1[i]
                a12 += v * g2[i]
                a13 += v * g3[i]
            o0, o1 = out[l0], out[l1]
            o0[k] += s0 * a00
            o1[k] += s1 * a10
            if k + 1 < K:
                o0[k + 1] += s0 * a01
                o1[k + 1] += s1 * a11
            if k + 2 < K:
                o0[k + 2] += s0 * a02
                o1[k + 2] += s1 * a12
            if k + 3 < K:
                o0[k + 3] += s0 * a03
                o1[k + 3] += s1 * a13


@inner_jit
def _sum_scaled(partial, s, dM3):
    """dM3[n] = 2 s_n sum over t of partial[t, n] (dM3 may be partial[0] itself)."""
    chunks, N, L, K = partial.shape
    for n in range(N):
        two_s = 2 * s[n]
        for l in range(L):
            for k in range(K):
                acc = dM3[n, l, k]
                for t in range(1, chunks):
                    acc += partial[t, n, l, k]
                dM3[n, l, k] = two_s * acc


def factored_patch_grad_numpy(patches, rows, scale, M3, GAt, s, c):
    """dl/dpatches (B, P, d) from dF_bn = 2 s_n (M_n G_b At_bn + c_b F_bn) (L, d).

    dpatches[b, rows[b, n, l]] += scale[b, n, l] dF_bn[l]. GAt = G_b At_bn (B, N, K, d), c (B,).
    """
    F = rows_of(patches, rows, scale)
    dF = np.einsum("nlk,bnkd->bnld", M3, GAt, optimize=True) + c[:, None, None, None] * F
    dF *= 2.0 * s[None, :, None, None] * scale[..., None]
    B, P, d = patches.shape
    out = np.zeros((B, P, d), dtype=patches.dtype)
    b = np.broadcast_to(np.arange(B)[:, None, None], rows.shape)
    np.add.at(out, (b.ravel(), rows.ravel()), dF.reshape(-1, d))
    return out


def factored_patch_grad(patches, rows, scale, M3, GAt, s, c):
    """numba twin of :func:`factored_patch_grad_numpy` (via :func:`_factored_patch_grad`)."""
    out = np.zeros(patches.shape, dtype=patches.dtype)
    _factored_patch_grad(patches.shape[0], patches, rows, scale, M3, GAt, s, c, out)
    return out


@parallel_jit
def _factored_patch_grad(patches, rows, scale, M3, GAt, s, c, out):
    """Add dF_bn[l] scale[b, n, l] into out[b, rows[b, n, l]] (B, P, d); parallel over B."""
    B, P, d = patches.shape
    N, L, K = M3.shape
    for b in numba.prange(B):
        for n in range(N):
            two_s = 2 * s[n]
            for l in range(L):
                sc = scale[b, n, l]
                if sc == 0:
                    continue
                row = rows[b, n, l]
                for i in range(d):
                    acc = c[b] * sc * patches[b, row, i]
                    for k in range(K):
                        acc += M3[n, l, k] * GAt[b, n, k, i]
                    out[b, row, i] += two_s * sc * acc
