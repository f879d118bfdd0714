"""Self-compression, step by step: tinybnn's main job (``tinybnn compress``).

1. **Train** (or load) a Bayesian paper CNN and, with the same data, seed and budget, a vanilla
   one (:func:`train_pair`).
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

import numpy as np

from . import io
from .cost import forward_flops
from .evaluate import evaluate, predict
from .model import paper_cnn
from .prune import compare, rank, remove, select
from .runs import n_kernels
from .train import fit


def inference_ms(model, x, repeats=5):
    """Median wall time (ms) of ``predict`` on ``x``, per 100 examples, after one warm-up."""
    predict(model, x[:10])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(model, x)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)) * 100 / len(x)


def measure(model, test, *, timing_x=None):
    """The figures recorded at every stage, as a dict."""
    m = evaluate(model, test)
    out = {
        "kernels": n_kernels(model),
        "n_parameters": model.n_parameters(),
        "model_bytes": io.file_size(model),
        "flops_per_example": forward_flops(model)["total"],
        "test_accuracy": m["accuracy"], "test_nll": m["nll"], "test_log_loss": m["log_loss"],
        "test_mean_predictive_variance": m["mean_predictive_variance"],
    }
    if timing_x is not None:
        out["inference_ms_per_100"] = inference_ms(model, timing_x)
    return out


def train_pair(ds, *, n_kernels_, objective, train_kw, seed, dtype, vanilla=True, bayes=None):
    """A Bayesian and (optionally) a vanilla paper CNN trained on the same data, seed and
    budget; returns (bayes, vanilla or None, {"bayes": history, "vanilla": history}).
    A given trained ``bayes`` is used as it is (its history is empty)."""
    shape, K = ds.train.x.shape[1:], len(ds.classes)
    histories = {"bayes": []}
    if bayes is None:
        bayes = paper_cnn(n_kernels_, input_shape=shape, n_classes=K, seed=seed, dtype=dtype)
        histories["bayes"] = fit(bayes, ds.train, val=ds.val, objective=objective, seed=seed,
                                 **train_kw)
    plain = None
    if vanilla:
        plain = paper_cnn(n_kernels_, bayesian=False, input_shape=shape, n_classes=K, seed=seed,
                          dtype=dtype)
        histories["vanilla"] = fit(plain, ds.train, val=ds.val, objective=objective, seed=seed,
                                   **train_kw)
    return bayes, plain, histories


def compress_stage(model, ids, ds, *, criterion, rule, value, retrain, train_kw, finetune_kw,
                   objective, seed, check_x):
    """One stage: rank, select, remove, fine-tune (or retrain), measure.

    ``ids`` maps the model's current kernels to their index in the original network. Returns
    (smaller model, its ids, the stage record) or (None, ids, record) if nothing was selected.
    """
    t0 = time.perf_counter()
    ranking = rank(model, "conv", criterion)
    sel = select(ranking, rule, value)
    record = {"criterion": criterion, "rule": rule, "value": value, "cutoff": sel.cutoff,
              "scores": {int(ids[k]): s for k, s in enumerate(sel.scores)},
              "selection_note": sel.note,
              "removed": [int(ids[k]) for k in sel.removed]}
    if not sel.removed:
        return None, ids, record
    norms = np.linalg.norm(model.params["conv.M"].reshape(len(ids), -1), axis=1)
    record["removed_norms"] = [float(norms[k]) for k in sel.removed]
    record["removed_exactly_zero"] = int(sum(norms[k] == 0 for k in sel.removed))
    smaller = remove(model, "conv", sel.removed)
    change = compare(model, smaller, check_x)
    record["change_on_removal"] = {"max_mean_change": change.max_mean_change,
                                   "max_cov_change": change.max_cov_change,
                                   "relative_cov_change": change.relative_cov_change,
                                   "n_examples": int(len(check_x))}
    record["test_accuracy_before_retraining"] = evaluate(smaller, ds.test)["accuracy"]
    new_ids = [ids[k] for k in sel.kept]
    if retrain == "scratch":
        smaller = paper_cnn(len(new_ids), input_shape=model.input_shape,
                            n_classes=model["fc"].d_out, seed=seed, dtype=model.dtype.type)
        record["history"] = fit(smaller, ds.train, val=ds.val, objective=objective, seed=seed,
                                **train_kw)
    else:
        record["history"] = fit(smaller, ds.train, val=ds.val, objective=objective, seed=seed,
                                **finetune_kw)
    record["retrain"] = retrain
    record["seconds"] = time.perf_counter() - t0
    return smaller, new_ids, record


def pruned_without_retraining(model, sizes, test):
    """[(kernels kept, test accuracy)] removing the lowest-norm kernels, no retraining."""
    scores = rank(model, "conv", "norm").scores
    order = np.argsort(scores, kind="stable")
    N = len(scores)
    points = []
    for k in sizes:
        smaller = model if k == N else remove(model, "conv", order[:N - k])
        points.append((int(k), evaluate(smaller, test)["accuracy"]))
    return points


def vanilla_retrained(ds, sizes, *, objective, train_kw, seed, dtype):
    """[(kernels, test accuracy)] of vanilla CNNs trained from scratch with ``k`` kernels."""
    shape, K = ds.train.x.shape[1:], len(ds.classes)
    points = []
    for k in sizes:
        net = paper_cnn(int(k), bayesian=False, input_shape=shape, n_classes=K, seed=seed,
                        dtype=dtype)
        fit(net, ds.train, objective=objective, seed=seed, **train_kw)
        points.append((int(k), evaluate(net, ds.test)["accuracy"]))
    return points


def size_grid(n, stage_sizes):
    """Kernel counts for the baseline curves: the stages' sizes and fractions of n."""
    grid = {n, *stage_sizes}
    grid |= {max(1, int(round(n * f))) for f in (0.75, 0.5, 0.25, 0.125)}
    return sorted(grid)
