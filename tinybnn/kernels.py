"""The inner loops: convolution patches, ReLU and max-pool passes, the factored covariance path.

Each kernel is a plain loop compiled by numba (``cache=True``, so a second run does not
recompile) and has a NumPy twin with the suffix ``_numpy`` that computes the same numbers in
vectorised NumPy; ``tests/test_core_kernels.py`` checks each pair in float64 and float32. With
``NUMBA_DISABLE_JIT=1`` the loops run as plain Python, so you can step through them in a debugger.

How they are made fast (docs/COST.md has the measurements):

- one pass over memory where NumPy would make several (ReLU returns the rectified mean and the
  masked row scale together; max-pool finds the argmax and gathers the maximum together);
- the innermost loop runs along the contiguous axis (the patch axis ``d`` in the factored path);
- ``numba.prange`` over the batch, the only axis long enough to share between threads; a kernel
  whose output is summed over the batch gives each thread its own partial sum (no races), added
  up at the end;
- large dense products are left to BLAS (``@`` in the layers), never called inside these loops;
  and since both thread pools spin for a while after their work ends, a network that uses these
  loops runs its BLAS on one thread (:mod:`tinybnn.threads`), so the two pools do not fight over
  the 2 cores.

Shapes: B batch, C channels, H W image, r kernel size, P = Ho Wo conv output positions,
d = C r r patch length (ordered (c, i, j) like ``M.reshape(N, -1)``), N channels, L positions
per channel after pooling, K units of the next layer.
"""

import numba
import numpy as np

# fastmath only lets LLVM reorder sums and fuse multiply-adds (so reductions vectorise); the
# flags that would let it assume no NaN or Inf stay off, so a divergence still shows as NaN.
_FASTMATH = {"reassoc", "contract"}
_pjit = numba.njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)


def n_chunks():
    """How many per-thread partial sums a batch-reducing kernel keeps: numba's thread count."""
    return numba.get_num_threads()


# ---------------------------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------------------------


def im2col_numpy(x, r):
    """Patches of x (B, C, H, W) for an r x r VALID convolution -> (B, P, d).

    Row p = h Wo + w holds x[:, :, h:h+r, w:w+r] flattened in (c, i, j) order.
    """
    B, C, H, W = x.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (r, r), axis=(2, 3))  # (B,C,Ho,Wo,r,r)
    Ho, Wo = H - r + 1, W - r + 1
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(B, Ho * Wo, C * r * r)


def col2im_numpy(cols, shape, r):
    """Adjoint of im2col: scatter-add patch gradients (B, P, d) back to an image of ``shape``."""
    B, C, H, W = shape
    Ho, Wo = H - r + 1, W - r + 1
    c6 = cols.reshape(B, Ho, Wo, C, r, r)
    out = np.zeros(shape, dtype=cols.dtype)
    for i in range(r):
        for j in range(r):
            out[:, :, i:i + Ho, j:j + Wo] += c6[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return out


def im2col(x, r):
    """numba twin of :func:`im2col_numpy` (via :func:`_im2col`)."""
    B, C, H, W = x.shape
    out = np.empty((B, (H - r + 1) * (W - r + 1), C * r * r), dtype=x.dtype)
    _im2col(x, r, out)
    return out


@_pjit
def _im2col(x, r, out):
    """Fill out (B, P, d) with the patches of x (B, C, H, W); parallel over the batch."""
    B, C, H, W = x.shape
    Ho, Wo = H - r + 1, W - r + 1
    for b in numba.prange(B):
        for h in range(Ho):
            for w in range(Wo):
                p = h * Wo + w
                q = 0
                for c in range(C):
                    for i in range(r):
                        for j in range(r):
                            out[b, p, q] = x[b, c, h + i, w + j]
                            q += 1


def col2im(cols, shape, r):
    """numba twin of :func:`col2im_numpy` (via :func:`_col2im`)."""
    out = np.zeros(shape, dtype=cols.dtype)
    _col2im(cols, r, out)
    return out


@_pjit
def _col2im(cols, r, out):
    """Add the patch gradients cols (B, P, d) into the image out (B, C, H, W); parallel over B."""
    B, C, H, W = out.shape
    Ho, Wo = H - r + 1, W - r + 1
    for b in numba.prange(B):
        for h in range(Ho):
            for w in range(Wo):
                p = h * Wo + w
                q = 0
                for c in range(C):
                    for i in range(r):
                        for j in range(r):
                            out[b, c, h + i, w + j] += cols[b, p, q]
                            q += 1


# ---------------------------------------------------------------------------------------------
# ReLU: one pass forward, one pass backward
# ---------------------------------------------------------------------------------------------


def relu_scale_numpy(mean, scale):
    """ReLU of a factored map: ``(max(mean, 0), scale * 1[mean > 0])``.

    mean, scale : (B, C, n), any memory layout (``scale`` may be a broadcast view of ones).
    """
    d = (mean > 0).astype(mean.dtype)
    return np.maximum(mean, 0), scale * d


def relu_scale(mean, scale):
    """numba twin of :func:`relu_scale_numpy`: both outputs in one pass.

    A scale that is a single number broadcast (all strides 0, like the unit scale a first
    convolution creates) is read once (:func:`_relu_constant_scale`); any other goes through
    :func:`_relu_scale`. The outputs are allocated by NumPy (which asks the kernel for huge pages
    for large arrays) and filled by the loops.
    """
    out = np.empty(mean.shape, dtype=mean.dtype)
    out_scale = np.empty(mean.shape, dtype=mean.dtype)
    if not any(scale.strides):
        _relu_constant_scale(mean, scale.reshape(-1)[0], out, out_scale)
    else:
        _relu_scale(mean, scale, out, out_scale)
    return out, out_scale


@_pjit
def _relu_scale(mean, scale, out, out_scale):
    """out = max(mean, 0), out_scale = scale 1[mean > 0]; all (B, C, n); parallel over B."""
    B, C, n = mean.shape
    one, zero = mean.dtype.type(1), mean.dtype.type(0)
    for b in numba.prange(B):
        for c in range(C):
            for i in range(n):
                m = mean[b, c, i]
                out[b, c, i] = m if (m > 0 or m != m) else zero  # a NaN stays NaN (np.maximum)
                out_scale[b, c, i] = scale[b, c, i] * (one if m > 0 else zero)


@_pjit
def _relu_constant_scale(mean, value, out, out_scale):
    """As :func:`_relu_scale` for a scale that is ``value`` everywhere."""
    B, C, n = mean.shape
    one, zero = mean.dtype.type(1), mean.dtype.type(0)
    for b in numba.prange(B):
        for c in range(C):
            for i in range(n):
                m = mean[b, c, i]
                out[b, c, i] = m if (m > 0 or m != m) else zero
                out_scale[b, c, i] = value * (one if m > 0 else zero)


def relu_backward_numpy(g, y):
    """The ReLU backward ``g * 1[y > 0]`` from the *output* y = max(mu, 0) (y > 0 iff mu > 0).

    g, y : the same shape.
    """
    return g * (y > 0).astype(g.dtype)


def relu_backward(g, y):
    """numba twin of :func:`relu_backward_numpy` (via :func:`_relu_backward1`, flat arrays)."""
    g, y = np.ascontiguousarray(g), np.ascontiguousarray(y)
    out = np.empty(g.shape, dtype=g.dtype)
    _relu_backward1(g.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


@_pjit
def _relu_backward1(g, y, out):
    """out[i] = g[i] * 1[y[i] > 0] for flat g, y, out (n,); parallel over n."""
    one, zero = g.dtype.type(1), g.dtype.type(0)
    for i in numba.prange(g.shape[0]):
        out[i] = g[i] * (one if y[i] > 0 else zero)


# ---------------------------------------------------------------------------------------------
# max-pool 2 x 2, stride 2, ceil mode
# ---------------------------------------------------------------------------------------------


def maxpool_argmax_numpy(m):
    """Index of the maximum of each 2 x 2 window of m (B, C, H, W), flat into H W.

    Windows are row-major; ceil mode (a last odd row or column forms a smaller window); ties
    take the first maximum in row-major order within the window. Returns (B, C, Ho, Wo) int64.
    """
    B, C, H, W = m.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    padded = np.full((B, C, 2 * Ho, 2 * Wo), -np.inf, dtype=m.dtype)
    padded[:, :, :H, :W] = m
    win = padded.reshape(B, C, Ho, 2, Wo, 2).transpose(0, 1, 2, 4, 3, 5).reshape(B, C, Ho, Wo, 4)
    a = win.argmax(axis=-1)  # first maximum
    h = 2 * np.arange(Ho)[:, None] + a // 2
    w = 2 * np.arange(Wo)[None, :] + a % 2
    return h * W + w


def maxpool_numpy(m):
    """Max-pool of m (B, C, H, W) -> (argmax idx (B, C, Ho, Wo) int64, maxima (B, C, Ho, Wo))."""
    idx = maxpool_argmax_numpy(m)
    return idx, gather_numpy(m, idx)


def maxpool(m):
    """numba twin of :func:`maxpool_numpy` (via :func:`_maxpool`)."""
    B, C, H, W = m.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    idx = np.empty((B, C, Ho, Wo), dtype=np.int64)
    out = np.empty((B, C, Ho, Wo), dtype=m.dtype)
    _maxpool(m, idx, out)
    return idx, out


@_pjit
def _maxpool(m, idx, out):
    """Argmax (first maximum, ceil mode) and maximum of each 2 x 2 window in one pass, into
    idx and out (B, C, Ho, Wo); parallel over the batch.

    A window cut by an odd edge repeats its first row or column (h1 = h0 or w1 = w0); a repeated
    value never wins under the strict ``>``, so this equals pooling the smaller window, and the
    loop has no bounds tests.
    """
    B, C, H, W = m.shape
    _, _, Ho, Wo = idx.shape
    for b in numba.prange(B):
        for c in range(C):
            for i in range(Ho):
                h0 = 2 * i
                h1 = min(h0 + 1, H - 1)
                for j in range(Wo):
                    w0 = 2 * j
                    w1 = min(w0 + 1, W - 1)
                    best, val = h0 * W + w0, m[b, c, h0, w0]
                    v = m[b, c, h0, w1]
                    if v > val:
                        best, val = h0 * W + w1, v
                    v = m[b, c, h1, w0]
                    if v > val:
                        best, val = h1 * W + w0, v
                    v = m[b, c, h1, w1]
                    if v > val:
                        best, val = h1 * W + w1, v
                    idx[b, c, i, j] = best
                    out[b, c, i, j] = val


def gather_numpy(a, idx):
    """a (B, C, H, W) or (B, C, HW) gathered at flat indices idx (B, C, Ho, Wo)."""
    B, C = idx.shape[:2]
    flat = a.reshape(B, C, -1)
    return np.take_along_axis(flat, idx.reshape(B, C, -1), axis=2).reshape(idx.shape)


def gather(a, idx):
    """numba twin of :func:`gather_numpy` (via :func:`_gather3`); ``a`` may be any view, e.g. a
    broadcast array of row numbers, and is read in place."""
    B, C = idx.shape[:2]
    out = np.empty(idx.shape, dtype=a.dtype)
    _gather3(a.reshape(B, C, -1), idx.reshape(B, C, -1), out.reshape(B, C, -1))
    return out


@_pjit
def _gather3(flat, idx, out):
    """out[b, c, l] = flat[b, c, idx[b, c, l]]; flat (B, C, HW), idx and out (B, C, L)."""
    B, C, L = idx.shape
    for b in numba.prange(B):
        for c in range(C):
            for l in range(L):
                out[b, c, l] = flat[b, c, idx[b, c, l]]


def scatter_numpy(g, idx, shape):
    """Adjoint of gather: g (B, C, Ho, Wo) placed at idx in zeros of ``shape`` (B, C, H, W)."""
    B, C = idx.shape[:2]
    out = np.zeros((B, C, shape[2] * shape[3]), dtype=g.dtype)
    np.put_along_axis(out, idx.reshape(B, C, -1), g.reshape(B, C, -1), axis=2)
    return out.reshape(shape)


def scatter(g, idx, shape):
    """numba twin of :func:`scatter_numpy` (via :func:`_scatter3`)."""
    B, C = idx.shape[:2]
    out = np.zeros(shape, dtype=g.dtype)
    _scatter3(g.reshape(B, C, -1), idx.reshape(B, C, -1), out.reshape(B, C, -1))
    return out


@_pjit
def _scatter3(g, idx, out):
    """out[b, c, idx[b, c, l]] += g[b, c, l]; g, idx (B, C, L), out (B, C, HW) zeros."""
    B, C, L = idx.shape
    for b in numba.prange(B):
        for c in range(C):
            for l in range(L):
                out[b, c, idx[b, c, l]] += g[b, c, l]


# ---------------------------------------------------------------------------------------------
# the factored covariance path (flattened first conv -> linear layer)
# ---------------------------------------------------------------------------------------------
# Channel n of example b has factor rows F_bn (L, d), F_bn[l] = scale[b,n,l] patches[b,rows[b,n,l]],
# and the linear layer reads it through M3[n] (L, K). At_bn = M3[n]^T F_bn = A_n^T is stored
# (K, d), so the innermost loops run along d, the contiguous axis of the patches.


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
    S = np.zeros((B, K, K), dtype=patches.dtype)
    _factored_project(patches, rows, scale, M3, s, padded_length(d), At, tau, S)
    return At, tau, S


def padded_length(d):
    """d rounded up to a multiple of 32. The kernels copy an example's patch rows into a buffer
    of this width (zeros after d), so that the innermost loops run a whole number of the
    compiler's vector blocks (8 lanes x 4 interleaved): for d = 25 this makes the forward pass
    30 % faster in float32, measured."""
    return -(-d // 32) * 32


@_pjit
def _factored_project(patches, rows, scale, M3, s, dp, At, tau, S):
    """Fill At, tau, S (zeros on entry); parallel over the batch.

    For each example b: copy its patch rows into X (P, dp), zero-padded, with their squared
    norms. For each kernel n: list the factor rows the ReLU kept (scale != 0), accumulate the
    outer products M3[n, l] x F_bn[l] of the kept rows into A = At_bn, two rows per pass over A
    (each load and store of A then serves two rows; an odd last row is paired with itself at
    weight 0), then add s_n A A^T to S_b while A is still in cache.
    """
    B, P, d = patches.shape
    N, L, K = M3.shape
    zero = patches.dtype.type(0)
    for b in numba.prange(B):
        X = np.zeros((P, dp), dtype=patches.dtype)  # X_b, zero-padded
        norm2 = np.empty(P, dtype=patches.dtype)  # ||X_b[p]||^2
        for p in range(P):
            acc = zero
            for i in range(d):
                X[p, i] = patches[b, p, i]
                acc += X[p, i] * X[p, i]
            norm2[p] = acc
        kept = np.empty(L, dtype=np.int64)
        A = np.empty((K, dp), dtype=patches.dtype)  # At_bn, accumulated here
        for n in range(N):
            n_kept = _kept_rows(scale[b, n], kept)
            A[:] = zero
            t = zero
            for j in range(0, n_kept, 2):
                l0 = kept[j]
                l1 = kept[j + 1] if j + 1 < n_kept else l0
                s0 = scale[b, n, l0]
                s1 = scale[b, n, l1] if j + 1 < n_kept else zero
                r0, r1 = rows[b, n, l0], rows[b, n, l1]
                t += s0 * s0 * norm2[r0] + s1 * s1 * norm2[r1]
                x0, x1 = X[r0], X[r1]  # (dp,)
                for k in range(K):
                    w0, w1 = s0 * M3[n, l0, k], s1 * M3[n, l1, k]
                    a = A[k]
                    for i in range(dp):
                        a[i] += w0 * x0[i] + w1 * x1[i]
            tau[b, n] = t
            At[b, n] = A[:, :d]
            for k in range(K):
                for j in range(k + 1):
                    acc = zero
                    for i in range(dp):
                        acc += A[k, i] * A[j, i]
                    S[b, k, j] += s[n] * acc
        for k in range(K):  # S_b is symmetric: copy the lower triangle up
            for j in range(k):
                S[b, j, k] = S[b, k, j]


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
    return _factored_project_backward(patches, rows, scale, At, G, s, c, tau, n_chunks())


@_pjit
def _factored_project_backward(patches, rows, scale, At, G, s, c, tau, chunks):
    """The batch is cut into ``chunks`` contiguous pieces, one per thread; each thread sums its
    examples' contributions to dM3 into its own (N, L, K) partial; the partials are added last.

    For each (b, n): GA = G_b At_bn (K, d) and ds_bn; then for the kept rows l,
    dM3[n, l, k] += scale dot(F_bn[l], GA[k]), two rows and two k at a time (four dot products
    share their loads; an odd last row is paired with itself at weight 0, an odd last k with a
    zero row GA[K]).
    """
    B, P, d = patches.shape
    _, N, K, _ = At.shape
    L = rows.shape[2]
    partial = np.zeros((chunks, N, L, K + 1), dtype=patches.dtype)
    ds = np.empty((B, N), dtype=patches.dtype)
    zero = patches.dtype.type(0)
    for t in numba.prange(chunks):
        GA = np.zeros((K + 1, d), dtype=patches.dtype)  # G_b At_bn; row K stays 0
        kept = np.empty(L, dtype=np.int64)
        out = partial[t]
        for b in range(t * B // chunks, (t + 1) * B // chunks):
            for n in range(N):
                GA[:K] = zero
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
                    x0, x1 = patches[b, rows[b, n, l0]], patches[b, rows[b, n, l1]]  # (d,)
                    for k in range(0, K, 2):
                        a00, a01, a10, a11 = zero, zero, zero, zero
                        for i in range(d):
                            g0, g1 = GA[k, i], GA[k + 1, i]
                            a00 += x0[i] * g0
                            a01 += x0[i] * g1
                            a10 += x1[i] * g0
                            a11 += x1[i] * g1
                        out[n, l0, k] += s0 * a00
                        out[n, l0, k + 1] += s0 * a01
                        out[n, l1, k] += s1 * a10
                        out[n, l1, k + 1] += s1 * a11
    dM3 = np.zeros((N, L, K), dtype=patches.dtype)
    for t in range(chunks):
        dM3 += partial[t, :, :, :K]  # column K took the odd k's zero products
    for n in range(N):
        dM3[n] *= 2 * s[n]
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
    _factored_patch_grad(patches, rows, scale, M3, GAt, s, c, out)
    return out


@_pjit
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
