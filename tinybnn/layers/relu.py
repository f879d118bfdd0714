r"""ReLU, linearised to first order at the mean.

With ``d = 1[mu > 0]`` the derivative at the mean (0 at exactly 0, so a zero kernel adds
neither mean nor variance downstream), one example::

    mean  relu(mu)                 covariance  S (.) d d^T   (rows and columns of dead units zeroed)

Backward: ``g_in = d (.) g``,  ``G_in = G (.) d d^T``; the mask is a constant.

================  ===============================================  =====================
structure         covariance rule                                  backward
================  ===============================================  =====================
Point             none                                             g d
Diagonal          var d          (d^2 = d)                          (g d, dvar d)
Full              S (.) d d^T                                      (g d, G (.) d d^T)
Factored          scale <- scale d: rows of F_k masked, exact       (g d, ds, dpatches)
                  for the representation (S_k = s_k F_k F_k^T)     (factor grads unchanged)
================  ===============================================  =====================

Why the Factored backward passes ``ds`` and ``dpatches`` through unchanged: the masked
structure is the same function of ``s`` and ``patches`` with a different constant ``scale``, so
the gradient with respect to ``s`` and ``patches`` is the same on both sides of the layer.

The first-order rule is an approximation for the variance (see VDP-MATH "How good is first
order?"): a unit whose mean is negative gets exactly zero variance. ``tinybnn`` measures it in
``tests/test_moments.py``.
"""

import numpy as np

from ..functions import relu, relu_grad
from ..gaussian import Diagonal, Factored, FactoredGrad, FlatFactored, Full, Point
from .base import Layer


class ReLU(Layer):
    """First-order ReLU on every structure; no parameters."""

    def __init__(self):
        super().__init__()
        self.rules = {
            Point: (self._forward_point, self._backward_point),
            Diagonal: (self._forward_diagonal, self._backward_diagonal),
            Full: (self._forward_full, self._backward_full),
            Factored: (self._forward_factored, self._backward_factored),
            FlatFactored: (self._forward_factored, self._backward_factored),
        }

    def spec(self):
        return {"type": "ReLU"}

    def _forward_point(self, x):
        d = relu_grad(x.mean)
        return Point(relu(x.mean)), d

    def _backward_point(self, dy, d):
        return Point(dy.mean * d)

    def _forward_diagonal(self, x):
        d = relu_grad(x.mean)
        return Diagonal(relu(x.mean), x.var * d), d

    def _backward_diagonal(self, dy, d):
        return Diagonal(dy.mean * d, dy.var * d)

    def _forward_full(self, x):
        d = relu_grad(x.mean)  # (B, K)
        return Full(relu(x.mean), x.cov * d[:, :, None] * d[:, None, :]), d

    def _backward_full(self, dy, d):
        return Full(dy.mean * d, dy.cov * d[:, :, None] * d[:, None, :])

    def _forward_factored(self, x):
        d = relu_grad(x.mean)
        y = type(x)(relu(x.mean), x.patches, x.rows, x.scale * d.reshape(x.scale.shape), x.s,
                    x.track_patches)
        return y, d

    def _backward_factored(self, dy, d):
        return FactoredGrad(dy.mean * d, dy.s, dy.patches)
