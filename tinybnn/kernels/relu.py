"""ReLU of a factored map: one pass forward, one pass backward."""

import numba
import numpy as np

from .loops import parallel_jit


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
        _relu_constant_scale(mean.shape[0], mean, scale.reshape(-1)[0], out, out_scale)
    else:
        _relu_scale(mean.shape[0], mean, scale, out, out_scale)
    return out, out_scale


@parallel_jit
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


@parallel_jit
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
    _relu_backward1(g.shape[0], g.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


@parallel_jit
def _relu_backward1(g, y, out):
    """out[i] = g[i] * 1[y[i] > 0] for flat g, y, out (n,); parallel over n."""
    one, zero = g.dtype.type(1), g.dtype.type(0)
    for i in numba.prange(g.shape[0]):
        out[i] = g[i] * (one if y[i] > 0 else zero)
