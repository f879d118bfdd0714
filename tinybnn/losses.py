r"""Losses: the Gaussian NLL of a VDP network, cross-entropy for a vanilla one, and regularisers.

**Gaussian negative log-likelihood** of a target ``y`` (the one-hot label for a classifier)
under the output mean ``mu`` (K,) and covariance ``S`` (K, K), per example::

    A  = (S + S^T)/2 + eps I,     r = mu - y
    l  = 1/2 r^T A^-1 r + 1/2 log det A            (the constant K/2 log 2 pi is dropped)
    dl/dmu = A^-1 r,   dl/dS = 1/2 (A^-1 - A^-1 r r^T A^-1)

``eps`` is the jitter (:data:`JITTER`, default 1e-3), named and configurable; ``log det A`` and
``A^-1`` come from the Cholesky factor ``A = L L^T``. A covariance that is not positive definite
even with the jitter raises :class:`~tinybnn.errors.DivergenceError`; nothing is clipped or
replaced; a NaN or Inf in the output raises it too (the input was checked, so the network
diverged). The batch loss is the mean over examples, so gradients carry ``1/B``.

**beta-NLL** (Seitzer et al., ICLR 2022; not in the paper). The NLL lets a network "explain" an
example it gets wrong with a large variance instead of fixing its mean: the gradient on the mean
is ``A^-1 r``, so an example with variance 1 pulls a thousand times less than one with variance
1e-3 (the jitter). A classifier trained this way stops improving on its hard examples (a VDP MLP
on MNIST stalls near 97 % training accuracy; its wrong examples have predictive variance ~1, its
right ones ~1e-5). beta-NLL multiplies each example's NLL by a weight held constant in the
gradient (a stop-gradient), ``w = v^beta`` with ``v`` the example's variance: the mean of
``diag A`` for a Full output, each entry of ``a`` for a Diagonal one (per output, as Seitzer et
al.). Unlike theirs, the weights are normalised to mean 1 over the batch, so the data term keeps
its size against the regulariser (unnormalised, beta = 0.5 shrinks it by ``sqrt(v)``, some
30-fold at v ~ 1e-3, and the L1 regulariser then wins: 93.7 % for the MLP above instead of
96.6 %). beta = 0 is the plain NLL. With beta = 1 an example's pull on the mean no longer shrinks
with its overall variance (for a Diagonal output it is exactly a squared error's; for a Full one
``A^-1`` still weighs the directions of the output space against each other).

**Regularisers** of the Bayesian layers. A layer has n kernels (conv) or units (linear), each
with mean vector ``m_k`` of length d (conv: ``M[k].ravel()``, d = C r r; linear: ``M[:, k]``,
d = D) and variance ``s_k``. Biases are not regularised. Three presets:

- ``elbo`` (textbook): ``(1/N_train) sum_layers sum_k KL(N(m_k, s_k I) || N(0, sp I))`` with
  ``KL = 1/2 [ d s_k/sp + ||m_k||^2/sp - d + d log(sp/s_k) ]``, prior variance ``sp``.
- ``authors2019`` (the 2019 code): ``0.002 sum_layers 1/2 [ sum_k ||m_k||_1 +
  mean_k d (s_k - log s_k - 1) ]``; an L1 norm of the means (derivative sign(m), 0 at 0).
- ``authors_later`` (the later code): the whole loss is halved,
  ``1/2 [ NLL + 0.01 sum_layers ( sum_k ||m_k||^2 + d mean_k (s_k - log s_k - 1) ) ]``.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .errors import ConfigError, DivergenceError, ShapeError
from .functions import log_softmax, softmax, softplus_grad
from .gaussian import Diagonal, Full, Point, check_finite
from .kernels.step import column_squares_and_scaled, l1_and_sign, nll_full
from .units import unit_means

JITTER = 1e-3  # eps in A = S + eps I; keeps the NLL finite when S is (near) singular


def one_hot(labels, n_classes, dtype):
    """Integer labels (B,) in [0, n_classes) -> one-hot (B, n_classes); bad labels raise."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ShapeError(f"labels must be a 1-D integer array, found shape {labels.shape} "
                         f"and dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise ShapeError(f"labels must lie in [0, {n_classes}), found {bad}")
    out = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def _check_batch(out, target):
    if target.shape != out.mean.shape:
        raise ShapeError(f"target must have shape {out.mean.shape} (the output's), "
                         f"found {target.shape}")
    check_finite("the network output mean", out.mean, DivergenceError)


def gaussian_nll(out, target, jitter=JITTER, beta=0.0):
    """Mean (beta-weighted) Gaussian NLL over the batch and its gradient (``out``'s structure):
    :func:`gaussian_nll_full` for a Full output, :func:`gaussian_nll_diagonal` for a Diagonal one.

    out : Full (mean (B, K), cov (B, K, K)) or Diagonal (mean, var (B, K)); target (B, K).
    beta : the beta-NLL exponent (0: the plain NLL); the weights are constants in the gradient.
    Returns (loss, grad, per_example (B,)); ``per_example`` is the plain, unweighted NLL.
    """
    if jitter < 0:
        raise ConfigError(f"jitter must be >= 0, found {jitter}")
    if not 0 <= beta <= 1:
        raise ConfigError(f"beta must lie in [0, 1], found {beta}")
    _check_batch(out, target)
    if isinstance(out, Diagonal):
        return gaussian_nll_diagonal(out, target, jitter, beta)
    if isinstance(out, Full):
        return gaussian_nll_full(out, target, jitter, beta)
    raise ShapeError(f"gaussian_nll takes a Full or Diagonal output, found {type(out).__name__}")


def gaussian_nll_diagonal(out, target, jitter, beta):
    """The NLL of independent outputs, A = diag(var) + jitter: per example
    1/2 sum_k (r_k^2 / a_k + log a_k), each term weighted by a_k^beta (normalised)."""
    K = target.shape[1]
    r = out.mean - target  # (B, K)
    check_finite("the network output variance", out.var, DivergenceError)
    a = out.var + jitter
    if np.any(a <= 0):
        raise DivergenceError(f"output variance + jitter must be > 0, found {a.min()}")
    w = a**beta
    w /= w.sum() / K  # (B, K), mean 1/B: 1/B everywhere for beta = 0
    terms = 0.5 * (r**2 / a + np.log(a))
    alpha = r / a
    return ((w * terms).sum(), Diagonal(w * alpha, 0.5 * w * (1 / a - alpha**2)),
            terms.sum(axis=1))


def gaussian_nll_full(out, target, jitter, beta):
    """The NLL of a full output covariance, A = Sigma + jitter I: per example
    1/2 (r^T A^-1 r + log det A), weighted by (tr A)^beta (normalised), by Cholesky factors."""
    K = target.shape[1]
    check_finite("the network output covariance", out.cov, DivergenceError)
    # per-example NLL, alpha = A^-1 r, G = 1/2 (A^-1 - alpha alpha^T), tr A, by Cholesky
    # factors (tinybnn.kernels.step.nll_full_numpy shows the same in NumPy)
    per, alpha, G, trace, bad = nll_full(out.mean, out.cov, target, jitter)
    if bad >= 0:
        A = 0.5 * (out.cov[bad] + out.cov[bad].T) + jitter * np.eye(K, dtype=out.mean.dtype)
        raise DivergenceError(
            f"output covariance + {jitter} I is not positive definite (example {bad}, "
            f"smallest eigenvalue {np.linalg.eigvalsh(A)[0]:.3g})")
    w = trace ** beta
    w /= w.sum()  # (B,), mean 1/B: 1/B everywhere for beta = 0
    return (w * per).sum(), Full(w[:, None] * alpha, w[:, None, None] * G), per


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of logits (Point (B, K)) -> (loss, Point grad, per (B,))."""
    check_finite("the network output", logits.mean, DivergenceError)
    y = one_hot(labels, logits.mean.shape[1], logits.mean.dtype)
    per = -(y * log_softmax(logits.mean)).sum(axis=1)
    B = y.shape[0]
    return per.mean(), Point((softmax(logits.mean) - y) / B), per


def squared_error(out, target):
    """Mean of 1/2 ||mu - y||^2 for a vanilla regression net -> (loss, Point grad, per (B,))."""
    _check_batch(out, target)
    r = out.mean - target
    per = 0.5 * (r**2).sum(axis=1)
    return per.mean(), Point(r / target.shape[0]), per


# ---------------------------------------------------------------------------------------------
# regularisers: each takes ``layers``, a mapping {name: layer} or a sequence, and returns
# (value, {key: {"M": dM, "rho": drho}}) keyed like it: by name, or by position in the sequence
# ---------------------------------------------------------------------------------------------


def _keyed(layers):
    """(key, layer) pairs of a mapping {name: layer} (its names) or a sequence (positions)."""
    return layers.items() if isinstance(layers, Mapping) else enumerate(layers)


def kl_elbo(layers, *, n_train, prior_var=1.0):
    """(1/N_train) sum KL(q || N(0, prior_var I)) over every kernel/unit of ``layers``."""
    if n_train < 1 or prior_var <= 0:
        raise ConfigError(
            f"elbo needs n_train >= 1 and prior_var > 0, found {n_train}, {prior_var}")
    value, grads = 0.0, {}
    for key, layer in _keyed(layers):
        U, s = unit_means(layer), layer.s  # (n, d), (n,)
        d = U.shape[1]
        norm2, dM = _squares_and_gradient(layer.params["M"], U, prior_var, n_train)
        kl = 0.5 * (d * s / prior_var + norm2 / prior_var - d + d * np.log(prior_var / s))  # (n,)
        value += kl.sum() / n_train
        ds = 0.5 * d * (1.0 / prior_var - 1.0 / s) / n_train
        grads[key] = {"M": dM, "rho": ds * softplus_grad(layer.params["rho"])}
    return value, grads


def _squares_and_gradient(M, U, prior_var, n_train):
    """(||m_k||^2 for every row of U, the units' means, and d/dM of their sum / (2 prior_var
    n_train) = M / prior_var / n_train) on M as stored (C order, so that the sum into the
    layer's gradient runs in memory order). A linear layer's units are the columns of M
    (U = M.T): there one loop makes NumPy's numbers (tinybnn.kernels.step)."""
    if U.flags.c_contiguous:  # a conv's kernels: rows of M
        return (U**2).sum(axis=1), M / prior_var / n_train
    return column_squares_and_scaled(M, prior_var, n_train)


def _variance_penalty(s, d):
    """mean_k d (s_k - log s_k - 1) and its gradient with respect to s."""
    return d * np.mean(s - np.log(s) - 1.0), d * (1.0 - 1.0 / s) / s.shape[0]


def _unit_length(layer):
    """d, the length of one kernel's (unit's) mean vector: the means M hold one per variance."""
    return layer.params["M"].size // layer.params["rho"].size


def reg_authors2019(layers, weight=0.002):
    """weight * sum_layers 1/2 [ sum_k ||m_k||_1 + mean_k d (s_k - log s_k - 1) ].

    The L1 norm and its derivative sign(M) are elementwise, so they are taken on ``M`` as it is
    stored (no per-unit view: that would be a strided transpose of the linear layer's means).
    """
    return _means_and_variances(layers, weight, l1_and_sign)


def reg_authors_later(layers, weight=0.01):
    """1/2 weight sum_layers ( sum_k ||m_k||^2 + d mean_k (s_k - log s_k - 1) ).

    The preset also halves the NLL (``Objective.nll_scale`` = 1/2).
    """
    return _means_and_variances(layers, weight, _squares)


def _squares(M, c):
    """sum M^2 and c times its gradient."""
    return (M**2).sum(), 2 * c * M


def _means_and_variances(layers, weight, mean_penalty):
    """The authors' two regularisers: weight/2 sum_layers [P(M) + mean_k d (s_k - log s_k - 1)],
    with the penalty on the means ``mean_penalty(M, c) -> (P(M), c dP/dM)`` (L1 or L2)."""
    value, grads = 0.0, {}
    for key, layer in _keyed(layers):
        M, rho = layer.params["M"], layer.params["rho"]
        pen, dpen = _variance_penalty(layer.s, _unit_length(layer))
        p, dM = mean_penalty(M, 0.5 * weight)
        value += 0.5 * weight * (p + pen)
        grads[key] = {"M": dM, "rho": 0.5 * weight * dpen * softplus_grad(rho)}
    return value, grads


class Regulariser(NamedTuple):
    """A named regulariser: ``penalty(layers, objective) -> (value, grads keyed like layers)`` and
    the scale of the NLL beside it."""

    penalty: Callable
    nll_scale: float


#: The regularisers an Objective (and so a preset) can name.
REGULARISERS = {
    "elbo": Regulariser(lambda layers, o: kl_elbo(layers, n_train=o.n_train,
                                                  prior_var=o.prior_var), 1.0),
    "authors2019": Regulariser(lambda layers, o: reg_authors2019(layers), 1.0),
    "authors_later": Regulariser(lambda layers, o: reg_authors_later(layers), 0.5),
}


@dataclass(frozen=True)
class Objective:
    """What training minimises: ``nll_scale * NLL + regulariser``.

    regulariser : "elbo", "authors2019" or "authors_later" (see the module docstring)
    n_train     : training-set size N_train (only the elbo uses it)
    prior_var   : prior variance sp of the elbo
    jitter      : eps added to the output covariance in the NLL
    reg_scale   : multiplies the regulariser (1 = the preset's formula); an experiment knob
    nll_beta    : the beta of beta-NLL (0 = the plain NLL, the paper's); see the module docstring
    """

    regulariser: str = "elbo"
    n_train: int = 60000
    prior_var: float = 1.0
    jitter: float = JITTER
    reg_scale: float = 1.0
    nll_beta: float = 0.0

    def __post_init__(self):
        if self.regulariser not in REGULARISERS:
            raise ConfigError(f"regulariser must be one of {', '.join(REGULARISERS)}; "
                              f"found {self.regulariser!r}")
        if self.jitter < 0 or self.n_train < 1 or self.prior_var <= 0 or self.reg_scale < 0:
            raise ConfigError(f"need jitter >= 0, n_train >= 1, prior_var > 0, reg_scale >= 0; "
                              f"found {self.jitter}, {self.n_train}, {self.prior_var}, "
                              f"{self.reg_scale}")
        if not 0 <= self.nll_beta <= 1:
            raise ConfigError(f"nll_beta must lie in [0, 1], found {self.nll_beta}")

    @property
    def nll_scale(self):
        return REGULARISERS[self.regulariser].nll_scale

    def regularise(self, layers):
        """(value, grads keyed like ``layers``) of the regulariser over the Bayesian ``layers``
        (a mapping {name: layer}, as ``model.named_bayesian_layers``, or a sequence)."""
        value, grads = REGULARISERS[self.regulariser].penalty(layers, self)
        if self.reg_scale != 1.0:
            value *= self.reg_scale
            grads = {i: {k: g * self.reg_scale for k, g in gs.items()} for i, gs in grads.items()}
        return value, grads
