"""The forward loops of the factored covariance path: a first conv (with its max-pool and ReLU)
read by a linear layer (:class:`tinybnn.layers.Linear` on a ``FlatFactored`` input); the
backward loops are in :mod:`tinybnn.kernels.factored_backward`.

Channel n of example b has factor rows F_bn (L, d), F_bn[l] = scale[b,n,l] patches[b,rows[b,n,l]],
and the linear layer reads it through M3[n] (L, K), the rows of its mean matrix that channel n
feeds. At_bn = M3[n]^T F_bn = A_n^T is stored (K, d), so the innermost loops run along d, the
contiguous axis of the patches. The layer's mean path (``mu M``, ``mu^T g``, ``g M^T``) has
its own loops (:mod:`tinybnn.kernels.factored_mean`).

As everywhere in :mod:`tinybnn.kernels`, each kernel has a NumPy twin (suffix ``_numpy``) that
``tests/test_kernels_factored.py`` checks it against, and none calls BLAS. Shapes: B batch, P conv
output positions, d patch length, N channels, L positions per channel after pooling, K units of
the linear layer, D = N L its inputs.
"""

import numba
import numpy as np

from .loops import inner_jit, parallel_jit


def rows_of(patches, rows, scale):
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
    F = rows_of(patches, rows, scale)  # (B, N, L, d)
    At = np.einsum("nlk,bnld->bnkd", M3, F, optimize=True)
    tau = np.einsum("bnld,bnld->bn", F, F)
    S = np.einsum("bnkd,bnjd->bkj", At * s[None, :, None, None], At, optimize=True)
    return At, tau, S


def factored_project(patches, rows, scale, M3, s):
    """numba twin of :func:`factored_project_numpy` (via :func:`_factored_project`)."""
    B, P, d = patches.shape
    N, L, K = M3.shape
    dtype = patches.dtype
    At, tau, S = np.zeros((B, N, K, d), dtype), np.zeros((B, N), dtype), np.zeros((B, K, K), dtype)
    X, norm2, kept = thread_buffers(_factored_project.chunks(B), patches, L)
    partial = np.zeros((len(X), B, K, K), dtype)  # each thread's S
    A = np.empty((len(X), K, X.shape[2]), dtype)  # each thread's At_bn, accumulated
    _factored_project(B, patches, rows, scale, M3, s, X, norm2, kept, A, partial, At, tau, S)
    return At, tau, S


def thread_buffers(chunks, patches, L):
    """What each of ``chunks`` threads works in: X (chunks, P, dp), an example's patch rows
    zero-padded to :func:`padded_length`; norm2 (chunks, P), their squared norms; kept
    (chunks, L), the rows a ReLU kept. Allocated here, not inside the loops: numba compiles
    each ``np.zeros`` or ``np.empty`` it meets, a cost a fresh run waits for
    (benchmarks/README.md, the cold start)."""
    B, P, d = patches.shape
    return (np.zeros((chunks, P, padded_length(d)), patches.dtype),
            np.empty((chunks, P), patches.dtype), np.empty((chunks, L), np.int64))


def padded_length(d):
    """d rounded up to a multiple of 32. The kernels copy an example's patch rows into a buffer
    of this width (zeros after d), so that the innermost loops run a whole number of the
    compiler's vector blocks (8 lanes x 4 interleaved): for d = 25 this makes the forward pass
    30 % faster in float32, measured."""
    return -(-d // 32) * 32


@numba.njit(cache=True, nogil=True)
def copy_patches(patches, b, X, norm2, current):
    """X[p, :d] = patches[b, p] (the rest of X stays 0) and norm2[p] = ||patches[b, p]||^2,
    unless X holds example b already (``current == b``); returns b, the example X now holds."""
    if b == current:
        return b
    P, d = patches.shape[1:]
    zero = patches.dtype.type(0)
    for p in range(P):
        acc = zero
        for i in range(d):
            X[p, i] = patches[b, p, i]
            acc += X[p, i] * X[p, i]
        norm2[p] = acc
    return b


@parallel_jit
def _factored_project(patches, rows, scale, M3, s, X, norm2, kept, A, partial, At, tau, S):
    """Fill At, tau and S (zeros on entry), using the threads' buffers X, norm2, kept and A
    (:func:`thread_buffers`) and partial (chunks, B, K, K), zeros.

    The (example b, kernel n) pairs, b-major, are cut into ``chunks`` contiguous runs, one per
    thread, so that a small batch still shares its work evenly (4 examples: 2 each; at one image
    per update the serial loop runs, because the second thread's spinning slows the first more
    than it helps: docs/COST.md). A thread copies an example's patch rows into X (P, dp),
    zero-padded, with their squared norms, when it reaches a new example. For each pair: list
    the factor rows the ReLU kept (scale != 0), accumulate A = At_bn from them
    (:func:`_accumulate_At`), then add s_n A A^T to the thread's own partial S_b while A is
    still in cache (:func:`_add_outer`). The partials are added last.
    """
    B, P, d = patches.shape
    N, L, K = M3.shape
    chunks = X.shape[0]
    for t in numba.prange(chunks):
        current = np.int64(-1)  # the example whose patches X[t] holds (int64, not the literal
        # -1, which numba would compile copy_patches for once more: 0.3 s of a cold start)
        for q in range(t * B * N // chunks, (t + 1) * B * N // chunks):
            b, n = q // N, q % N
            current = copy_patches(patches, b, X[t], norm2[t], current)
            n_kept = kept_rows(scale[b, n], kept[t])
            tau[b, n] = _accumulate_At(X[t], norm2[t], rows[b, n], scale[b, n], kept[t], n_kept,
                                       M3[n], A[t])
            for k in range(K):
                for i in range(d):
                    At[b, n, k, i] = A[t, k, i]
            _add_outer(A[t], s[n], partial[t, b])
    _sum_symmetric(partial, S)


@inner_jit
def _accumulate_At(X, norm2, rows, scale, kept, n_kept, M3n, A):
    """A = sum over the kept rows l of scale[l] M3n[l] x X[rows[l]] (A (K, dp), overwritten),
    two rows per pass over A (each load and store of A then serves two rows; an odd last row
    is paired with itself at weight 0). Returns tau = sum of scale[l]^2 ||X[rows[l]]||^2."""
    K, dp = A.shape
    zero = X.dtype.type(0)
    for k in range(K):  # plain loops, not slice assignments: they compile much faster
        for i in range(dp):
            A[k, i] = zero
    tr = zero
    for j in range(0, n_kept, 2):
        l0 = kept[j]
        l1 = kept[j + 1] if j + 1 < n_kept else l0
        s0 = scale[l0]
        s1 = scale[l1] if j + 1 < n_kept else zero
        r0, r1 = rows[l0], rows[l1]
        tr += s0 * s0 * norm2[r0] + s1 * s1 * norm2[r1]
        x0, x1 = X[r0], X[r1]  # (dp,)
        for k in range(K):
            w0, w1 = s0 * M3n[l0, k], s1 * M3n[l1, k]
            a = A[k]
            for i in range(dp):
                a[i] += w0 * x0[i] + w1 * x1[i]
    return tr


@inner_jit
def _add_outer(A, s, Sb):
    """Sb += s A A^T, lower triangle only (A (K, dp), Sb (K, K))."""
    K, dp = A.shape
    zero = A.dtype.type(0)
    for k in range(K):
        for j in range(k + 1):
            acc = zero
            for i in range(dp):
                acc += A[k, i] * A[j, i]
            Sb[k, j] += s * acc


@inner_jit
def _sum_symmetric(partial, S):
    """S[b] = the sum over t of partial[t, b]'s lower triangle, copied up (S_b is symmetric)."""
    chunks, B, K, _ = partial.shape
    zero = S.dtype.type(0)
    for b in range(B):
        for k in range(K):
            for j in range(k + 1):
                acc = zero
                for t in range(chunks):
                    acc += partial[t, b, k, j]
                S[b, k, j] = acc
                S[b, j, k] = acc


@numba.njit(cache=True, nogil=True)
def kept_rows(scale, kept):
    """Write the indices l with scale[l] != 0 to the front of ``kept``; return how many.

    Branch-free (the index is always written, the count moves only for kept rows), because
    whether the ReLU kept a row is a coin flip the processor cannot predict.
    """
    n = 0
    for l in range(scale.shape[0]):
        kept[n] = l
        n += scale[l] != 0
    return n
