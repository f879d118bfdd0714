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
Projected         scale <- scale d: rows and columns of S masked    (g d, dv, de, dU) passed
                  through the factors' constant scale (exact)       through, or as Full
Factored          scale <- scale d: rows of F_k masked, exact       (g d, ds, dpatches)
                  for the representation (S_k = s_k F_k F_k^T)     (factor grads unchanged)
================  ===============================================  =====================

Why the Factored and Projected backward passes the factors' gradients through unchanged
(``ds``, ``dpatches``; ``dv``, ``de``, ``dU``): the masked structure is the same function of its
factors with a different constant ``scale``, so the gradient with respect to them is the same on
both sides of the layer. (A Projected whose gradient comes back as a Full, because the next layer
read its dense ``cov``, takes the Full rule.)

What is stored for the backward pass is the output mean ``relu(mu)``, not the mask: ``d`` is
recovered as ``1[relu(mu) > 0]`` (the same test, since relu(mu) > 0 exactly when mu > 0). On the
large maps of a first convolution (Point and Factored) the forward pass and the backward mask are
single passes over memory (:func:`tinybnn.kernels.relu.relu_scale`,
:func:`tinybnn.kernels.relu.relu_backward`).

The first-order rule is an approximation for the variance: a unit whose mean is negative gets
exactly zero variance. Its error against Monte Carlo is measured in
``tests/test_moments.py`` (``pytest -s`` prints the table) and shown in tutorial 02;
:mod:`tinybnn.layers.relu_exact` is the closed-form alternative.
"""

from ..functions import relu, relu_grad
from ..kernels.relu import relu_backward, relu_scale
from ..gaussian import (Diagonal, Factored, FactoredGrad, FlatFactored, Full, Point,
                        Projected, ProjectedGrad)
from .base import Layer


class ReLU(Layer):
    """First-order ReLU on every structure; no parameters."""

    def __init__(self):
        super().__init__()
        self.rules = self.rules_for(Point, Diagonal, Full, Projected, Factored,
                                    (FlatFactored, "factored"))

    def _forward_point(self, x):
        y = relu(x.mean)
        return Point(y), y

    def _backward_point(self, dy, y):
        return Point(relu_backward(dy.mean, y))  # g d, d = 1[y > 0]

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

    def _forward_projected(self, x):
        y = relu(x.mean)  # (B, K)
        d = relu_grad(x.mean)
        return Projected(y, x.U, x.var, x.extra, x.scale * d), y

    def _backward_projected(self, dy, y):
        d = relu_grad(y)  # 1[relu(mu) > 0] = 1[mu > 0]
        if type(dy) is ProjectedGrad:
            return ProjectedGrad(dy.mean * d, dy.var, dy.extra, dy.U)
        return Full(dy.mean * d, dy.cov * d[:, :, None] * d[:, None, :])  # a layer read cov

    def _forward_factored(self, x):
        B, N = x.rows.shape[:2]
        mean, scale = relu_scale(x.mean.reshape(B, N, -1), x.scale.reshape(B, N, -1))
        mean = mean.reshape(x.mean.shape)  # relu(mu)
        y = type(x)(mean, x.patches, x.rows, scale.reshape(x.scale.shape), x.s, x.track_patches)
        return y, mean

    def _backward_factored(self, dy, y):
        return FactoredGrad(relu_backward(dy.mean, y), dy.s, dy.patches)
