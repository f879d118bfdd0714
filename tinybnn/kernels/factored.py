"""The inner loops of the factored covariance path: a first conv (with its max-pool and ReLU)
read by a linear layer (:class:`tinybnn.layers.Linear` on a ``FlatFactored`` input).

Channel n of example b has factor rows F_bn (L, d), F_bn[l] = scale[b,n,l] patches[b,rows[b,n,l]],
and the linear layer reads it through M3[n] (L, K), the rows of its mean matrix that channel n
feeds. At_bn = M3[n]^T F_bn = A_n^T is stored (K, d), so the innermost loops run along d, the
contiguous axis of the patches. The layer's mean path (``mu M``, ``mu^T g``, ``g M^T``) has
kernels here too: K = 10 columns make those products too thin for BLAS to run well, and here
they run on both threads and share their passes over ``mu``.

As everywhere in :mod:`tinybnn.kernels`, each kernel has a NumPy twin (suffix ``_numpy``) that
``tests/test_kernels_factored.py`` checks it against, and none calls BLAS. Shapes: B batch, P conv
output positions, d patch length, N channels, L positions per channel after pooling, K units of
the linear layer, D = N L its inputs.
"""

import numba
import numpy as np

from .loops import parallel_jit


def _rows_of(patches, rows, scale):
    """F (B, N, L, d): F[b, n, l] = scale[b, n, l] * patches[b, rows[b, n, l]]."""
    b = np.arange(patches.shape[0])[:, None, None]
    return patches[b, rows] * scale[..., None]


def factored_project_numpy(patches, rows, scale, M3, s):
    """The factored linear forward: At, tau and the covariance sum.

    At_bn  = M3[n]^T F_bn                  (B, N, K, d)
    tau_bn = ||F_bn||_F^2                  (B, N)
    S_b    = sum_n s_n At_bn At_bn^T       (B, K, K)

    patches (B, P, d), rows and scale (B, N, L), M3 (N, L, K), s (N,).
    """
    F = _rows_of(patches, rows, scale)  # (B, N, L, d)
    At = np.einsum("nlk,bnld->bnkd", M3, F, optimize=True)
    tau = np.einsum("bnld,bnld->bn", F, F)
    S = np.einsum("bnkd,bnjd->bkj", At * s[None, :, None, None], At, optimize=True)
    return At, tau, S


def factored_project(patches, rows, scale, M3, s):
    """numba twin of :func:`factored_project_numpy` (via :func:`_factored_project`)."""
    B, P, d = patches.shape
    N, L, K = M3.shape
    At = np.zeros((B, N, K, d), dtype=patches.dtype)
    tau = np.zeros((B, N), dtype=patches.dtype)
    chunks = _factored_project.chunks(B)
    S = _factored_project(B, patches, rows, scale, M3, s, padded_length(d), chunks, At, tau)
    return At, tau, S


def padded_length(d):
    """d rounded up to a multiple of 32. The kernels copy an example's patch rows into a buffer
    of this width (zeros after d), so that the innermost loops run a whole number of the
    compiler's vector blocks (8 lanes x 4 interleaved): for d = 25 this makes the forward pass
    30 % faster in float32, measured."""
    return -(-d // 32) * 32


@numba.njit(cache=True, nogil=True)
def _copy_patches(patches, b, X, norm2):
    """X[p, :d] = patches[b, p] (the rest of X stays 0) and norm2[p] = ||patches[b, p]||^2."""
    P, d = patches.shape[1:]
    zero = patches.dtype.type(0)
    for p in range(P):
        acc = zero
        for i in range(d):
            X[p, i] = patches[b, p, i]
            acc += X[p, i] * X[p, i]
        norm2[p] = acc


@parallel_jit
def _factored_project(patches, rows, scale, M3, s, dp, chunks, At, tau):
    """Fill At and tau (zeros on entry) and return S (B, K, K).

    The (example b, kernel n) pairs, b-major, are cut into ``chunks`` contiguous runs, one per
    thread, so that a small batch still shares its work evenly (4 examples: 2 each; at one image
    per update the serial loop runs, because the second thread's spinning slows the first more
    than it helps: docs/COST.md). A thread copies an example's patch rows into X (P, dp), zero-padded, with their squared
    norms, when it reaches a new example. For each pair: list the factor rows the ReLU kept
    (scale != 0), accumulate the outer products M3[n, l] x F_bn[l] of the kept rows into
    A = At_bn, two rows per pass over A (each load and store of A then serves two rows; an odd
    last row is paired with itself at weight 0), then add s_n A A^T to the thread's own partial
    S_b while A is still in cache. The partials are added last.
    """
    B, P, d = patches.shape
    N, L, K = M3.shape
    zero = patches.dtype.type(0)
    partial = np.zeros((chunks, B, K, K), dtype=patches.dtype)
    for t in numba.prange(chunks):
        X = np.zeros((P, dp), dtype=patches.dtype)  # X_b, zero-padded
        norm2 = np.empty(P, dtype=patches.dtype)  # ||X_b[p]||^2
        kept = np.empty(L, dtype=np.int64)
        A = np.empty((K, dp), dtype=patches.dtype)  # At_bn, accumulated here
        current = -1
        for q in range(t * B * N // chunks, (t + 1) * B * N // chunks):
            b, n = q // N, q % N
            if b != current:
                _copy_patches(patches, b, X, norm2)
                current = b
            n_kept = _kept_rows(scale[b, n], kept)
            for k in range(K):  # plain loops, not slice assignments: they compile much faster
                for i in range(dp):
                    A[k, i] = zero
            tr = zero
            for j in range(0, n_kept, 2):
                l0 = kept[j]
                l1 = kept[j + 1] if j + 1 < n_kept else l0
                s0 = scale[b, n, l0]
                s1 = scale[b, n, l1] if j + 1 < n_kept else zero
                r0, r1 = rows[b, n, l0], rows[b, n, l1]
                tr += s0 * s0 * norm2[r0] + s1 * s1 * norm2[r1]
                x0, x1 = X[r0], X[r1]  # (dp,)
                for k in range(K):
                    w0, w1 = s0 * M3[n, l0, k], s1 * M3[n, l1, k]
                    a = A[k]
                    for i in range(dp):
                        a[i] += w0 * x0[i] + w1 * x1[i]
            tau[b, n] = tr
            for k in range(K):
                for i in range(d):
                    At[b, n, k, i] = A[k, i]
            Sb = partial[t, b]
            for k in range(K):
                for j in range(k + 1):
                    acc = zero
                    for i in range(dp):
                        acc += A[k, i] * A[j, i]
                    Sb[k, j] += s[n] * acc
    S = np.zeros((B, K, K), dtype=patches.dtype)
    for b in range(B):  # the partials' sum, lower triangle, copied up (S_b is symmetric)
        for k in range(K):
            for j in range(k + 1):
                acc = zero
                for t in range(chunks):
                    acc += partial[t, b, k, j]
                S[b, k, j] = acc
                S[b, j, k] = acc
    return S


@numba.njit(cache=True, nogil=True)
def _kept_rows(scale, kept):
    """Write the indices l with scale[l] != 0 to the front of ``kept``; return how many.

    Branch-free (the index is always written, the count moves only for kept rows), because
    whether the ReLU kept a row is a coin flip the processor cannot predict.
    """
    n = 0
    for l in range(scale.shape[0]):
        kept[n] = l
        n += scale[l] != 0
    return n


def factored_project_backward_numpy(patches, rows, scale, At, G, s, c, tau):
    """The factored linear backward, with respect to M3 and to the kernel variances s.

    GAt_bn = G_b At_bn                                    (K, d)
    dM3[n] = 2 s_n sum_b F_bn GAt_bn^T                    (N, L, K)
    ds_bn  = <GAt_bn, At_bn> + c_b tau_bn                 (B, N)

    At (B, N, K, d) and tau (B, N) from the forward, G (B, K, K) symmetric, s (N,), c (B,).
    """
    F = _rows_of(patches, rows, scale)
    GAt = G[:, None] @ At  # (B, N, K, d)
    dM3 = 2.0 * s[:, None, None] * np.einsum("bnld,bnkd->nlk", F, GAt, optimize=True)
    ds = np.einsum("bnkd,bnkd->bn", GAt, At) + c[:, None] * tau
    return dM3, ds


def factored_project_backward(patches, rows, scale, At, G, s, c, tau):
    """numba twin of :func:`factored_project_backward_numpy` (via
    :func:`_factored_project_backward`, one partial dM3 per thread)."""
    B, N = At.shape[:2]
    return _factored_project_backward(B, patches, rows, scale, At, G, s, c, tau,
                                      padded_length(patches.shape[2]),
                                      _factored_project_backward.chunks(B))


@parallel_jit
def _factored_project_backward(patches, rows, scale, At, G, s, c, tau, dp, chunks):
    """The (example, kernel) pairs are cut into ``chunks`` contiguous runs, one per thread, as in
    :func:`_factored_project`; each thread sums its pairs' contributions to dM3 into its own
    (N, L, K) partial; the partials are added last.

    A thread copies an example's patch rows into X (P, dp), zero-padded as in the forward pass,
    when it reaches a new example. For each pair (b, n): GA = G_b At_bn (K, dp, zeros after d)
    and ds_bn; then for the kept rows l, dM3[n, l, k] += scale dot(X[rows[l]], GA[k]), two rows
    and four k at a time (eight dot products share six loads; an odd last row is paired with
    itself at weight 0, the last block of k filled up with zero rows of GA, whose products are
    not stored).
    """
    B, P, d = patches.shape
    _, N, K, _ = At.shape
    L = rows.shape[2]
    K4 = -(-K // 4) * 4  # K rounded up to a multiple of 4: the k blocks of the dot products
    partial = np.zeros((chunks, N, L, K), dtype=patches.dtype)
    ds = np.empty((B, N), dtype=patches.dtype)
    zero = patches.dtype.type(0)
    for t in numba.prange(chunks):
        X = np.zeros((P, dp), dtype=patches.dtype)  # X_b, zero-padded
        norm2 = np.empty(P, dtype=patches.dtype)  # (unused here; filled by the copy)
        GA = np.zeros((K4, dp), dtype=patches.dtype)  # G_b At_bn; rows >= K, i >= d stay 0
        kept = np.empty(L, dtype=np.int64)
        out = partial[t]
        current = -1
        for q in range(t * B * N // chunks, (t + 1) * B * N // chunks):
            b, n = q // N, q % N
            if b != current:
                _copy_patches(patches, b, X, norm2)
                current = b
            for k in range(K):
                for i in range(dp):
                    GA[k, i] = zero
            for k in range(K):
                for j in range(K):
                    g = G[b, k, j]
                    for i in range(d):
                        GA[k, i] += g * At[b, n, j, i]
            acc = c[b] * tau[b, n]
            for k in range(K):
                for i in range(d):
                    acc += GA[k, i] * At[b, n, k, i]
            ds[b, n] = acc
            n_kept = _kept_rows(scale[b, n], kept)
            for j in range(0, n_kept, 2):
                l0 = kept[j]
                l1 = kept[j + 1] if j + 1 < n_kept else l0
                s0 = scale[b, n, l0]
                s1 = scale[b, n, l1] if j + 1 < n_kept else zero
                x0, x1 = X[rows[b, n, l0]], X[rows[b, n, l1]]  # (dp,)
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
                    o0, o1 = out[n, l0], out[n, l1]
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
    dM3 = partial[0]
    for n in range(N):  # the partials' sum, times 2 s_n
        two_s = 2 * s[n]
        for l in range(L):
            for k in range(K):
                acc = dM3[n, l, k]
                for t in range(1, chunks):
                    acc += partial[t, n, l, k]
                dM3[n, l, k] = two_s * acc
    return dM3, ds


def factored_patch_grad_numpy(patches, rows, scale, M3, GAt, s, c):
    """dl/dpatches (B, P, d) from dF_bn = 2 s_n (M_n G_b At_bn + c_b F_bn) (L, d).

    dpatches[b, rows[b, n, l]] += scale[b, n, l] dF_bn[l]. GAt = G_b At_bn (B, N, K, d), c (B,).
    """
    F = _rows_of(patches, rows, scale)
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
