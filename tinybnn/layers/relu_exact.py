r"""ReLU with the exact moments of a rectified Gaussian on the diagonal (an alternative to the
first-order rule of :mod:`tinybnn.layers.relu`).

For one unit ``x ~ N(mu, v)``, ``sigma = sqrt(v)``, ``a = mu / sigma``, with the standard normal
density ``phi`` and distribution function ``Phi`` (:mod:`tinybnn.special`), and ``Q = Phi(-a)
= 1 - Phi(a)``, the moments of ``relu(x)`` are, **exactly** (e.g. Frey & Hinton 1999;
Hernandez-Lobato & Adams 2015, probabilistic backpropagation)::

    m   = E[relu x]   = mu Phi(a) + sigma phi(a)
    E[relu(x)^2]      = (mu^2 + v) Phi(a) + mu sigma phi(a)
    var = v h(a),     h(a) = Phi + a^2 Q Phi - a phi (Phi - Q) - phi^2

``h`` is ``(a^2 + 1) Phi + a phi - (a Phi + phi)^2`` rewritten with ``1 - Phi = Q`` so that no
term of size ``a^2`` cancels when ``a`` is large (the plain form loses ``eps a^2`` relative
accuracy and turns negative in float32 for ``a`` of a few hundred). Derivatives::

    dm/dmu   = Phi                      dm/dv   = phi / (2 sigma)
    dvar/dmu = 2 m Q                    dvar/dv = Phi - m phi / sigma
    dPhi/dmu = phi / sigma              dPhi/dv = -a phi / (2 v)

**Off-diagonal terms (Full input): an approximation.** The exact covariance of two rectified
correlated Gaussians needs the bivariate normal distribution function. We use instead, for
``i != j``::

    C_ij = Phi(a_i) Phi(a_j) S_ij            (exact variances C_ii = var_i on the diagonal)

What is exact and what is not: (1) the means and the variances are exact; (2) the
input-output cross-covariance ``Cov(relu x_i, x_j) = Phi(a_i) S_ij`` is exact (Stein's lemma),
and ``C_ij`` above is the covariance of the statistical linearisation ``relu x ~ m + diag(Phi)
(x - mu) + independent noise`` built from it; (3) by Price's theorem
``dCov(relu x_i, relu x_j)/dS_ij = E[1[x_i > 0] 1[x_j > 0]]``, which equals ``Phi_i Phi_j`` at
``S_ij = 0``: the rule is the exact covariance to first order in the correlation, exact for
uncorrelated units, approximate for strongly correlated ones. The output is positive
semi-definite: ``C = D S D + diag(var - Phi^2 v)`` with ``D = diag(Phi)``, and ``var_i >=
Phi_i^2 v_i`` by Cauchy-Schwarz (``Cov(relu x, x)^2 <= Var(relu x) Var(x)``). The first-order
rule is the same formula with ``Phi(a)`` replaced by the step ``1[mu > 0]``, the mean by
``relu(mu)`` and the variance by ``1[mu > 0] v``.

Backward, per example, upstream ``g`` (K,) and symmetric ``G`` (K, K), ``G_d = diag(G)``,
``h_i = sum_{j != i} G_ij S_ij Phi_j`` (the off-diagonal terms reach ``mu`` and ``v`` through
``Phi``; the factor 2 counts ``C_ij`` and ``C_ji``)::

    dmu  = g Phi + G_d 2 m Q + 2 h phi / sigma
    dv   = g phi / (2 sigma) + G_d (Phi - m phi / sigma) - 2 h a phi / (2 v)
    dS   = G (.) Phi Phi^T off the diagonal,  dv on it

The Diagonal rule is the same with ``h = 0`` (no off-diagonal terms).

=============  ====================================  ======================================
input          output                                cost (per example)
=============  ====================================  ======================================
Point          Point relu(mu): exact (no variance)   D
Diagonal       Diagonal (m, var): exact              D erfc/exp evaluations
Full           Full: exact diagonal, Phi Phi^T S     K erfc/exp + K^2 products
               off it (the approximation above)
=============  ====================================  ======================================

**Factored is not accepted** (the paper CNN's first-conv maps; a StructureError names the
structures above). ``Factored`` stores ``S_k = s_k F_k F_k^T`` with a *constant* row scale; the
exact rule would need (a) a diagonal correction ``diag(var - Phi^2 v)`` on top of the factored
part, which no downstream layer (MaxPool, Flatten, Linear) knows how to carry, and (b) gradients
through the scale ``Phi(a)``, which depends on ``mu`` and ``s`` (the factored layers treat the
scale as a constant). Supporting it means a new structure (factored + diagonal) in those layers.
Going through ``Factored.diagonal()`` would work with today's layers but silently drops the
within-channel correlations that the factored path keeps exactly, so we do not do it here.

Zero variance: ``a = mu / sigma`` needs ``sigma > 0``; a variance below :data:`VAR_FLOOR` is
treated as ``VAR_FLOOR`` (a constant there, so its gradient is 0). The moments then equal the
deterministic ReLU to ``sqrt(VAR_FLOOR) = 1e-15``.

Shapes: B batch, D (or K) units; Diagonal mean and var (B, ...) any trailing shape; Full mean
(B, K), cov (B, K, K).
"""

import numpy as np

from ..functions import relu, relu_grad
from ..gaussian import Diagonal, Full, Point
from ..special import norm_cdf, norm_pdf
from .base import Layer

#: Smallest input variance used in ``a = mu / sqrt(v)``; smaller variances are raised to it.
#: 1e-30 keeps sqrt well inside float32's range (its smallest normal number is 1.2e-38).
VAR_FLOOR = 1e-30


def rectified_gaussian(mu, v):
    """Exact mean and variance of relu(x), x ~ N(mu, v), element-wise.

    mu, v : arrays of one shape. Returns (m, var, parts) with ``parts`` the intermediate
    arrays the derivatives need: dict(sigma, a, Phi, Q, phi, live) where ``live`` is
    ``v >= VAR_FLOOR`` (where the variance is not floored).
    """
    live = v >= VAR_FLOOR
    v_eff = np.where(live, v, VAR_FLOOR)
    sigma = np.sqrt(v_eff)
    a = mu / sigma
    Phi, Q, phi = norm_cdf(a), norm_cdf(-a), norm_pdf(a)
    m = mu * Phi + sigma * phi  # E[relu x]
    h = Phi + a * a * Q * Phi - a * phi * (Phi - Q) - phi * phi  # var / v
    return m, v_eff * h, dict(sigma=sigma, a=a, Phi=Phi, Q=Q, phi=phi, live=live, m=m,
                              v=v_eff)


def rectified_gaussian_grads(p):
    """The four partial derivatives of :func:`rectified_gaussian`, plus those of Phi.

    Returns dict(m_mu, m_v, var_mu, var_v, Phi_mu, Phi_v), each the shape of ``mu``; the
    derivatives with respect to ``v`` are 0 where the variance was floored.
    """
    sigma, a, Phi, Q, phi, m = p["sigma"], p["a"], p["Phi"], p["Q"], p["phi"], p["m"]
    live = p["live"].astype(Phi.dtype)
    return dict(m_mu=Phi, m_v=live * phi / (2 * sigma),
                var_mu=2 * m * Q, var_v=live * (Phi - m * phi / sigma),
                Phi_mu=phi / sigma, Phi_v=-live * a * phi / (2 * p["v"]))


class ReLUExact(Layer):
    """ReLU with exact rectified-Gaussian means and variances; no parameters.

    Accepts Point, Diagonal and Full (see the module docstring for what is exact).
    """

    def __init__(self):
        super().__init__()
        self.rules = self.rules_for(Point, Diagonal, Full)

    # -- Point: no variance, the deterministic ReLU ------------------------------------------
    def _forward_point(self, x):
        return Point(relu(x.mean)), relu_grad(x.mean)

    def _backward_point(self, dy, d):
        return Point(dy.mean * d)

    # -- Diagonal: exact ---------------------------------------------------------------------
    def _forward_diagonal(self, x):
        m, var, parts = rectified_gaussian(x.mean, x.var)
        return Diagonal(m, var), parts

    def _backward_diagonal(self, dy, parts):
        d = rectified_gaussian_grads(parts)
        dmu = dy.mean * d["m_mu"] + dy.var * d["var_mu"]
        dv = dy.mean * d["m_v"] + dy.var * d["var_v"]
        return Diagonal(dmu, dv)

    # -- Full: exact diagonal, Phi_i Phi_j S_ij off it ----------------------------------------
    def _forward_full(self, x):
        S = x.cov  # (B, K, K)
        v = np.diagonal(S, axis1=1, axis2=2)  # (B, K)
        m, var, parts = rectified_gaussian(x.mean, v)
        Phi = parts["Phi"]  # (B, K)
        C = S * Phi[:, :, None] * Phi[:, None, :]  # Phi_i Phi_j S_ij  (B, K, K)
        i = np.arange(S.shape[-1])
        C[:, i, i] = var
        return Full(m, C), (parts, S)

    def _backward_full(self, dy, saved):
        parts, S = saved
        d = rectified_gaussian_grads(parts)
        Phi, g, G = parts["Phi"], dy.mean, dy.cov
        Gd = np.diagonal(G, axis1=1, axis2=2)  # (B, K)
        Sd = np.diagonal(S, axis1=1, axis2=2)
        h = np.einsum("bij,bij,bj->bi", G, S, Phi) - Gd * Sd * Phi  # sum_{j != i}  (B, K)
        dmu = g * d["m_mu"] + Gd * d["var_mu"] + 2 * h * d["Phi_mu"]
        dv = g * d["m_v"] + Gd * d["var_v"] + 2 * h * d["Phi_v"]
        dS = G * Phi[:, :, None] * Phi[:, None, :]  # (B, K, K)
        i = np.arange(S.shape[-1])
        dS[:, i, i] = dv
        return Full(dmu, dS)
