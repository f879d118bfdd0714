"""Max-pool 2 x 2, stride 2, ceil mode: the argmax and the maximum in one pass, and the gather and
scatter of the rows it picks."""

import numba
import numpy as np

from .loops import parallel_jit


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
    _maxpool(B, m, idx, out)
    return idx, out


@parallel_jit
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
    _gather3(B, a.reshape(B, C, -1), idx.reshape(B, C, -1), out.reshape(B, C, -1))
    return out


@parallel_jit
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
    _scatter3(B, g.reshape(B, C, -1), idx.reshape(B, C, -1), out.reshape(B, C, -1))
    return out


@parallel_jit
def _scatter3(g, idx, out):
    """out[b, c, idx[b, c, l]] += g[b, c, l]; g, idx (B, C, L), out (B, C, HW) zeros."""
    B, C, L = idx.shape
    for b in numba.prange(B):
        for c in range(C):
            for l in range(L):
                out[b, c, idx[b, c, l]] += g[b, c, l]
