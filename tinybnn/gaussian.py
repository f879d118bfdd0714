"""The covariance structures that flow between layers.

An activation is a Gaussian with a mean and a covariance. The covariance has one of a few
*structures*; each is a small class, and each layer says which structures it accepts and which it
returns (see ``tinybnn/layers``). The gradient of the loss with respect to a structure travels
backwards in a class of the same shape: ``Point(dm)``, ``Diagonal(dm, dvar)``, ``Full(dm, dS)``,
:class:`ProjectedGrad` for :class:`Projected` (or ``Full``, see there), and
:class:`FactoredGrad` for the factored structures.

Notation (docs/NOTATION.md): ``B`` batch, ``D`` features, ``K`` units, ``N`` channels (kernels),
``H, W`` a map's height and width, ``P`` the number of conv output positions, ``d`` the length of
one im2col patch (``C r r``). Memory is per batch, in numbers (multiply by 8 bytes for float64).

=================  ==========================================  ===============================
structure          covariance of one example                   memory (numbers)
=================  ==========================================  ===============================
Point              0 (a deterministic input or a vanilla net)  B D
Diagonal           diag(var)                                   2 B D
Full               S, a dense (K, K) matrix                    B K + B K^2
Projected          diag(a) (U^T diag(v) U + diag(e)) diag(a):  3 B K + B D + D K
                   a linear layer's output from a Diagonal
                   input (U its weights, v the input
                   variances), a Full kept as factors
Factored           per channel k: s_k F_k F_k^T, F_k rows of   B N H W (mean, rows, scale)
                   the conv patches, zero across channels      + B P d (patches)
FlatFactored       the same after Flatten (block-diagonal)     as Factored
=================  ==========================================  ===============================

A dense ``Full`` covariance of the paper's pooled feature map (N = 32, 12 x 12) would hold
4608^2 numbers per example (170 MB in float64); ``FlatFactored`` holds 3 x 4608 + 576 x 25.
Likewise the 400 hidden units of an MLP after a Diagonal layer: ``Full`` costs 400^2 numbers
and B D K^2 = 1.25e10 multiply-adds per batch of 100 to form; ``Projected`` forms nothing.
"""

from dataclasses import dataclass

import numpy as np

from .errors import ShapeError


def check_finite(name, a, error=ShapeError):
    """Raise ``error`` if ``a`` holds NaN or Inf, naming the array and the first bad index."""
    if not np.all(np.isfinite(a)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise error(f"{name} must be finite, found {a[bad]} at index {bad}")


@dataclass
class Point:
    """A deterministic activation: a mean, zero covariance.

    mean : (B, ...) any trailing shape (images (B, C, H, W), features (B, D)).
    Memory: B D numbers. Also the gradient of a Point: ``Point(dl/dmean)``.
    """

    mean: np.ndarray

    @property
    def batch_size(self):
        return self.mean.shape[0]


@dataclass
class Diagonal:
    """Independent units: ``Cov = diag(var)`` for each example.

    mean, var : (B, ...) the same shape, e.g. (B, D) or (B, C, H, W).
    Memory: 2 B D numbers. As a gradient: ``Diagonal(dl/dmean, dl/dvar)``.
    """

    mean: np.ndarray
    var: np.ndarray

    @property
    def batch_size(self):
        return self.mean.shape[0]


@dataclass
class Full:
    """A dense covariance per example.

    mean : (B, K);  cov : (B, K, K), symmetric positive semi-definite.
    Memory: B K + B K^2 numbers. As a gradient: ``Full(dl/dmean, G)`` with ``G`` the symmetric
    matrix such that ``dl = tr(G dS)`` (an element-wise derivative E corresponds to (E + E^T)/2).
    """

    mean: np.ndarray
    cov: np.ndarray

    @property
    def batch_size(self):
        return self.mean.shape[0]


class Projected(Full):
    """The output of a Bayesian linear layer whose input covariance is diagonal, kept as factors.

    For example b, with the layer's weight means ``U`` (D, K), the input variances ``var_b``
    (D,), the weight-noise variances ``extra_b`` (K,) (``s_j t_b`` of the layer) and a constant
    row and column scale ``scale_b`` (K,) (1 when made; a following ReLU multiplies in its mask)::

        S_b = diag(scale_b) ( U^T diag(var_b) U + diag(extra_b) ) diag(scale_b)      (K, K)

    It *is* a :class:`Full`: a layer or loss with no rule of its own for it reads ``cov``, the
    dense matrices (B, K, K), formed when read (B D K^2 multiply-adds; cheap for the few outputs
    of a last layer, which is where that happens). The layers that meet it inside an MLP use the
    factors instead: ReLU multiplies ``scale``, and the next Linear (K -> K') builds its Full
    output from ``U diag(a) M`` (D, K') in O(B D K K') without ever forming S (see
    :mod:`tinybnn.layers.linear`).

    mean  : (B, K);  U : (D, K), a copy of the weights, shared by the batch;  var : (B, D);
    extra : (B, K);  scale : (B, K), a constant (like Factored's ``scale``)
    Memory: 3 B K + B D + D K numbers (and B K^2 while a read ``cov`` is alive).
    Its gradient is a :class:`ProjectedGrad` (with respect to the factors) from a layer that
    used the factors, or a ``Full(dl/dmean, G)`` from one that read ``cov``.
    """

    def __init__(self, mean, U, var, extra, scale):
        self.mean, self.U, self.var, self.extra, self.scale = mean, U, var, extra, scale

    @property
    def cov(self):
        """The dense covariances (B, K, K), formed from the factors each time they are read
        (nothing is cached, so the matrix always matches the factors)."""
        B, K = self.mean.shape
        S = (self.var @ row_outer_products(self.U)).reshape(B, K, K)  # U^T diag(v_b) U
        i = np.arange(K)
        S[:, i, i] += self.extra
        return S * self.scale[:, :, None] * self.scale[:, None, :]


def row_outer_products(U):
    """W (D, K^2) with W[d, j K + k] = U[d, j] U[d, k], the outer products of U's rows.

    Then ``v @ W``, reshaped (B, K, K), is U^T diag(v_b) U for every row v_b of v (B, D): the
    whole batch as one matrix product (B, D) @ (D, K^2), instead of B thin ones (K, D) @ (D, K)
    (with the adjoint's, an MLP 784-400-10 step at batch 100 went 10.4 -> 7.9 ms: the evening
    section of benchmarks/README.md). The adjoint
    products use it too: ``G W^T`` is diag(U G_b U^T) for a batch of G_b flattened (B, K^2).
    """
    D, K = U.shape
    return (U[:, :, None] * U[:, None, :]).reshape(D, K * K)


@dataclass
class ProjectedGrad:
    """The gradient of the loss with respect to the factors of a :class:`Projected` structure.

    mean  : (B, K) dl/dmean;  var : (B, D) dl/dvar;  extra : (B, K) dl/dextra;
    U     : (D, K) dl/dU, summed over the batch (U is shared)
    ``scale`` is a constant and has no gradient.
    """

    mean: np.ndarray
    var: np.ndarray
    extra: np.ndarray
    U: np.ndarray


@dataclass
class Factored:
    """The exact covariance of a first convolution, kept as factors (never as P x P matrices).

    For channel (kernel) k of example b, positions p and q of its map::

        Cov[y_kp, y_kq] = s_k * scale_kp * scale_kq * <X[rows_kp], X[rows_kq]>
        Cov[y_kp, y_lq] = 0   for k != l

    i.e. ``S_k = s_k F_k F_k^T`` with ``F_k = diag(scale_k) X[rows_k]``. The first Conv2d creates
    it with ``rows = arange(P)``, ``scale = 1``, both read-only broadcast views (no memory);
    ReLU multiplies ``scale`` by its mask; MaxPool gathers ``rows`` and ``scale`` at the argmax.
    Only ``patches`` and ``s`` carry gradients: ``rows`` and ``scale`` are constants chosen by
    the mean path.

    mean    : (B, N, H, W)  the map's mean
    patches : (B, P, d)     im2col of the conv input, P conv output positions
    rows    : (B, N, H, W)  int, which patch row feeds each position
    scale   : (B, N, H, W)  row scale (the ReLU mask, 0 or 1)
    s       : (N,)          kernel variances softplus(rho)
    track_patches : whether the backward pass must return dl/dpatches (input gradients)

    Memory: 3 B N H W + B P d numbers (B N H W + B P d right after the conv, where rows and
    scale are views).
    """

    mean: np.ndarray
    patches: np.ndarray
    rows: np.ndarray
    scale: np.ndarray
    s: np.ndarray
    track_patches: bool = False

    @property
    def batch_size(self):
        return self.mean.shape[0]

    def row_norms2(self):
        """``scale^2 ||X[rows]||^2`` (B, N, H, W): the diagonal of ``F_k F_k^T``."""
        b = np.arange(self.batch_size)[:, None, None, None]
        norms2 = np.einsum("bpd,bpd->bp", self.patches, self.patches)  # (B, P)
        return self.scale**2 * norms2[b, self.rows]

    def diagonal(self):
        """The variances of the map, ``var_kp = s_k scale_kp^2 ||X[rows_kp]||^2``, as Diagonal."""
        var = self.s[None, :, None, None] * self.row_norms2()
        return Diagonal(self.mean, var)

    def diagonal_backward(self, grad):
        """Adjoint of :meth:`diagonal`: Diagonal gradient -> :class:`FactoredGrad`.

        ``ds_k = sum_p dvar_kp scale_kp^2 ||x_rows||^2``;
        ``dX[rows_kp] += 2 s_k scale_kp^2 dvar_kp X[rows_kp]``.
        """
        ds = np.einsum("bkhw,bkhw->bk", grad.var, self.row_norms2())
        dpatches = None
        if self.track_patches:
            w = 2.0 * self.s[None, :, None, None] * self.scale**2 * grad.var  # (B, N, H, W)
            B, P, d = self.patches.shape
            coef = np.zeros((B, P), dtype=self.patches.dtype)
            b = np.broadcast_to(np.arange(B)[:, None, None, None], self.rows.shape)
            np.add.at(coef, (b.ravel(), self.rows.ravel()), w.ravel())
            dpatches = coef[:, :, None] * self.patches
        return FactoredGrad(grad.mean, ds, dpatches)


@dataclass
class FlatFactored:
    """:class:`Factored` after Flatten: the covariance is block-diagonal over channels.

    mean    : (B, N L) flattened channel-major, index ``k L + h W + w`` with L = H W
    patches : (B, P, d);  rows, scale : (B, N, L);  s : (N,)
    Memory: as Factored.
    """

    mean: np.ndarray
    patches: np.ndarray
    rows: np.ndarray
    scale: np.ndarray
    s: np.ndarray
    track_patches: bool = False

    @property
    def batch_size(self):
        return self.mean.shape[0]


@dataclass
class FactoredGrad:
    """The gradient of the loss with respect to a Factored or FlatFactored structure.

    mean     : dl/dmean, the shape of the structure's mean
    s        : (B, N) dl/ds_k for each example (summed over the batch by the conv layer)
    patches  : (B, P, d) dl/dpatches, or None when the structure did not track patches
    """

    mean: np.ndarray
    s: np.ndarray
    patches: np.ndarray = None


STRUCTURES = (Point, Diagonal, Full, Projected, Factored, FlatFactored)

# The classes that may carry the gradient with respect to each structure.
GRAD_TYPE = {Point: (Point,), Diagonal: (Diagonal,), Full: (Full,),
             Projected: (ProjectedGrad, Full), Factored: (FactoredGrad,),
             FlatFactored: (FactoredGrad,)}


def describe(x):
    """A short human description of a structure, for error messages."""
    return f"{type(x).__name__} with mean of shape {tuple(np.shape(x.mean))}"


def check_fields(x):
    """Raise ShapeError unless a Diagonal's var has its mean's shape, or a Full's mean is
    (B, K) and its cov (B, K, K): the fields a layer reads together must fit each other."""
    if type(x) is Diagonal and np.shape(x.var) != np.shape(x.mean):
        raise ShapeError(f"a Diagonal needs var of its mean's shape {tuple(np.shape(x.mean))}, "
                         f"found var of shape {tuple(np.shape(x.var))}")
    if type(x) is Full:
        mean, cov = np.shape(x.mean), np.shape(x.cov)
        if len(mean) != 2 or cov != (*mean, mean[-1]):
            raise ShapeError(f"a Full needs mean (B, K) and cov (B, K, K), found mean "
                             f"{tuple(mean)} and cov {tuple(cov)}")
