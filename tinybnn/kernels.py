"""The inner loops: convolution patches, max-pool gather/scatter, the factored covariance path.

Each kernel is a plain loop compiled by numba (``cache=True``, so a second run does not
recompile) and has a NumPy twin with the suffix ``_numpy`` that computes the same numbers in
vectorised NumPy; ``tests/test_kernels.py`` checks each pair. With ``NUMBA_DISABLE_JIT=1`` the
loops run as plain Python, so you can step through them in a debugger.

Shapes: B batch, C channels, H W image, r kernel size, P = Ho Wo conv output positions,
d = C r r patch length (ordered (c, i, j) like ``M.reshape(N, -1)``), N channels, L positions
per channel after pooling, K units of the next layer.
"""

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


def _rows_of(patches, rows, scale):
    """F (B, N, L, d): F[b, n, l] = scale[b, n, l] * patches[b, rows[b, n, l]]."""
    b = np.arange(patches.shape[0])[:, None, None]
    return patches[b, rows] * scale[..., None]


def factored_project_numpy(patches, rows, scale, M3):
    """A_bn = F_bn^T M_n (B, N, d, K) and tau_bn = ||F_bn||_F^2 (B, N).

    patches (B, P, d), rows and scale (B, N, L), M3 (N, L, K).
    """
    F = _rows_of(patches, rows, scale)  # (B, N, L, d)
    A = np.einsum("bnld,nlk->bndk", F, M3, optimize=True)
    tau = np.einsum("bnld,bnld->bn", F, F)
    return A, tau


def factored_project_backward_numpy(patches, rows, scale, AG, s):
    """dM_n = sum_b 2 s_n F_bn (A_bn G_b) -> (N, L, K); AG (B, N, d, K), s (N,)."""
    F = _rows_of(patches, rows, scale)
    return 2.0 * s[:, None, None] * np.einsum("bnld,bndk->nlk", F, AG, optimize=True)


def factored_patch_grad_numpy(patches, rows, scale, M3, AG, s, c):
    """dl/dpatches (B, P, d) from dF_bn = 2 s_n (M_n (A_bn G_b)^T + c_b F_bn) (L, d).

    dpatches[b, rows[b, n, l]] += scale[b, n, l] dF_bn[l]. c (B,).
    """
    F = _rows_of(patches, rows, scale)
    dF = np.einsum("nlk,bndk->bnld", M3, AG, optimize=True) + c[:, None, None, None] * F
    dF *= 2.0 * s[None, :, None, None] * scale[..., None]
    B, P, d = patches.shape
    out = np.zeros((B, P, d), dtype=patches.dtype)
    b = np.broadcast_to(np.arange(B)[:, None, None], rows.shape)
    np.add.at(out, (b.ravel(), rows.ravel()), dF.reshape(-1, d))
    return out


im2col = im2col_numpy
col2im = col2im_numpy
maxpool_argmax = maxpool_argmax_numpy
gather = gather_numpy
scatter = scatter_numpy
factored_project = factored_project_numpy
factored_project_backward = factored_project_backward_numpy
factored_patch_grad = factored_patch_grad_numpy
