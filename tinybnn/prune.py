"""Model surgery for self-compression: rank kernels (or hidden units), select the redundant ones
by a documented rule, and remove them structurally.

Each step is a function a notebook cell can call alone::

    ranking   = rank(model, "conv", criterion="norm")      # importance score per kernel
    selection = select(ranking, rule="threshold", value=1e-3)
    smaller   = remove(model, "conv", selection.removed)    # a new, smaller Sequential
    change    = compare(model, smaller, x)                  # how much the prediction moved

**Criteria** (a score per kernel k of a conv layer, or per unit of a hidden linear layer; a
*low* score means *redundant*):

==============  ===============================  ==================================================
criterion       score                            note
==============  ===============================  ==================================================
``norm``        ||M_k||_F                        the paper's; for a vanilla net the weight norm
``snr``         ||M_k||_F / sqrt(d s_k)          signal-to-noise: mean against its spread
``variance``    1 / s_k                          the variance alone (a noisy kernel is redundant)
``random``      uniform random (seeded)          a sanity baseline
==============  ===============================  ==================================================

**Selection rules** (``value`` is the rule's parameter):

- ``threshold``: remove kernels whose score is below ``value`` (absolute; default 1e-3: the
  authors' released kernels separate cleanly, 5.7e-5 against >= 0.25);
- ``median_fraction``: remove kernels whose score is below ``value`` times the median score;
- ``largest_gap``: sort the log-scores, find the largest gap between neighbours; if it is wider
  than ``log(value)`` (a factor ``value``, default 10) remove everything below it, else nothing;
- ``count``: remove the ``value`` lowest-scoring kernels (for sweeps and baselines).

A rule that would remove every kernel raises :class:`~tinybnn.errors.ConfigError`.

**Removal** builds a new network whose layer has fewer kernels (units) and whose next layer
has the corresponding inputs removed: after Flatten, the rows ``k L .. (k+1) L - 1`` of the
linear layer's ``M``; for a following conv, its input channel k; for a following linear layer,
row k. A kernel whose mean is exactly zero outputs zero, the ReLU's derivative there is zero,
so it adds neither mean nor variance downstream: removing it leaves the predictive mean and
covariance unchanged (``compare`` measures it).
"""

from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .evaluate import predict
from .layers import Conv2d
from .model import Sequential
from .units import (n_units, next_weight_layer, prunable_layers, reading_rows, unit_means,
                    unit_norms)

CRITERIA = ("norm", "snr", "variance", "random")
RULES = ("threshold", "median_fraction", "largest_gap", "count")


@dataclass
class Ranking:
    """Importance scores of the kernels (units) of one layer; low = redundant."""

    layer: str
    criterion: str
    scores: np.ndarray  # (N,)

    @property
    def order(self):
        """Kernel indices from least to most important."""
        return np.argsort(self.scores, kind="stable")


@dataclass
class Selection:
    """Which kernels a rule selected, and what it saw."""

    layer: str
    rule: str
    value: float
    cutoff: float  # the score below which kernels were removed (nan if none)
    removed: list
    kept: list
    scores: list = field(default_factory=list)
    note: str = ""


def _check_prunable(model, layer):
    if layer not in prunable_layers(model):
        raise ConfigError(f"layer {layer!r} cannot be pruned; prunable layers of this network: "
                          f"{prunable_layers(model) or 'none'}")


def rank(model, layer="conv", criterion="norm", *, rng=None):
    """Score every kernel (unit) of ``layer`` by ``criterion``; see the module docstring."""
    _check_prunable(model, layer)
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
    lay = model[layer]
    norms = unit_norms(lay)
    if criterion == "norm":
        scores = norms
    elif criterion == "random":
        rng = np.random.default_rng(0) if rng is None else rng
        scores = rng.random(len(norms))
    else:
        if not lay.bayesian:
            raise ConfigError(f"criterion {criterion!r} needs a Bayesian layer (variances); "
                              f"{layer!r} is vanilla: use 'norm'")
        s = lay.s
        d = unit_means(lay).shape[1]
        scores = norms / np.sqrt(d * s) if criterion == "snr" else 1.0 / s
    return Ranking(layer, criterion, np.asarray(scores, dtype=np.float64))


def check_rule(rule, value, n):
    """Raise a ConfigError unless ``rule`` with ``value`` can select among ``n`` kernels: the
    checks that need no scores, so that a caller can make them before training."""
    if rule not in RULES:
        raise ConfigError(f"unknown selection rule {rule!r}; known: {', '.join(RULES)}")
    if rule == "median_fraction" and not 0 < value < 1:
        raise ConfigError(f"median_fraction needs 0 < value < 1, found {value}")
    if rule == "count" and not 0 <= int(value) < n:
        raise ConfigError(f"count must be between 0 and {n - 1} (the layer has {n} kernels), "
                          f"found {value}")
    if rule == "largest_gap" and value <= 1:
        raise ConfigError(f"largest_gap needs a factor value > 1, found {value}")


def select(ranking, rule="threshold", value=1e-3):
    """The kernels ``rule`` marks as redundant; see the module docstring."""
    s = ranking.scores
    n = len(s)
    check_rule(rule, value, n)
    note = ""
    if rule == "threshold":
        cutoff = float(value)
    elif rule == "median_fraction":
        cutoff = float(value * np.median(s))
    elif rule == "count":
        k = int(value)
        cutoff = float(np.sort(s)[k]) if k else -np.inf
    else:
        logs = np.log(np.maximum(np.sort(s), np.finfo(float).tiny))
        gaps = np.diff(logs)
        i = int(np.argmax(gaps)) if len(gaps) else 0
        widest = float(np.exp(gaps[i])) if len(gaps) else 1.0
        # the geometric mean of the two scores either side of the gap
        cutoff = float(np.exp(0.5 * (logs[i] + logs[i + 1]))) if widest >= value else -np.inf
        note = (f"widest gap: factor {widest:.3g} between scores {np.exp(logs[i]):.3g} and "
                f"{np.exp(logs[i + 1]):.3g}" if len(gaps) else "one kernel: no gap")
    removed = [int(k) for k in np.flatnonzero(s < cutoff)] if rule != "count" \
        else [int(k) for k in ranking.order[:int(value)]]
    if len(removed) == n:
        raise ConfigError(f"rule {rule} with value {value} selects all {n} kernels of "
                          f"{ranking.layer!r} (cutoff {cutoff:.3g}); nothing would remain")
    kept = [k for k in range(n) if k not in set(removed)]
    return Selection(ranking.layer, rule, float(value), cutoff, removed, kept,
                     [float(v) for v in s], note)


def remove(model, layer, indices):
    """A new Sequential without kernels (units) ``indices`` of ``layer``; ``model`` unchanged."""
    _check_prunable(model, layer)
    lay = model[layer]
    n = n_units(lay)
    drop = sorted(set(int(k) for k in indices))
    if any(k < 0 or k >= n for k in drop):
        raise ConfigError(f"kernel indices must be in [0, {n}), found {drop}")
    if len(drop) == n:
        raise ConfigError(f"cannot remove all {n} kernels of {layer!r}")
    keep = np.array([k for k in range(n) if k not in set(drop)])
    nxt_name, nxt, _ = next_weight_layer(model, layer)

    spec = model.spec()
    layer_specs = dict((name, ls) for name, ls in spec["layers"])
    new_params = {k: v.copy() for k, v in model.params.items()}
    if isinstance(lay, Conv2d):
        layer_specs[layer]["n_kernels"] = len(keep)
    else:
        layer_specs[layer]["d_out"] = len(keep)
    for p in ("M", "rho", "b"):
        key = f"{layer}.{p}"
        if key in new_params:
            a = new_params[key]
            new_params[key] = a[keep] if (p != "M" or isinstance(lay, Conv2d)) else a[:, keep]
    key = f"{nxt_name}.M"
    rows = reading_rows(model, layer, keep)  # the next layer's inputs that read the kept units
    if isinstance(nxt, Conv2d):
        new_params[key] = new_params[key][:, rows]
        layer_specs[nxt_name]["c_in"] = len(rows)
    else:
        new_params[key] = new_params[key][rows]
        layer_specs[nxt_name]["d_in"] = len(rows)
    spec["layers"] = [[name, layer_specs[name]] for name, _ in spec["layers"]]
    smaller = Sequential.from_spec(spec, dtype=model.dtype.type)
    for k, v in smaller.params.items():
        v[...] = new_params[k]
    return smaller


@dataclass
class Change:
    """How much a prediction moved: max |mean difference|, relative covariance change."""

    max_mean_change: float
    max_cov_change: float
    relative_cov_change: float  # ||S_new - S_old||_F / ||S_old||_F over the batch


def compare(before, after, x):
    """Compare the predictive mean and covariance of two networks on inputs ``x``."""
    m0, S0 = predict(before, x)
    m1, S1 = predict(after, x)
    if S0 is None or S1 is None:
        return Change(float(np.abs(m1 - m0).max()), float("nan"), float("nan"))
    diff = S1 - S0
    return Change(float(np.abs(m1 - m0).max()), float(np.abs(diff).max()),
                  float(np.linalg.norm(diff) / max(np.linalg.norm(S0), np.finfo(float).tiny)))
