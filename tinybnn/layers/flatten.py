r"""Flatten maps (B, C, H, W) to vectors (B, C H W), channel-major.

One index order for the mean and the covariance: ``index = k H W + h W + w``, so channel k's
positions are the contiguous block ``[k L, (k+1) L)`` with ``L = H W``, and a following Linear
layer's rows ``M[k L:(k+1) L]`` read channel k. (The authors' public code flattened the mean
in (h, w, k) order but paired the covariance blocks as if (k, h, w): a known defect, not
reproduced here; ``tests/test_model.py`` checks the pairing against an explicit covariance.)

================  =============================================  =================
input             output                                         backward
================  =============================================  =================
Point             Point (B, C L)                                 reshape
Diagonal          Diagonal (B, C L)                              reshape
Factored          FlatFactored: rows, scale (B, N, L), the        reshape the mean
                  covariance block-diagonal over channels
================  =============================================  =================
"""

from ..errors import ShapeError
from ..gaussian import Diagonal, Factored, FactoredGrad, FlatFactored, Point
from .base import Layer


class Flatten(Layer):
    """Channel-major flatten; no parameters."""

    def __init__(self):
        super().__init__()
        self.rules = self.rules_for(Point, Diagonal, Factored)

    @staticmethod
    def _flat(a):
        if a.ndim != 4:
            raise ShapeError(
                f"Flatten: expected maps of shape (B, C, H, W), found {tuple(a.shape)}")
        return a.reshape(a.shape[0], -1)

    def _forward_point(self, x):
        return Point(self._flat(x.mean)), x.mean.shape

    def _backward_point(self, dy, shape):
        return Point(dy.mean.reshape(shape))

    def _forward_diagonal(self, x):
        return Diagonal(self._flat(x.mean), self._flat(x.var)), x.mean.shape

    def _backward_diagonal(self, dy, shape):
        return Diagonal(dy.mean.reshape(shape), dy.var.reshape(shape))

    def _forward_factored(self, x):
        B, N = x.rows.shape[:2]
        y = FlatFactored(self._flat(x.mean), x.patches, x.rows.reshape(B, N, -1),
                         x.scale.reshape(B, N, -1), x.s, x.track_patches)
        return y, x.mean.shape

    def _backward_factored(self, dy, shape):
        return FactoredGrad(dy.mean.reshape(shape), dy.s, dy.patches)
