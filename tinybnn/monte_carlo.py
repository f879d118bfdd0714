r"""The Monte Carlo predictive distribution of a Bayesian classifier, with sampled weights.

What it estimates: the predictive distribution of the trained network itself, the softmax
output averaged over the posterior of the weights W::

    mean = E_W[softmax(f(x; W))]            (n, K)
    cov  = Cov_W[softmax(f(x; W))]          (n, K, K)

which the VDP network approximates by propagating the first two moments layer by layer
(:func:`tinybnn.evaluate.predict`). :func:`mc_predictive` estimates it from S weight draws
(the plug-in covariance, divided by S), the reference for the propagated moments;
:func:`mc_agreement` compares the two through the summaries of :mod:`tinybnn.uncertainty`.

How the weights are drawn: every Bayesian kernel (conv) or unit (linear) k has the posterior
mean ``M_k`` and one variance ``s_k`` shared by its weights, so one draw is
``W_k = M_k + sqrt(s_k) Z`` with ``Z ~ N(0, I)`` (:func:`sample_weights`); biases and the
weights of non-Bayesian layers are copied. The draw is written into :func:`point_twin`, a
vanilla copy of the architecture without the final Softmax, which runs the point path of the
same layers. One draw serves every image of a sample.

Seeds: every random choice flows from an explicit ``rng`` (a ``numpy.random.Generator``) that
the caller passes; nothing here seeds or reads numpy's global generator, so the same ``rng``
state gives the same draws and the same estimate. (The twin's own initial weights, from the
fixed default generator of :meth:`tinybnn.model.Sequential.from_spec`, are overwritten by the
first draw and never used.)

Shapes: n images, K classes, S Monte Carlo samples.
"""

import numpy as np

from .errors import ConfigError
from .functions import softmax
from .model import Sequential
from .uncertainty import SUMMARIES, summaries


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
