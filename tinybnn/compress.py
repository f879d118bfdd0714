"""Self-compression, step by step: tinybnn's main job (``tinybnn compress``).

1. **Train** (or load) a Bayesian paper CNN and, with the same data, seed and budget, a vanilla
   one (:func:`train_pair`). Beyond the paper, the same procedure compresses the first hidden
   layer of a VDP MLP, ranking units by the norm of their incoming mean weights
   (:class:`Target` says which).
2. **Rank** the conv kernels by a criterion and 3. **select** the redundant ones by a rule
   (:mod:`tinybnn.prune`).
4. **Remove** them structurally, and measure how much the prediction moved.
5. **Fine-tune** the smaller network from its weights (default) or **retrain** it from scratch.
6. **Measure** it (:func:`measure`): kernels, parameters by kind, model-file bytes, flops,
   inference time, test accuracy, NLL, mean predictive variance.
7. **Repeat** until no kernel is selected, the accuracy falls more than ``tolerance`` below the
   start, a target size is reached, or ``max_stages`` stages ran; the reason is reported.

Then the baselines that show what the Bayesian network does that a vanilla one cannot:
both networks pruned by norm *without* retraining over a grid of sizes, and vanilla networks
retrained from scratch at each size. :mod:`tinybnn.compress_run` wires these steps to the output
folder (report.json, report.md, plots, the compressed model).
"""

import time
from dataclasses import dataclass

import numpy as np

from . import io
from .cost import forward_flops
from .errors import ConfigError
from .evaluate import evaluate, predict
from .model import mlp, paper_cnn
from .prune import compare, rank, remove, select, unit_means
from .train import fit


@dataclass(frozen=True)
class Target:
    """What is compressed: the paper's CNN (its conv kernels) or an MLP (the units of its first
    hidden layer; the other hidden sizes stay fixed).

    kind : "cnn" or "mlp";  input_shape, n_classes : of the data;  rest : the MLP's other
    hidden sizes after the pruned one;  rho_range : the initial rho of a new network.
    """

    kind: str
    input_shape: tuple
    n_classes: int
    rest: tuple = ()
    rho_range: tuple = (-10.0, -9.0)

    @property
    def layer(self):
        return "conv" if self.kind == "cnn" else "fc1"

    def build(self, n, *, bayesian=True, seed=0, dtype=np.float64):
        """A freshly initialised network with ``n`` kernels (units) in the pruned layer."""
        if self.kind == "cnn":
            return paper_cnn(n, bayesian=bayesian, input_shape=self.input_shape,
                             n_classes=self.n_classes, seed=seed, dtype=dtype,
                             rho_range=self.rho_range)
        sizes = (int(np.prod(self.input_shape)), n, *self.rest, self.n_classes)
        return mlp(sizes, bayesian=bayesian, input_shape=self.input_shape, seed=seed, dtype=dtype,
                   rho_range=self.rho_range)

    def count(self, model):
        """Kernels (units) of the pruned layer."""
        return unit_means(model[self.layer]).shape[0]

    def check(self, model, path):
        """Raise ConfigError unless ``model`` (read from ``path``) is of this kind."""
        kinds = [type(layer).__name__ for _, layer in model.layers]
        cnn = (["Conv2d", "MaxPool2d", "ReLU", "Flatten", "Linear", "Softmax"],
               ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "Softmax"])  # older files
        ok = kinds in cnn if self.kind == "cnn" else (
            kinds[:2] == ["Flatten", "Linear"] and kinds[-1] == "Softmax" and "Conv2d" not in kinds)
        if not ok or not model.bayesian:
            want = "a Bayesian paper CNN (conv -> pool -> relu -> flatten -> fc -> softmax)" \
                if self.kind == "cnn" else "a Bayesian MLP classifier"
            raise ConfigError(f"{path} is not {want}; found layers {' -> '.join(kinds)}")
        if model.input_shape != self.input_shape:
            raise ConfigError(f"{path} takes inputs of shape {model.input_shape}; the data has "
                              f"{self.input_shape}")


def inference_ms(model, x, repeats=5):
    """Median wall time (ms) of ``predict`` on ``x``, per 100 examples, after one warm-up."""
    predict(model, x[:10])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(model, x)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)) * 100 / len(x)


NEAR_ZERO = 1e-3  # the paper's sense of "near zero": ||M_k||_F below this (PAPER.md)


def measure(model, target, test, *, timing_x=None):
    """The figures recorded at every stage, as a dict."""
    m = evaluate(model, test)
    norms = np.linalg.norm(unit_means(model[target.layer]), axis=1)
    out = {
        "kernels": target.count(model),
        "near_zero_kernels": int((norms < NEAR_ZERO).sum()),
        "smallest_kernel_norm": float(norms.min()),
        "n_parameters": model.n_parameters(),
        "model_bytes": io.file_size(model),
        "flops_per_example": forward_flops(model)["total"],
        "test_accuracy": m["accuracy"], "test_nll": m["nll"], "test_log_loss": m["log_loss"],
        "test_mean_predictive_variance": m["mean_predictive_variance"],
    }
    if timing_x is not None:
        out["inference_ms_per_100"] = inference_ms(model, timing_x)
    return out


def train_pair(ds, target, n, *, objective, train_kw, seed, dtype, vanilla=True, bayes=None):
    """A Bayesian and (optionally) a vanilla network with ``n`` kernels (units) trained on the
    same data, seed and budget; returns (bayes, vanilla or None, {"bayes": history,
    "vanilla": history}). A given trained ``bayes`` is used as it is (its history is empty)."""
    histories = {"bayes": []}
    if bayes is None:
        bayes = target.build(n, seed=seed, dtype=dtype)
        histories["bayes"] = fit(bayes, ds.train, val=ds.val, objective=objective, seed=seed,
                                 **train_kw)
    plain = None
    if vanilla:
        plain = target.build(n, bayesian=False, seed=seed, dtype=dtype)
        histories["vanilla"] = fit(plain, ds.train, val=ds.val, objective=objective, seed=seed,
                                   **train_kw)
    return bayes, plain, histories


def compress_stage(model, target, ids, ds, *, criterion, rule, value, retrain, train_kw,
                   finetune_kw, objective, seed, check_x):
    """One stage: rank, select, remove, fine-tune (or retrain), measure.

    ``ids`` maps the model's current kernels to their index in the original network. Returns
    (smaller model, its ids, the stage record) or (None, ids, record) if nothing was selected.
    """
    t0 = time.perf_counter()
    ranking = rank(model, target.layer, criterion)
    sel = select(ranking, rule, value)
    record = {"criterion": criterion, "rule": rule, "value": value, "cutoff": sel.cutoff,
              "scores": {int(ids[k]): s for k, s in enumerate(sel.scores)},
              "selection_note": sel.note,
              "removed": [int(ids[k]) for k in sel.removed]}
    if not sel.removed:
        return None, ids, record
    norms = np.linalg.norm(unit_means(model[target.layer]), axis=1)
    record["removed_norms"] = [float(norms[k]) for k in sel.removed]
    record["removed_exactly_zero"] = int(sum(norms[k] == 0 for k in sel.removed))
    smaller = remove(model, target.layer, sel.removed)
    change = compare(model, smaller, check_x)
    record["change_on_removal"] = {"max_mean_change": change.max_mean_change,
                                   "max_cov_change": change.max_cov_change,
                                   "relative_cov_change": change.relative_cov_change,
                                   "n_examples": int(len(check_x))}
    record["test_accuracy_before_retraining"] = evaluate(smaller, ds.test)["accuracy"]
    new_ids = [ids[k] for k in sel.kept]
    if retrain == "scratch":
        smaller = target.build(len(new_ids), seed=seed, dtype=model.dtype.type)
        record["history"] = fit(smaller, ds.train, val=ds.val, objective=objective, seed=seed,
                                **train_kw)
    else:
        record["history"] = fit(smaller, ds.train, val=ds.val, objective=objective, seed=seed,
                                **finetune_kw)
    record["retrain"] = retrain
    record["seconds"] = time.perf_counter() - t0
    return smaller, new_ids, record


def pruned_without_retraining(model, target, sizes, test):
    """[(kernels kept, test accuracy)] removing the lowest-norm kernels, no retraining."""
    scores = rank(model, target.layer, "norm").scores
    order = np.argsort(scores, kind="stable")
    N = len(scores)
    points = []
    for k in sizes:
        smaller = model if k == N else remove(model, target.layer, order[:N - k])
        points.append((int(k), evaluate(smaller, test)["accuracy"]))
    return points


def vanilla_retrained(ds, target, sizes, *, objective, train_kw, seed, dtype):
    """[(kernels, test accuracy)] of vanilla networks trained from scratch with ``k`` kernels."""
    points = []
    for k in sizes:
        net = target.build(int(k), bayesian=False, seed=seed, dtype=dtype)
        fit(net, ds.train, objective=objective, seed=seed, **train_kw)
        points.append((int(k), evaluate(net, ds.test)["accuracy"]))
    return points


def size_grid(n, stage_sizes):
    """Kernel counts for the baseline curves: the stages' sizes and fractions of n."""
    grid = {n, *stage_sizes}
    grid |= {max(1, int(round(n * f))) for f in (0.75, 0.5, 0.25, 0.125)}
    return sorted(grid)
