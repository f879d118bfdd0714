"""im2col and col2im: the patches of a VALID convolution, and their adjoint."""

import numba
import numpy as np

from .loops import parallel_jit


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
    _im2col(B, x, r, out)
    return out


@parallel_jit
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
    _col2im(cols.shape[0], cols, r, out)
    return out


@parallel_jit
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
