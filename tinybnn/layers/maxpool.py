r"""Max-pool 2 x 2, stride 2, on the mean (ceil mode: an odd last row or column pools alone).

In each window the argmax of the *mean* (ties: the first maximum in row-major order) selects the
output; the covariance follows by gathering the same rows and columns::

    mean  mu[idx]          covariance  S[idx][:, idx]

This is an approximation of the moments of the max of the window's (correlated) Gaussians: exact
only when one mean dominates the others by several standard deviations of their differences. The
true mean of the max is never below the largest mean, so near ties the rule's mean is low and its
variance usually too high (tutorial 3 measures both against Monte Carlo, in the trained network).

Backward: scatter to the argmax positions, zeros elsewhere (windows do not overlap)::

    g_in[idx_i] = g_i,     G_in[idx_i, idx_j] = G_ij

================  =========================================  ===============================
structure         forward                                    backward
================  =========================================  ===============================
Point             gather mean                                scatter g
Diagonal          gather mean and var                        scatter g and dvar
Factored          gather mean, rows, scale (the covariance    scatter g; ds and dpatches pass
                  rows of F_k: S_k[idx][:, idx] exactly)      through (as in ReLU)
================  =========================================  ===============================

Shapes: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)); idx (B, C, Ho, Wo) flat into H W.
"""

from ..errors import ShapeError
from ..gaussian import Diagonal, Factored, FactoredGrad, Point
from ..kernels.pool import gather, maxpool, scatter
from .base import Layer


class MaxPool2d(Layer):
    """2 x 2 max-pool with stride 2 on Point, Diagonal and Factored maps; no parameters."""

    def __init__(self):
        super().__init__()
        self.rules = self.rules_for(Point, Diagonal, Factored)

    def _pool(self, mean):
        """(argmax idx, pooled mean), found together in one pass."""
        if mean.ndim != 4:
            raise ShapeError(f"MaxPool2d: expected maps of shape (B, C, H, W), "
                             f"found {tuple(mean.shape)}")
        return maxpool(mean)

    def _forward_point(self, x):
        idx, mean = self._pool(x.mean)
        return Point(mean), (idx, x.mean.shape)

    def _backward_point(self, dy, saved):
        idx, shape = saved
        return Point(scatter(dy.mean, idx, shape))

    def _forward_diagonal(self, x):
        idx, mean = self._pool(x.mean)
        y = Diagonal(mean, gather(x.var, idx))
        return y, (idx, x.mean.shape)

    def _backward_diagonal(self, dy, saved):
        idx, shape = saved
        return Diagonal(scatter(dy.mean, idx, shape), scatter(dy.var, idx, shape))

    def _forward_factored(self, x):
        idx, mean = self._pool(x.mean)
        g = gather  # reads rows and scale in place, also broadcast views
        y = Factored(mean, x.patches, g(x.rows, idx), g(x.scale, idx), x.s, x.track_patches)
        return y, (idx, x.mean.shape)

    def _backward_factored(self, dy, saved):
        idx, shape = saved
        return FactoredGrad(scatter(dy.mean, idx, shape), dy.s, dy.patches)
