r"""Linear (fully connected) layer with a Gaussian posterior over its weights.

Unit j's incoming weights are ``w_j ~ N(M[:, j], s_j I)`` with ``s_j = softplus(rho_j)``, one
variance per output unit; the bias ``b`` is a point value. For one example with input mean
``mu`` (D,) and covariance ``S`` (D, D), the output ``y = W^T x + b`` has, exactly
(Dera et al. 2019; ../docs/NOTATION.md)::

    m_out = M^T mu + b                                        (K,)
    S_out = M^T S M + diag_j( s_j (tr S + ||mu||^2) )          (K, K)

The second term is E[(w_j - M_j)^T x x^T (w_j - M_j)] = s_j E||x||^2; units are independent, so
it only sits on the diagonal. Five input structures reach a linear layer:

==============  ===========================================================  =========
input           output covariance (per example)                              output
==============  ===========================================================  =========
Point x         diag_j( s_j ||x||^2 )  (exact; the first layer of an MLP)     Diagonal
Diagonal v      M^T diag(v) M + diag_j( s_j (sum v + ||mu||^2) ), kept as     Projected
                its factors: U = M, v, e = s t, a = 1 (nothing K x K formed)
Projected       A^T diag(v) A + M^T diag(a^2 e) M + diag_j( s_j t ),          Full
                A = U diag(a) M  (D0, K)
Full S          M^T S M + diag_j( s_j (tr S + ||mu||^2) )                      Full
FlatFactored    sum_k s_k A_k^T A_k + diag_j( s_j t ),  A_k = F_k^T M_k       Full
==============  ===========================================================  =========

For Projected input (a hidden layer of an MLP, after ReLU), the input covariance is
``diag(a) (U^T diag(v) U + diag(e)) diag(a)`` with ``U`` (D0, D) the previous layer's weights,
``v`` (D0,) its input variances (see :class:`tinybnn.gaussian.Projected`), and
``t = sum_i a_i^2 ((U o U)^T v + e)_i + ||mu||^2``. Cost O(D0 D K) per example instead of the
O(D0 D^2) of forming the D x D input covariance (for 784-400-400-10: 3e6 against 1.3e8).

For FlatFactored input (the flattened first-conv feature map), block k of the input covariance
is ``s_k F_k F_k^T`` (see :class:`tinybnn.gaussian.Factored`), ``M_k = M[k L:(k+1) L]`` (L, K)
the rows that read channel k, and ``t = sum_k s_k ||F_k||_F^2 + ||mu||^2``. Nothing L x L is
formed: cost O(N L d K) per example instead of O(N L^2 K).

Backward. With upstream ``g = dl/dm_out`` (K,), symmetric ``G = dl/dS_out`` (K, K), and
``c = sum_j s_j G_jj``::

    dM    = mu g^T + 2 S M G          (Point: x g^T;  FlatFactored block k: 2 s_k F_k A_k G)
    db    = g
    ds_j  = G_jj (tr S + ||mu||^2)     (Point: g_var,j ||x||^2)
    dmu   = M g + 2 c mu               (Point: M g + 2 (sum_j s_j g_var,j) x)
    dS    = M G M^T + c I              (Diagonal: its diagonal;  FlatFactored: below)

For Projected input the input gradient is with respect to the factors; with ``Q = A G``
(D0, K)::

    dM   = mu g^T + 2 diag(a) U^T diag(v) Q + 2 diag(a^2 e) M G
    dv   = rowsum(Q o A) + c (U o U) a^2                        (D0,)
    de   = a^2 o ( diag(M G M^T) + c )                          (D,)
    dU   = 2 diag(v) Q M^T diag(a) + 2 c diag(v) U diag(a^2)    (D0, D), summed over the batch

and a Diagonal-input layer whose Projected output comes back with such a gradient
(g, dv, de, dU) needs no K x K work either: ``dM = mu g^T + dU``, ``ds_j = sum de_j t``,
``c' = de . s``, ``dmu = M g + 2 c' mu``, ``dv_in = dv + c'``. (When the layer after it read the
dense ``cov`` instead, e.g. a Softmax, the gradient is a Full and the rules above apply.)

For FlatFactored the input gradient is the gradient with respect to the factors::

    ds_k       = <G, A_k^T A_k> + c ||F_k||_F^2          (per example)
    (the code stores At_k = A_k^T (K, d), so the innermost loops run along d)
    dF_k       = 2 s_k ( M_k G A_k^T + c F_k )           (L, d), scattered into dpatches
(the ``c ||F_k||^2`` term comes from the ``c I`` part of dS). A vanilla Linear (no ``rho``) maps
Point to Point with the same mean path.

Shapes: B batch, D inputs, K units; parameters ``M`` (D, K), ``rho`` (K,), ``b`` (K,).
"""

import numpy as np

from ..errors import ShapeError
from ..functions import softplus_grad
from ..gaussian import (Diagonal, FactoredGrad, FlatFactored, Full, Point, Projected,
                        ProjectedGrad, row_outer_products)
from ..kernels import factored as kf, factored_backward as kfb, factored_mean as kfm
from .base import Layer, initial_rho, truncated_normal


def linear_mean(x, M, b):
    """m = x M + b: (B, D) @ (D, K) -> (B, K). Shared by the Bayesian and vanilla paths."""
    return x @ M if b is None else x @ M + b


def add_diagonal(S, diag):
    """S + diag(diag) for a batch: S (B, K, K) in place, diag (B, K)."""
    i = np.arange(S.shape[-1])
    S[:, i, i] += diag
    return S


class Linear(Layer):
    """A fully connected layer, Bayesian (``bayesian=True``) or vanilla.

    Parameters: ``M`` (D, K) weight means, ``rho`` (K,) variance parameters (Bayesian only),
    ``b`` (K,) bias (if ``bias``). Initialisation: means ~ N(0, init_std^2) truncated at two
    standard deviations (default init_std = 1/sqrt(D)); rho ~ U[rho_range]; bias 0.
    """

    def __init__(self, d_in, d_out, *, bayesian=True, bias=True, rng, init_std=None,
                 rho_range=(-12.0, -2.2), dtype=np.float64):
        super().__init__()
        self.d_in, self.d_out, self.has_bias = int(d_in), int(d_out), bool(bias)
        if self.d_in < 1 or self.d_out < 1:
            raise ValueError(f"Linear needs d_in, d_out >= 1, found {d_in}, {d_out}")
        std = 1.0 / np.sqrt(self.d_in) if init_std is None else init_std
        self.params["M"] = truncated_normal(rng, (self.d_in, self.d_out), std, dtype)
        if bayesian:
            self.params["rho"] = initial_rho(rng, (self.d_out,), rho_range, dtype)
        if bias:
            self.params["b"] = np.zeros(self.d_out, dtype=dtype)
        self.zero_grads()
        if bayesian:
            self.rules = self.rules_for(Point, Diagonal, Projected, Full,
                                        (FlatFactored, "factored"))
        else:
            self.rules = self.rules_for((Point, "vanilla"))

    def spec(self):
        return {"type": "Linear", "d_in": self.d_in, "d_out": self.d_out,
                "bayesian": self.bayesian, "bias": self.has_bias}

    # -- shared pieces -------------------------------------------------------------------
    def _check_mean(self, mu):
        if mu.ndim != 2 or mu.shape[1] != self.d_in:
            raise_shape(self, mu)

    def _mean(self, mu):
        self._check_mean(mu)
        return linear_mean(mu, self.params["M"], self.params.get("b"))

    def _mean_grads(self, mu, g, dM=None):
        """Mean-path parameter gradients dM = mu^T g (or the ``dM`` given), db = sum_b g."""
        self.grads["M"] = mu.T @ g if dM is None else dM  # (D, K)
        if self.has_bias:
            self.grads["b"] = g.sum(axis=0)

    def _cov_grads_tail(self, G, t):
        """ds_j = sum_b G_bjj t_b -> drho, and c_b = sum_j s_j G_bjj (returned)."""
        Gdiag = np.diagonal(G, axis1=1, axis2=2)  # (B, K)
        self.grads["rho"] = (Gdiag * t[:, None]).sum(axis=0) * softplus_grad(self.params["rho"])
        return Gdiag @ self.s  # (B,)

    # -- vanilla ---------------------------------------------------------------------------
    def _forward_vanilla(self, x):
        return Point(self._mean(x.mean)), x.mean

    def _backward_vanilla(self, dy, x):
        self._mean_grads(x, dy.mean)
        return Point(dy.mean @ self.params["M"].T) if self.input_grad else None

    # -- Point input: diagonal output ------------------------------------------------------
    def _forward_point(self, x):
        mean = self._mean(x.mean)  # checks the input's shape first
        norm2 = np.einsum("bd,bd->b", x.mean, x.mean)  # (B,)
        var = norm2[:, None] * self.s  # (B, K)
        return Diagonal(mean, var), (x.mean, norm2)

    def _backward_point(self, dy, saved):
        x, norm2 = saved
        self._mean_grads(x, dy.mean)
        dv = (dy.var * norm2[:, None]).sum(axis=0)  # (K,)
        self.grads["rho"] = dv * softplus_grad(self.params["rho"])
        if not self.input_grad:
            return None
        return Point(dy.mean @ self.params["M"].T + 2.0 * (dy.var @ self.s)[:, None] * x)

    # -- Diagonal input: Projected output (a Full kept as factors) ---------------------------------
    def _forward_diagonal(self, x):
        mu, v = x.mean, x.var
        m, M = self._mean(mu), self.params["M"]
        t = v.sum(axis=1) + np.einsum("bd,bd->b", mu, mu)  # (B,)
        # S = M^T diag(v) M + diag(s t), never formed here; U is a copy, so an optimiser step
        # that changes M in place does not change this output
        y = Projected(m, M.copy(), v, t[:, None] * self.s, np.ones_like(m))
        return y, (mu, v, t)

    def _backward_diagonal(self, dy, saved):
        if type(dy) is ProjectedGrad:
            return self._backward_diagonal_factors(dy, saved)
        return self._backward_diagonal_dense(dy, saved)

    def _backward_diagonal_factors(self, dy, saved):
        """The gradient came back with respect to the factors (g, dv, de, dU): O(B D K)."""
        mu, v, t = saved
        M, g = self.params["M"], dy.mean
        self._mean_grads(mu, g)
        self.grads["M"] += dy.U  # U = M
        self.grads["rho"] = (dy.extra * t[:, None]).sum(axis=0) * softplus_grad(self.params["rho"])
        if not self.input_grad:
            return None
        c = dy.extra @ self.s  # dl/dt  (B,)
        return Diagonal(g @ M.T + 2.0 * c[:, None] * mu, dy.var + c[:, None])

    def _backward_diagonal_dense(self, dy, saved):
        """The gradient came back as a Full (g, G): a layer after this one read the dense cov."""
        mu, v, t = saved
        M, g, G = self.params["M"], dy.mean, dy.cov
        (B, K), D = g.shape, self.d_in
        c = self._cov_grads_tail(G, t)
        Gf = G.reshape(B, K * K)
        self._mean_grads(mu, g)
        # dM = 2 sum_b diag(v_b) M G_b = 2 sum_j M[:, j] H[:, j, :], H = sum_b v_b G_b  (D, K, K)
        H = (v.T @ Gf).reshape(D, K, K)
        self.grads["M"] += 2.0 * np.einsum("dj,djk->dk", M, H)
        if not self.input_grad:
            return None
        dmu = g @ M.T + 2.0 * c[:, None] * mu
        dv = Gf @ row_outer_products(M).T + c[:, None]  # diag(M G_b M^T) + c
        return Diagonal(dmu, dv)

    # -- Projected input: full output ----------------------------------------------------------
    def _forward_projected(self, x):
        mu, U, v, e, a = x.mean, x.U, x.var, x.extra, x.scale
        m, M = self._mean(mu), self.params["M"]
        B, (D0, D), K = mu.shape[0], U.shape, self.d_out
        aM = a[:, :, None] * M[None]  # diag(a_b) M  (B, D, K)
        # A_b = U diag(a_b) M for the whole batch as one matrix product (D0, D) @ (D, B K)
        A = (U @ aM.transpose(1, 0, 2).reshape(D, B * K)).reshape(D0, B, K)
        A = np.ascontiguousarray(A.transpose(1, 0, 2))  # (B, D0, K)
        a2 = a * a
        t = (a2 * (v @ (U * U) + e)).sum(axis=1) + np.einsum("bd,bd->b", mu, mu)  # (B,)
        S = (A.transpose(0, 2, 1) * v[:, None, :]) @ A  # A^T diag(v) A  (B, K, K)
        S += (M.T[None] * (a2 * e)[:, None, :]) @ M  # + M^T diag(a^2 e) M
        add_diagonal(S, t[:, None] * self.s)
        return Full(m, S), (x, A, t)

    def _backward_projected(self, dy, saved):
        x, A, t = saved
        mu, U, v, e, a = x.mean, x.U, x.var, x.extra, x.scale
        M, g, G = self.params["M"], dy.mean, dy.cov
        B, (D0, D), K = mu.shape[0], U.shape, self.d_out
        c = self._cov_grads_tail(G, t)
        self._mean_grads(mu, g)
        Q = A @ G  # A_b G_b  (B, D0, K)
        VQ = (v[:, :, None] * Q).transpose(1, 0, 2).reshape(D0, B * K)  # diag(v_b) Q_b side by side
        MG = M[None] @ G  # (B, D, K)
        a2 = a * a
        # dM += 2 diag(a) U^T diag(v) Q + 2 diag(a^2 e) M G, summed over the batch
        UVQ = (U.T @ VQ).reshape(D, B, K)  # U^T diag(v_b) Q_b  (D, B, K)
        self.grads["M"] += 2.0 * (np.einsum("dbk,bd->dk", UVQ, a)
                                  + np.einsum("bd,bdk->dk", a2 * e, MG))
        if not self.input_grad:
            return None
        dmu = g @ M.T + 2.0 * c[:, None] * mu
        dv = np.einsum("bik,bik->bi", Q, A) + c[:, None] * (a2 @ (U * U).T)  # (B, D0)
        de = a2 * (np.einsum("bdk,dk->bd", MG, M) + c[:, None])  # (B, D)
        aMt = (M.T[None] * a[:, None, :]).reshape(B * K, D)  # M^T diag(a_b) stacked  (B K, D)
        dU = 2.0 * (VQ @ aMt) + 2.0 * U * (v.T @ (c[:, None] * a2))  # (D0, D)
        return ProjectedGrad(dmu, dv, de, dU)

    # -- Full input: full output -------------------------------------------------------------
    def _forward_full(self, x):
        mu, S = x.mean, x.cov
        m, M = self._mean(mu), self.params["M"]
        t = np.trace(S, axis1=1, axis2=2) + np.einsum("bd,bd->b", mu, mu)  # (B,)
        SM = S @ M  # (B, D, K)
        S_out = M.T[None] @ SM  # (B, K, K)
        add_diagonal(S_out, t[:, None] * self.s)
        return Full(m, S_out), (mu, SM, t)

    def _backward_full(self, dy, saved):
        mu, SM, t = saved
        M, g, G = self.params["M"], dy.mean, dy.cov
        c = self._cov_grads_tail(G, t)
        self._mean_grads(mu, g)
        self.grads["M"] += 2.0 * np.einsum("bdk,bkl->dl", SM, G)  # 2 sum_b S M G
        if not self.input_grad:
            return None
        dmu = g @ M.T + 2.0 * c[:, None] * mu
        dS = M[None] @ G @ M.T[None]  # (B, D, D)
        add_diagonal(dS, np.broadcast_to(c[:, None], dS.shape[:2]))
        return Full(dmu, dS)

    # -- FlatFactored input (flattened first conv): full output -------------------------------
    def _forward_factored(self, x):
        B, N, L = x.rows.shape
        mu = x.mean
        self._check_mean(mu)
        M = self.params["M"]
        bias = self.params["b"] if self.has_bias else np.zeros(self.d_out, dtype=M.dtype)
        m, mu2 = kfm.factored_mean(mu, M, bias)  # mu M + b, ||mu||^2
        M3 = M.reshape(N, L, self.d_out)  # block k reads channel k  (N, L, K)
        # At_k = A_k^T (B, N, K, d), tau_k = ||F_k||^2 (B, N), S = sum_k s_k A_k^T A_k (B, K, K)
        At, tau, S = kf.factored_project(x.patches, x.rows, x.scale, M3, x.s)
        t = tau @ x.s + mu2  # (B,)
        add_diagonal(S, t[:, None] * self.s)
        return Full(m, S), (x, At, tau, t)

    def _backward_factored(self, dy, saved):
        x, At, tau, t = saved
        B, N, L = x.rows.shape
        M, g, G = self.params["M"], dy.mean, dy.cov
        c = self._cov_grads_tail(G, t)
        # dM_k = 2 s_k F_k A_k G (N, L, K) and ds_k = <G, A_k^T A_k> + c tau_k (B, N)
        dM3, ds_in = kfb.factored_project_backward(x.patches, x.rows, x.scale, At, G, x.s, c, tau)
        # the mean path: dM = mu^T g, dmu = g M^T + 2 c mu, in one pass over mu
        dM, dmu = kfm.factored_mean_backward(x.mean, g, M, c)
        dM += dM3.reshape(N * L, self.d_out)  # in place: dM is this call's own array
        self._mean_grads(x.mean, g, dM)
        dpatches = None
        if x.track_patches:
            GAt = G[:, None] @ At  # G A_k^T = (A_k G)^T  (B, N, K, d)
            M3 = M.reshape(N, L, self.d_out)
            dpatches = kfb.factored_patch_grad(x.patches, x.rows, x.scale, M3, GAt, x.s, c)
        return FactoredGrad(dmu, ds_in, dpatches)


def raise_shape(layer, mean):
    """Raise ShapeError for an input mean that is not (B, d_in)."""
    raise ShapeError(
        f"{type(layer).__name__}: expected input mean of shape (B, {layer.d_in}), "
        f"found {tuple(mean.shape)}"
    )
