r"""2-D convolution with a Gaussian posterior over each kernel.

Kernel k has mean ``M[k]`` (C, r, r) and one variance ``s_k = softplus(rho_k)`` for all its
weights: ``vec(W_k) ~ N(vec(M_k), s_k I)``; no bias. Stride 1; padding "valid" (the paper) or
"same" (odd r). With ``X`` the im2col patches of one example (P, d), ``P = Ho Wo`` output
positions, ``d = C r r``, and ``m_k = M[k].ravel()`` (d,):

Point input (the first layer), exact::

    mean of map k      X m_k                          (P,)
    covariance, map k  s_k X X^T                      (P, P), never formed
    across maps        0  (kernels are independent)

The output is a :class:`~tinybnn.gaussian.Factored` structure holding ``X`` and ``s``: O(P d)
numbers instead of O(N P^2). Backward (``g_k`` = dl/d mean of map k, ``G_k`` its covariance
gradient, seen only through the factors' gradients ``ds_k`` and ``dX``)::

    dm_k = X^T g_k;   drho_k = ds_k sigmoid(rho_k);   dx = col2im( sum_k g_k m_k^T + dX )

Diagonal input (a conv after another conv) — **an approximation** (the authors' choice): the
input covariance is taken as diagonal, ``v`` = im2col of the input variances, ``Pm`` = im2col of
the input means, and only the diagonal of the output covariance is kept::

    mean   Pm m_k
    var    v (m_k^2 + s_k) + s_k ||Pm_p||^2           (P,) per map

(the exact output would also have off-diagonal terms from ``s_k Pm Pm^T`` and ``m_k`` mixing
neighbouring positions: for an independent input the kept diagonal is exact, and
``tests/test_moments.py`` measures the dropped off-diagonal part against Monte Carlo).
Backward, ``D_k`` = dl/dvar of map k::

    dm_k   = Pm^T g_k + 2 m_k (.) (v^T D_k)
    ds_k   = D_k . (v 1 + ||Pm_p||^2)
    dmu_in = col2im( g M + 2 (D s) (.) Pm )
    dv_in  = col2im( D (M^2 + s) )

A Factored input (conv -> relu -> pool -> conv) enters through its diagonal
(:meth:`Factored.diagonal`), then follows the Diagonal rule.

Parameters: ``M`` (N, C, r, r), ``rho`` (N,). Shapes: B batch, C input channels, N kernels.
"""

import numpy as np

from ..errors import ShapeError
from ..functions import softplus_grad
from ..gaussian import Diagonal, Factored, Point
from ..kernels.conv import col2im, im2col
from .base import Layer, initial_rho, truncated_normal


class Conv2d(Layer):
    """A convolution layer with ``n_kernels`` kernels of size ``kernel_size``.

    Initialisation: means ~ N(0, init_std^2) truncated at two standard deviations (the
    authors' 0.1 by default), rho ~ U[rho_range].
    """

    def __init__(self, c_in, n_kernels, kernel_size, *, padding="valid", bayesian=True, rng,
                 init_std=0.1, rho_range=(-12.0, -2.2), dtype=np.float64):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', found {padding!r}")
        if padding == "same" and kernel_size % 2 == 0:
            raise ValueError(f"'same' padding needs an odd kernel size, found {kernel_size}")
        if min(c_in, n_kernels, kernel_size) < 1:
            raise ValueError(f"Conv2d needs c_in, n_kernels, kernel_size >= 1, "
                             f"found {c_in}, {n_kernels}, {kernel_size}")
        self.c_in, self.n_kernels, self.r, self.padding = c_in, n_kernels, kernel_size, padding
        r = kernel_size
        self.params["M"] = truncated_normal(rng, (n_kernels, c_in, r, r), init_std, dtype)
        if bayesian:
            self.params["rho"] = initial_rho(rng, (n_kernels,), rho_range, dtype)
        self.zero_grads()
        if bayesian:
            self.rules = self.rules_for(Point, Diagonal, Factored)
        else:
            self.rules = self.rules_for((Point, "vanilla"))

    def spec(self):
        return {"type": "Conv2d", "c_in": self.c_in, "n_kernels": self.n_kernels,
                "kernel_size": self.r, "padding": self.padding, "bayesian": self.bayesian}

    # -- shared mean path ---------------------------------------------------------------------
    def _patches(self, a):
        """im2col of a (B, C, H, W), padded for 'same' -> (B, P, d); also (Ho, Wo)."""
        if a.ndim != 4 or a.shape[1] != self.c_in:
            raise ShapeError(f"Conv2d: expected input of shape (B, {self.c_in}, H, W), "
                             f"found {tuple(a.shape)}")
        p = (self.r - 1) // 2 if self.padding == "same" else 0
        if p:
            a = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p)))
        H, W = a.shape[2:]
        if H < self.r or W < self.r:
            raise ShapeError(f"Conv2d: input {H}x{W} (after padding) is smaller than the "
                             f"{self.r}x{self.r} kernel")
        return im2col(a, self.r), (H - self.r + 1, W - self.r + 1)

    def _unpatch(self, cols, in_shape):
        """Adjoint of _patches: (B, P, d) -> (B, C, H, W), cropping the padding."""
        p = (self.r - 1) // 2 if self.padding == "same" else 0
        B, C, H, W = in_shape
        img = col2im(cols, (B, C, H + 2 * p, W + 2 * p), self.r)
        return img[:, :, p:p + H, p:p + W] if p else img

    def _maps(self, cols, hw):
        """(B, P, N) -> (B, N, Ho, Wo)."""
        B = cols.shape[0]
        return np.ascontiguousarray(cols.transpose(0, 2, 1)).reshape(B, self.n_kernels, *hw)

    def _flat(self, maps):
        """(B, N, Ho, Wo) -> (B, P, N)."""
        B = maps.shape[0]
        return maps.reshape(B, self.n_kernels, -1).transpose(0, 2, 1)

    def _weights(self):
        return self.params["M"].reshape(self.n_kernels, -1)  # (N, d)

    # -- Point input: the mean path, by BLAS ------------------------------------------------------
    def _point_mean(self, X, hw):
        """Maps m_k = X m_k for every kernel: (N, d) @ (B, d, P) -> (B, N, Ho, Wo), straight into
        the maps' layout (a batched matrix product, no transpose copy)."""
        return (self._weights() @ X.transpose(0, 2, 1)).reshape(X.shape[0], self.n_kernels, *hw)

    def _point_grads(self, g, X):
        """Fill dM = sum_b g_b X_b; return dX = g^T M (B, P, d), or None without input grads.

        g (B, N, Ho, Wo) the gradient of the maps, X (B, P, d) the patches.
        """
        g = g.reshape(g.shape[0], self.n_kernels, -1)  # (B, N, P)
        self.grads["M"] = (g @ X).sum(axis=0).reshape(self.params["M"].shape)  # (N, d)
        if not self.input_grad:
            return None
        return g.transpose(0, 2, 1) @ self._weights()  # (B, P, d)

    # -- vanilla ----------------------------------------------------------------------------------
    def _forward_vanilla(self, x):
        X, hw = self._patches(x.mean)
        return Point(self._point_mean(X, hw)), (X, x.mean.shape)

    def _backward_vanilla(self, dy, saved):
        X, in_shape = saved
        dX = self._point_grads(dy.mean, X)
        return None if dX is None else Point(self._unpatch(dX, in_shape))

    # -- Point input: exact, factored output ---------------------------------------------
    def _forward_point(self, x):
        X, hw = self._patches(x.mean)  # (B, P, d)
        mean = self._point_mean(X, hw)  # (B, N, Ho, Wo)
        # rows = the identity (map position p reads patch row p), scale = 1: broadcast views,
        # nothing is written; ReLU and MaxPool read them in place.
        rows = np.broadcast_to(np.arange(X.shape[1]).reshape(1, 1, *hw), mean.shape)
        scale = np.broadcast_to(np.ones((), dtype=mean.dtype), mean.shape)
        y = Factored(mean, X, rows, scale, self.s, track_patches=self.input_grad)
        return y, (X, x.mean.shape)

    def _backward_point(self, dy, saved):
        X, in_shape = saved
        dX = self._point_grads(dy.mean, X)
        self.grads["rho"] = dy.s.sum(axis=0) * softplus_grad(self.params["rho"])
        if dX is None:
            return None
        if dy.patches is not None:
            dX = dX + dy.patches
        return Point(self._unpatch(dX, in_shape))

    # -- Diagonal input: diagonal approximation ----------------------------------------------------
    def _forward_diagonal(self, x):
        Pm, hw = self._patches(x.mean)  # (B, P, d)
        Pv, _ = self._patches(x.var)
        Mf, s = self._weights(), self.s
        pm2 = np.einsum("bpd,bpd->bp", Pm, Pm)  # ||Pm_p||^2  (B, P)
        mean = Pm @ Mf.T  # (B, P, N)
        var = Pv @ (Mf**2 + s[:, None]).T + pm2[:, :, None] * s  # (B, P, N)
        y = Diagonal(self._maps(mean, hw), self._maps(var, hw))
        return y, (Pm, Pv, pm2, x.mean.shape)

    def _backward_diagonal(self, dy, saved):
        Pm, Pv, pm2, in_shape = saved
        Mf, s = self._weights(), self.s
        g, D = self._flat(dy.mean), self._flat(dy.var)  # (B, P, N)
        dMf = np.einsum("bpn,bpd->nd", g, Pm, optimize=True)
        dMf += 2.0 * Mf * np.einsum("bpn,bpd->nd", D, Pv, optimize=True)
        ds = np.einsum("bpn,bp->n", D, Pv.sum(axis=2) + pm2)
        self.grads["M"] = dMf.reshape(self.params["M"].shape)
        self.grads["rho"] = ds * softplus_grad(self.params["rho"])
        if not self.input_grad:
            return None
        dPm = g @ Mf + 2.0 * (D @ s)[:, :, None] * Pm  # (B, P, d)
        dPv = D @ (Mf**2 + s[:, None])
        return Diagonal(self._unpatch(dPm, in_shape), self._unpatch(dPv, in_shape))

    # -- Factored input: through its diagonal --------------------------------------------
    def _forward_factored(self, x):
        y, saved = self._forward_diagonal(x.diagonal())
        return y, (x, saved)

    def _backward_factored(self, dy, saved):
        x, inner = saved
        dd = self._backward_diagonal(dy, inner)
        return None if dd is None else x.diagonal_backward(dd)
