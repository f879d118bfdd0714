"""The inner loops: convolution patches, max-pool gather/scatter, the factored covariance path.

Each kernel is a plain loop compiled by numba (``cache=True``, so a second run does not
recompile) and has a NumPy twin with the suffix ``_numpy`` that computes the same numbers in
vectorised NumPy; ``tests/test_kernels.py`` checks each pair. With ``NUMBA_DISABLE_JIT=1`` the
loops run as plain Python, so you can step through them in a debugger.

Shapes: B batch, C channels, H W image, r kernel size, P = Ho Wo conv output positions,
d = C r r patch length (ordered (c, i, j) like ``M.reshape(N, -1)``), N channels, L positions
per channel after pooling, K units of the next layer.
"""

import numba
import numpy as np

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


def gather_numpy(a, idx):
    """a (B, C, H, W) or (B, C, HW) gathered at flat indices idx (B, C, Ho, Wo)."""
    B, C = idx.shape[:2]
    flat = a.reshape(B, C, -1)
    return np.take_along_axis(flat, idx.reshape(B, C, -1), axis=2).reshape(idx.shape)


def scatter_numpy(g, idx, shape):
    """Adjoint of gather: g (B, C, Ho, Wo) placed at idx in zeros of ``shape`` (B, C, H, W)."""
    B, C = idx.shape[:2]
    out = np.zeros((B, C, shape[2] * shape[3]), dtype=g.dtype)
    np.put_along_axis(out, idx.reshape(B, C, -1), g.reshape(B, C, -1), axis=2)
    return out.reshape(shape)


# ---------------------------------------------------------------------------------------------
# the factored covariance path (flattened first conv -> linear layer)
# ---------------------------------------------------------------------------------------------
# At_bn = M_n^T F_bn is stored transposed, (K, d), so that the innermost loops run along d.


def _rows_of(patches, rows, scale):
    """F (B, N, L, d): F[b, n, l] = scale[b, n, l] * patches[b, rows[b, n, l]]."""
    b = np.arange(patches.shape[0])[:, None, None]
    return patches[b, rows] * scale[..., None]


def factored_project_numpy(patches, rows, scale, M3):
    """At_bn = M_n^T F_bn (B, N, K, d) and tau_bn = ||F_bn||_F^2 (B, N).

    patches (B, P, d), rows and scale (B, N, L), M3 (N, L, K).
    """
    F = _rows_of(patches, rows, scale)  # (B, N, L, d)
    At = np.einsum("nlk,bnld->bnkd", M3, F, optimize=True)
    tau = np.einsum("bnld,bnld->bn", F, F)
    return At, tau


def factored_project_backward_numpy(patches, rows, scale, GAt, s):
    """dM_n = sum_b 2 s_n F_bn (G_b At_bn)^T -> (N, L, K); GAt (B, N, K, d), s (N,)."""
    F = _rows_of(patches, rows, scale)
    return 2.0 * s[:, None, None] * np.einsum("bnld,bnkd->nlk", F, GAt, optimize=True)


def factored_patch_grad_numpy(patches, rows, scale, M3, GAt, s, c):
    """dl/dpatches (B, P, d) from dF_bn = 2 s_n (M_n G_b At_bn + c_b F_bn) (L, d).

    dpatches[b, rows[b, n, l]] += scale[b, n, l] dF_bn[l]. c (B,).
    """
    F = _rows_of(patches, rows, scale)
    dF = np.einsum("nlk,bnkd->bnld", M3, GAt, optimize=True) + c[:, None, None, None] * F
    dF *= 2.0 * s[None, :, None, None] * scale[..., None]
    B, P, d = patches.shape
    out = np.zeros((B, P, d), dtype=patches.dtype)
    b = np.broadcast_to(np.arange(B)[:, None, None], rows.shape)
    np.add.at(out, (b.ravel(), rows.ravel()), dF.reshape(-1, d))
    return out


# ---------------------------------------------------------------------------------------------
# numba versions: the same numbers as the twins above, as loops
# ---------------------------------------------------------------------------------------------

# fastmath only lets LLVM reorder sums and fuse multiply-adds (so reductions vectorise); the
# flags that would let it assume no NaN or Inf stay off, so a divergence still shows as NaN.
_FASTMATH = {"reassoc", "contract"}
_pjit = numba.njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)


@_pjit
def im2col(x, r):
    """numba twin of :func:`im2col_numpy`, parallel over the batch."""
    B, C, H, W = x.shape
    Ho, Wo = H - r + 1, W - r + 1
    out = np.empty((B, Ho * Wo, C * r * r), dtype=x.dtype)
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
    return out


@_pjit
def col2im(cols, shape, r):
    """numba twin of :func:`col2im_numpy`, parallel over the batch."""
    B, C, H, W = shape
    Ho, Wo = H - r + 1, W - r + 1
    out = np.zeros((B, C, H, W), dtype=cols.dtype)
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
    return out


@_pjit
def maxpool_argmax(m):
    """numba twin of :func:`maxpool_argmax_numpy` (first maximum, ceil mode)."""
    B, C, H, W = m.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    out = np.empty((B, C, Ho, Wo), dtype=np.int64)
    for b in numba.prange(B):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    best = 2 * i * W + 2 * j
                    val = m[b, c, 2 * i, 2 * j]
                    for a in range(2):
                        for e in range(2):
                            h, w = 2 * i + a, 2 * j + e
                            if h < H and w < W and m[b, c, h, w] > val:
                                val = m[b, c, h, w]
                                best = h * W + w
                    out[b, c, i, j] = best
    return out


def gather(a, idx):
    """a (B, C, H, W) gathered at flat indices idx (B, C, Ho, Wo) (numba, via _gather3)."""
    B, C = idx.shape[:2]
    out = _gather3(np.ascontiguousarray(a).reshape(B, C, -1), idx.reshape(B, C, -1))
    return out.reshape(idx.shape)


@_pjit
def _gather3(flat, idx):
    B, C, L = idx.shape
    out = np.empty((B, C, L), dtype=flat.dtype)
    for b in numba.prange(B):
        for c in range(C):
            for l in range(L):
                out[b, c, l] = flat[b, c, idx[b, c, l]]
    return out


def scatter(g, idx, shape):
    """Adjoint of gather (numba, via _scatter3)."""
    B, C = idx.shape[:2]
    out = _scatter3(np.ascontiguousarray(g).reshape(B, C, -1), idx.reshape(B, C, -1),
                    shape[2] * shape[3])
    return out.reshape(shape)


@_pjit
def _scatter3(g, idx, n):
    B, C, L = idx.shape
    out = np.zeros((B, C, n), dtype=g.dtype)
    for b in numba.prange(B):
        for c in range(C):
            for l in range(L):
                out[b, c, idx[b, c, l]] += g[b, c, l]
    return out


@_pjit
def factored_project(patches, rows, scale, M3):
    """numba twin of :func:`factored_project_numpy`, parallel over the batch."""
    B, P, d = patches.shape
    N, L, K = M3.shape
    At = np.zeros((B, N, K, d), dtype=patches.dtype)
    tau = np.zeros((B, N), dtype=patches.dtype)
    for b in numba.prange(B):
        for n in range(N):
            t = 0.0
            for l in range(L):
                sc = scale[b, n, l]
                if sc == 0:
                    continue
                row = rows[b, n, l]
                nrm = 0.0
                for i in range(d):
                    nrm += patches[b, row, i] * patches[b, row, i]
                t += sc * sc * nrm
                for k in range(K):
                    w = sc * M3[n, l, k]
                    for i in range(d):
                        At[b, n, k, i] += w * patches[b, row, i]
            tau[b, n] = t
    return At, tau


@_pjit
def factored_project_backward(patches, rows, scale, GAt, s):
    """numba twin of :func:`factored_project_backward_numpy`, parallel over kernels."""
    B, P, d = patches.shape
    _, N, K, _ = GAt.shape
    L = rows.shape[2]
    out = np.zeros((N, L, K), dtype=patches.dtype)
    for n in numba.prange(N):
        two_s = 2.0 * s[n]
        for b in range(B):
            for l in range(L):
                sc = scale[b, n, l]
                if sc == 0:
                    continue
                row = rows[b, n, l]
                for k in range(K):
                    acc = 0.0
                    for i in range(d):
                        acc += patches[b, row, i] * GAt[b, n, k, i]
                    out[n, l, k] += two_s * sc * acc
    return out


@_pjit
def factored_patch_grad(patches, rows, scale, M3, GAt, s, c):
    """numba twin of :func:`factored_patch_grad_numpy`, parallel over the batch."""
    B, P, d = patches.shape
    N, L, K = M3.shape
    out = np.zeros((B, P, d), dtype=patches.dtype)
    for b in numba.prange(B):
        for n in range(N):
            two_s = 2.0 * s[n]
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
    return out
