r"""Accuracy and uncertainty under perturbed and foreign inputs.

Three measurements, each a function of a model and test images returning a JSON-able dict
(the Bayesian and the vanilla network are measured by the same function, on the same
perturbations, so their curves can share a plot):

- :func:`noise_robustness`: additive Gaussian noise ``x' = clip(x + std z, 0, 1)``,
  ``z ~ N(0, I)``, for each standard deviation. One ``z`` per image is drawn from
  ``numpy.random.default_rng(seed)`` and scaled by every std (common random numbers), so the
  curves are smooth in the std and two models given the same seed see the same noise.
- :func:`fgsm`: the fast gradient sign method (Goodfellow et al. 2015), one step of size eps
  along the sign of ``g = dl/dx`` (:func:`tinybnn.uncertainty.loss_input_gradient`: the
  Gaussian NLL for a VDP network, the cross-entropy for a vanilla one)::

      untargeted   x' = clip(x + eps sign g(x, y), 0, 1)        away from the true label y
      targeted     x' = clip(x - eps sign g(x, t), 0, 1)        towards the target label t

  The target ``t`` is ``(y + 1) mod K`` by default (``target="next"``: deterministic, the same
  for every model, so two models face the same task), or the least likely class of the clean
  prediction (``target="least_likely"``: the hardest target, chosen per model). Reported:
  accuracy (prediction = y) and, targeted, the success rate (prediction = t).
- :func:`ood_detection`: the uncertainty summaries of in-distribution test images and of
  images from another dataset (MNIST against Fashion-MNIST), and the AUROC of each summary
  for telling them apart (:func:`tinybnn.uncertainty.auroc`; out-of-distribution = positive).

**Clipping to [0, 1]** (``clip=True``, the default) keeps the perturbed input an image: pixels
of the shipped sets lie in [0, 1], and a network never saw anything else. The authors' code
added noise with a function named and called like ``skimage.util.random_noise(x,
mode='gaussian', var=...)``, which clips to [0, 1] by default; we could not check their later
code, so the comparison in docs/UNCERTAINTY.md says so. Clipping also means a std or an eps
above 1 cannot change an image more than 1 does, so both are refused above :data:`MAX_STD`
and :data:`MAX_EPS`.

Every result holds, per level: ``accuracy``, ``mean_predictive_variance`` (mean over images of
``tr S / K``, as :mod:`tinybnn.evaluate`; None for a vanilla network) and the mean of each
uncertainty summary. Shapes: n images, K classes.
"""

import numpy as np

from .errors import ConfigError, ShapeError
from .evaluate import EVAL_BATCH, predict
from .losses import Objective
from .uncertainty import SUMMARIES, auroc, loss_input_gradient, scores, summaries

DEFAULT_STDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)
TARGETS = ("next", "least_likely")
#: Largest noise std and FGSM step accepted (pixels live in [0, 1]).
MAX_STD = 1.0
MAX_EPS = 1.0
#: Images per input-gradient pass (the Bayesian backward pass keeps the patches; bounded memory).
GRAD_BATCH = 250


def check_levels(values, what, upper):
    """A non-empty, finite, increasing sequence of numbers in [0, upper] -> list of floats."""
    try:
        levels = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers, found {values!r}") from None
    if not levels:
        raise ConfigError(f"{what} must hold at least one value, found none")
    bad = [v for v in levels if not (np.isfinite(v) and 0 <= v <= upper)]
    if bad:
        raise ConfigError(f"every {what[:-1] if what.endswith('s') else what} must lie in "
                          f"[0, {upper:g}] (pixels are in [0, 1]), found {bad[0]:g}")
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise ConfigError(f"{what} must be increasing without repeats, found {levels}")
    return levels


def _check_images(model, x, y):
    if np.shape(y) != (len(x),):
        raise ShapeError(f"labels must have shape ({len(x)},), found {np.shape(y)}")
    if model.task != "classification":
        raise ConfigError("robustness measurements need a classifier")


def _measure(model, x, y, batch_size):
    """Accuracy, mean predictive variance and mean summaries of ``model`` on ``x``."""
    mean, cov = predict(model, x, batch_size=batch_size)
    s = summaries(mean, cov)
    row = {"accuracy": float((s["predicted"] == y).mean()),
           "mean_predictive_variance": (None if cov is None else
                                        float(s["trace"].mean() / mean.shape[1]))}
    for name in SUMMARIES:
        row[f"mean_{name}"] = None if s[name] is None else float(s[name].mean())
    return row, s["predicted"]


def _perturbed(x, step, clip):
    out = x + step
    return np.clip(out, 0.0, 1.0, out=out) if clip else out


def noise_robustness(model, x, y, stds=DEFAULT_STDS, *, seed=0, clip=True,
                     batch_size=EVAL_BATCH):
    """Accuracy and uncertainty of ``model`` under additive Gaussian noise of each std.

    x : (n, *input_shape) images in [0, 1];  y : (n,) labels. Returns {"std": [...],
    "accuracy": [...], "mean_predictive_variance": [...], "mean_<summary>": [...], "seed",
    "clip"}: one entry per std.
    """
    _check_images(model, x, y)
    stds = check_levels(stds, "noise stds", MAX_STD)
    z = np.random.default_rng(seed).standard_normal(x.shape).astype(x.dtype)  # (n, ...)
    rows = [_measure(model, _perturbed(x, x.dtype.type(std) * z, clip), y, batch_size)[0]
            for std in stds]
    return {"std": stds, **_columns(rows), "seed": int(seed), "clip": bool(clip)}


def input_gradients(model, x, y, objective=Objective(), batch_size=GRAD_BATCH):
    """:func:`loss_input_gradient` over ``x`` in batches -> (n, *input_shape)."""
    return np.concatenate([loss_input_gradient(model, x[i:i + batch_size], y[i:i + batch_size],
                                               objective)[1]
                           for i in range(0, len(x), batch_size)])


def attack_targets(model, x, y, target, n_classes, batch_size=EVAL_BATCH):
    """The target labels of a targeted attack: ``(y + 1) mod K`` or the least likely class."""
    if target == "next":
        return (np.asarray(y) + 1) % n_classes
    if target == "least_likely":
        return predict(model, x, batch_size=batch_size)[0].argmin(axis=1)
    raise ConfigError(f"target must be one of {', '.join(TARGETS)}, found {target!r}")


def fgsm(model, x, y, epsilons=DEFAULT_EPSILONS, *, targeted=False, target="next",
         objective=Objective(), clip=True, batch_size=EVAL_BATCH):
    """Accuracy (and targeted success) of ``model`` under one-step FGSM of each size eps.

    The gradient is computed once at the clean images (it does not depend on eps). Returns
    {"epsilon": [...], "accuracy": [...], "success_rate": [...] (targeted only),
    "mean_predictive_variance": [...], "mean_<summary>": [...], "targeted", "target"}.
    """
    _check_images(model, x, y)
    epsilons = check_levels(epsilons, "epsilons", MAX_EPS)
    y = np.asarray(y)
    n_classes = predict(model, x[:1])[0].shape[1]
    t = attack_targets(model, x, y, target, n_classes, batch_size) if targeted else y
    direction = np.sign(input_gradients(model, x, t, objective))
    if targeted:
        direction = -direction  # descend the loss of the target label
    rows = []
    for eps in epsilons:
        row, pred = _measure(model, _perturbed(x, x.dtype.type(eps) * direction, clip), y,
                             batch_size)
        if targeted:
            row["success_rate"] = float((pred == t).mean())
        rows.append(row)
    out = {"epsilon": epsilons, **_columns(rows), "targeted": bool(targeted), "clip": bool(clip)}
    if targeted:
        out["target"] = target
    return out


def ood_detection(model, x_in, x_out, *, batch_size=EVAL_BATCH):
    """The AUROC of each uncertainty summary for telling ``x_out`` (positive) from ``x_in``.

    Returns {"auroc": {summary: value}, "scores_in": {summary: (n_in,)}, "scores_out":
    {summary: (n_out,)}} (scores as arrays, for the histogram; larger = more uncertain) and
    the mean of each score on each side.
    """
    s_in = scores(summaries(*predict(model, x_in, batch_size=batch_size)))
    s_out = scores(summaries(*predict(model, x_out, batch_size=batch_size)))
    return {"auroc": {k: auroc(s_in[k], s_out[k]) for k in s_in},
            "mean_score_in": {k: float(v.mean()) for k, v in s_in.items()},
            "mean_score_out": {k: float(v.mean()) for k, v in s_out.items()},
            "scores_in": s_in, "scores_out": s_out}


def _columns(rows):
    """[{k: v}, ...] -> {k: [v, ...]} in the order of the first row."""
    return {k: [r[k] for r in rows] for k in rows[0]}
