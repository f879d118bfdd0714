r"""Softmax, linearised to first order at the mean: the last layer of a Bayesian classifier.

With ``p = softmax(mu)`` and its Jacobian ``J = diag(p) - p p^T`` (symmetric), one example::

    mean  p                         covariance  J S J

Backward (``g, G`` the upstream gradients, ``S`` the input covariance)::

    G_in = J G J
    H    = 2 G J S
    g_p  = g + diag(H) - H p - H^T p         (the part of dl/dp through J)
    g_in = J g_p

(``H`` is not dl/dJ, which is ``G J S + S J G``; ``g_p`` is right because it only uses
``diag(H)`` and ``(H + H^T) p``.) The first-order variance collapses as the softmax saturates
(``J -> 0``); ``tests/test_moments.py`` and tutorial 02 measure it against Monte Carlo.

================  ===============================  =========================================
input             output                           note
================  ===============================  =========================================
Point             Point p                          a vanilla net trains on logits instead
Diagonal          Full  J diag(v) J                dvar = diag(J G J)
Full              Full  J S J
================  ===============================  =========================================
"""

import numpy as np

from ..errors import ShapeError
from ..functions import softmax, softmax_jacobian
from ..gaussian import Diagonal, Full, Point
from ..kernels.softmax import softmax_full, softmax_full_backward
from .base import Layer


class Softmax(Layer):
    """First-order softmax over the last axis of (B, K); no parameters."""

    def __init__(self):
        super().__init__()
        self.rules = self.rules_for(Point, Diagonal, Full)

    def _forward_point(self, x):
        p = softmax(_logits(x.mean))
        return Point(p), softmax_jacobian(p)

    def _backward_point(self, dy, J):
        return Point(np.einsum("bkl,bl->bk", J, dy.mean))

    def _forward_full(self, x):
        # p (B, K), J = diag(p) - p p^T, JS = J S, and J S J (B, K, K), in one loop per example
        # (tinybnn.kernels.softmax: at a batch of one NumPy's calls cost more than the products)
        p, J, JS, JSJ = softmax_full(_logits(x.mean), x.cov)
        return Full(p, JSJ), (p, J, JS)

    def _backward_full(self, dy, saved):
        p, J, JS = saved
        # H = 2 G J S, g_p = g + diag(H) - (H + H^T) p, g_in = J g_p, G_in = J G J
        g_in, G_in = softmax_full_backward(p, J, JS, dy.mean, dy.cov)
        return Full(g_in, G_in)

    def _forward_diagonal(self, x):
        p = softmax(_logits(x.mean))
        J = softmax_jacobian(p)
        JS = J * x.var[:, None, :]  # J diag(v)  (B, K, K)
        return Full(p, JS @ J), (p, J, JS)

    def _backward_diagonal(self, dy, saved):
        full = self._backward_full(dy, saved)
        return Diagonal(full.mean, np.diagonal(full.cov, axis1=1, axis2=2).copy())


def _logits(mean):
    """``mean`` if it is (B, K), else a ShapeError naming what was found."""
    if mean.ndim != 2:
        raise ShapeError(f"Softmax: expected input mean of shape (B, K), found {mean.shape}")
    return mean
