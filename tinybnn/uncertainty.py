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
- :func:`loss_input_gradient`, ``dl/dx`` by the layers' hand-derived backward passes (FGSM);
- :func:`mc_predictive`, the Monte Carlo predictive distribution with sampled weights, the
  reference against which the propagated moments are compared (:func:`mc_agreement`).

The robustness measurements (noise, FGSM, out-of-distribution) are in
:mod:`tinybnn.robustness`. Shapes: n images, K classes, S Monte Carlo samples.
"""

import numpy as np

from .errors import ConfigError, ShapeError
from .functions import softmax
from .gaussian import check_finite
from .losses import Objective
from .model import Sequential, data_term

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


# ---------------------------------------------------------------------------------------------
# Monte Carlo predictive distribution with sampled weights
# ---------------------------------------------------------------------------------------------


def point_twin(model):
    """A vanilla copy of a Bayesian network's architecture (point weights, no final Softmax),
    into which :func:`sample_weights` writes draws from the posterior."""
    spec = model.spec()
    layers = []
    for name, ls in spec["layers"]:
        if ls["type"] == "Softmax":
            continue
        layers.append([name, dict(ls, bayesian=False) if "bayesian" in ls else dict(ls)])
    return Sequential.from_spec(dict(spec, layers=layers), dtype=model.dtype.type)


def sample_weights(model, twin, rng):
    r"""Write one draw ``W_k = M_k + sqrt(s_k) Z``, ``Z ~ N(0, I)``, of every Bayesian kernel
    (conv) and unit (linear) of ``model`` into ``twin``'s means; biases are copied."""
    for name, layer in model.layers:
        if not layer.params:
            continue
        target = twin[name].params
        M = layer.params["M"]
        if layer.bayesian:
            sd = np.sqrt(layer.s).astype(M.dtype)  # (N,) or (K,)
            sd = sd.reshape(-1, 1, 1, 1) if M.ndim == 4 else sd[None, :]  # per kernel / unit
            target["M"][...] = M + sd * rng.standard_normal(M.shape).astype(M.dtype)
        else:
            target["M"][...] = M
        if "b" in layer.params:
            target["b"][...] = layer.params["b"]


def mc_predictive(model, x, n_samples, rng, *, checkpoints=None, batch_size=500):
    r"""The Monte Carlo predictive distribution of a Bayesian classifier.

    For s = 1..S, draw the weights from the posterior (:func:`sample_weights`), run the point
    network (the vanilla path of the same layers) and take the softmax ``p^(s)`` (n, K)::

        mean = 1/S sum_s p^(s)                            (n, K)
        cov  = 1/S sum_s (p^(s) - mean)(p^(s) - mean)^T    (n, K, K)

    (the plug-in covariance, divided by S). The same S weight draws serve every image.
    ``checkpoints``: sample counts (<= S) at which (mean, cov) is also returned, to see
    convergence. Returns {S_j: (mean, cov)} for every checkpoint and S itself.
    """
    if not model.bayesian or model.task != "classification":
        raise ConfigError("mc_predictive needs a Bayesian classifier")
    if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 1):
        raise ConfigError(f"the number of samples must be an integer >= 1, found {n_samples!r}")
    marks = sorted({int(c) for c in (checkpoints or ()) if 1 <= c <= n_samples} | {n_samples})
    twin = point_twin(model)
    n, K = len(x), None
    total = total2 = None
    results = {}
    for s in range(1, n_samples + 1):
        sample_weights(model, twin, rng)
        p = np.concatenate([softmax(twin.forward(x[i:i + batch_size]).mean)
                            for i in range(0, n, batch_size)])  # (n, K)
        if total is None:
            K = p.shape[1]
            total, total2 = np.zeros((n, K)), np.zeros((n, K, K))
        total += p
        total2 += p[:, :, None] * p[:, None, :]
        if s in marks:
            mean = total / s
            results[s] = (mean, total2 / s - mean[:, :, None] * mean[:, None, :])
    return results


#: What "agrees" means in :func:`mc_agreement`: the same predicted class on this fraction of
#: images, and the median relative difference of each other summary below this.
AGREE_CLASS = 0.99
AGREE_RELATIVE = 0.10


def mc_agreement(propagated, mc, y=None):
    r"""Compare the propagated summaries with the Monte Carlo ones at each sample count.

    propagated : (mean, cov) of the VDP network;  mc : {S: (mean, cov)} from
    :func:`mc_predictive`. For each S: the fraction of images with the same predicted class,
    and for each other summary ``u`` the median over images of ``|u_mc - u_vdp| / |u_vdp|``
    and the median ratio ``u_mc / u_vdp``; ``samples_to_agree`` the smallest S from which on
    (all larger S too) the class agreement is >= AGREE_CLASS, or each summary's median
    relative difference <= AGREE_RELATIVE (None: not within S_max samples).
    """
    vdp = summaries(*propagated)
    rows = []
    for S in sorted(mc):
        m = summaries(*mc[S])
        row = {"samples": int(S), "class_agreement": float((m["predicted"] ==
                                                            vdp["predicted"]).mean())}
        if y is not None:
            row["mc_accuracy"] = float((m["predicted"] == np.asarray(y)).mean())
        for name in SUMMARIES:
            u_mc, u_vdp = m[name], vdp[name]
            if u_vdp is None:
                continue
            denom = np.abs(u_vdp)
            ok = denom > 0
            rel = np.abs(u_mc - u_vdp)[ok] / denom[ok]
            row[f"{name}_median_relative_difference"] = float(np.median(rel)) if ok.any() else None
            ratio = float(np.median(u_mc[ok] / u_vdp[ok])) if ok.any() else None
            row[f"{name}_median_ratio"] = ratio
        rows.append(row)

    def first_from_which(ok):
        idx = None
        for r, good in zip(rows, ok):
            idx = (idx or r["samples"]) if good else None
        return idx

    agree = {"predicted": first_from_which([r["class_agreement"] >= AGREE_CLASS for r in rows])}
    for name in SUMMARIES:
        key = f"{name}_median_relative_difference"
        if all(r.get(key) is not None for r in rows):
            agree[name] = first_from_which([r[key] <= AGREE_RELATIVE for r in rows])
    return {"rows": rows, "samples_to_agree": agree,
            "criteria": {"class_agreement": AGREE_CLASS, "median_relative": AGREE_RELATIVE}}
