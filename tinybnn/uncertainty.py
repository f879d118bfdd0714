r"""What the predictive distribution says about each prediction, and how to check it.

A classifier's prediction for one image is a mean ``p`` (K,) (class probabilities) and, for a
VDP network, a covariance ``S`` (K, K) (:func:`tinybnn.evaluate.predict`). From them:

===================  ==========================================  ================================
summary              definition (per image)                      uncertain when
===================  ==========================================  ================================
predicted            c = argmax_k p_k                            (the label)
confidence           p_c                                          low
predicted_variance   S_cc, the variance of the predicted class    high   (Bayesian only)
trace                tr S = sum_k S_kk                            high   (Bayesian only)
entropy              H(p) = -sum_k p_k log p_k   (0 log 0 = 0)     high
===================  ==========================================  ================================

:func:`scores` turns them into one convention, larger = more uncertain (``1 - confidence``
for the confidence), which is what :func:`auroc` and the out-of-distribution test use.

Also here:

- :func:`auroc`, the area under the ROC curve from the Mann-Whitney rank statistic;
- :func:`calibration`, the expected calibration error and the reliability diagram's bins;
- :func:`loss_input_gradient`, ``dl/dx`` by the layers' hand-derived backward passes (FGSM).

The Monte Carlo predictive distribution with sampled weights, the reference against which
the propagated moments are compared, is in :mod:`tinybnn.monte_carlo`. The robustness
measurements (noise, FGSM, out-of-distribution) are in :mod:`tinybnn.robustness`.
Shapes: n images, K classes.
"""

import numpy as np

from .errors import ConfigError, ShapeError
from .gaussian import check_finite
from .losses import Objective
from .model import data_term

#: The summaries of a prediction (the table above; the covariance ones are None for a vanilla
#: network).
SUMMARIES = ("confidence", "predicted_variance", "trace", "entropy")

#: Default number of equal-width confidence bins of the calibration error (Guo et al. 2017).
N_BINS = 15


# ---------------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------------


def _check_prediction(mean, cov):
    if mean.ndim != 2 or mean.shape[0] < 1:
        raise ShapeError(f"the predictive mean must have shape (n, K), found {mean.shape}")
    if cov is not None and cov.shape != mean.shape + mean.shape[1:]:
        raise ShapeError(f"the predictive covariance must have shape (n, K, K) = "
                         f"{mean.shape + mean.shape[1:]}, found {cov.shape}")
    check_finite("the predictive mean", mean)
    if cov is not None:
        check_finite("the predictive covariance", cov)


def entropy(p):
    """H(p) = -sum_k p_k log p_k along the last axis, with 0 log 0 = 0; (n, K) -> (n,)."""
    safe = np.where(p > 0, p, 1.0)
    return -(np.where(p > 0, p * np.log(safe), 0.0)).sum(axis=-1)


def summaries(mean, cov):
    """The table above for n images: {name: (n,) array}; the covariance summaries are None
    when ``cov`` is None (a vanilla network).

    mean : (n, K) predictive mean (probabilities);  cov : (n, K, K) or None.
    """
    _check_prediction(mean, cov)
    n = np.arange(mean.shape[0])
    pred = mean.argmax(axis=1)  # (n,)
    out = {"predicted": pred, "confidence": mean[n, pred], "entropy": entropy(mean),
           "predicted_variance": None, "trace": None}
    if cov is not None:
        out["predicted_variance"] = cov[n, pred, pred]
        out["trace"] = np.trace(cov, axis1=1, axis2=2)
    return out


def scores(s):
    """Summaries -> {name: (n,) uncertainty score, larger = more uncertain}; skips None."""
    out = {}
    for name in SUMMARIES:
        if s.get(name) is not None:
            out[name] = 1.0 - s[name] if name == "confidence" else s[name]
    return out


def summary_table(mean, cov, y):
    """Mean of each summary over all, correct and wrong predictions (a JSON-able dict).

    {"accuracy": a, "n_correct": .., "n_wrong": .., "<summary>": {"all": .., "correct": ..,
    "wrong": ..}} with None for a summary the network lacks or a group that is empty.
    """
    s = summaries(mean, cov)
    y = np.asarray(y)
    right = s["predicted"] == y
    groups = {"all": np.ones_like(right), "correct": right, "wrong": ~right}
    table = {"accuracy": float(right.mean()), "n_correct": int(right.sum()),
             "n_wrong": int((~right).sum())}
    for name in SUMMARIES:
        v = s[name]
        table[name] = {g: (float(v[mask].mean()) if v is not None and mask.any() else None)
                       for g, mask in groups.items()}
    return table


# ---------------------------------------------------------------------------------------------
# AUROC (Mann-Whitney) and calibration
# ---------------------------------------------------------------------------------------------


def average_ranks(x):
    """Ranks 1..n of ``x`` (1-D), ties sharing the average of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def auroc(negatives, positives):
    r"""Area under the ROC curve of a score that should be larger for ``positives``.

    By the Mann-Whitney identity it is the probability that a random positive scores higher than
    a random negative, ties counting 1/2::

        AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)

    with ``R_pos`` the sum of the positives' ranks among all scores (tied scores share their
    average rank). 1 separates perfectly, 0.5 is chance, 0 is perfectly reversed.
    """
    neg, pos = np.asarray(negatives, float).ravel(), np.asarray(positives, float).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ShapeError(f"auroc needs at least one score of each kind, found {neg.size} "
                         f"negatives and {pos.size} positives")
    check_finite("the scores", np.concatenate([neg, pos]))
    ranks = average_ranks(np.concatenate([neg, pos]))
    r_pos = ranks[neg.size:].sum()
    return float((r_pos - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))


def calibration(mean, y, n_bins=N_BINS):
    r"""Expected calibration error and the reliability diagram's bins.

    The confidence ``c_i = max_k p_ik`` falls in bin ``b`` = ``(b/B, (b+1)/B]`` (B = n_bins
    equal-width bins; a confidence of exactly 0 goes to the first). With ``acc_b`` the accuracy
    and ``conf_b`` the mean confidence of the ``n_b`` images in bin b::

        ECE = sum_b (n_b / n) |acc_b - conf_b|

    Returns {"ece", "n_bins", "edges" (B+1,), "count" (B,), "accuracy" (B,), "confidence" (B,)}
    as lists, with None for the accuracy and confidence of an empty bin.
    """
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ConfigError(f"n_bins must be an integer >= 1, found {n_bins!r}")
    mean = np.asarray(mean)
    _check_prediction(mean, None)
    y = np.asarray(y)
    conf = mean.max(axis=1)
    right = mean.argmax(axis=1) == y
    b = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)  # (n,)
    count = np.bincount(b, minlength=n_bins)
    acc_sum = np.bincount(b, weights=right.astype(float), minlength=n_bins)
    conf_sum = np.bincount(b, weights=conf, minlength=n_bins)
    full = count > 0
    acc = np.where(full, acc_sum / np.maximum(count, 1), np.nan)
    cbar = np.where(full, conf_sum / np.maximum(count, 1), np.nan)
    ece = float((count[full] / len(y) * np.abs(acc[full] - cbar[full])).sum())

    def listed(a):
        return [None if np.isnan(v) else float(v) for v in a]

    return {"ece": ece, "n_bins": int(n_bins), "edges": np.linspace(0, 1, n_bins + 1).tolist(),
            "count": count.tolist(), "accuracy": listed(acc), "confidence": listed(cbar)}


# ---------------------------------------------------------------------------------------------
# the gradient of the loss with respect to the input
# ---------------------------------------------------------------------------------------------


def loss_input_gradient(model, x, y, objective=Objective()):
    r"""Per-example data-term losses and their gradients with respect to the input images.

    The data term is the one training uses (:func:`tinybnn.model.data_term`): the Gaussian NLL
    of the one-hot label under the output mean and covariance (Bayesian, with
    ``objective.jitter``) or the softmax cross-entropy of the logits (vanilla). The gradient
    flows back through every layer's hand-derived backward pass, the mean *and* the covariance
    paths (the first layer returns it because ``forward(x, input_grad=True)``). Examples are
    independent, so ``dl_i/dx_i`` is ``B`` times the gradient of the batch mean.

    x : (B, *input_shape) in the model's dtype;  y : (B,) int labels (the true ones, or the
    targets of a targeted attack). Returns (loss (B,), grad (B, *input_shape)). As any
    backward pass, it overwrites the layers' parameter gradients (``model.grads``).
    """
    if model.task != "classification":
        raise ConfigError("loss_input_gradient needs a classifier")
    y = np.asarray(y)
    if y.shape != (np.shape(x)[0],):
        raise ShapeError(f"y must have shape ({np.shape(x)[0]},), found {y.shape}")
    out = model.forward(x, input_grad=True)
    _, dout, per = data_term(model, out, y, objective.jitter)
    dx = model.backward(dout)  # the gradient of the batch mean: carries 1/B
    return per, dx.mean * x.shape[0]
