"""The curves self-compression is compared with: test accuracy against the number of kernels kept.

:func:`baselines` collects them for a :class:`tinybnn.compress.CompressResult`: its accepted
stages, the vanilla twin pruned and retrained like them, and both trained networks pruned by
kernel norm **without retraining** to the stages' sizes and a grid of others
(:func:`size_grid`). :func:`vanilla_retrained` adds, at a cost, vanilla networks trained from
scratch at each size. They only measure: no choice of the procedure reads them.
"""

import numpy as np

from .evaluate import evaluate
from .prune import rank, remove
from .train import fit


def baselines(result, target, ds):
    """{label: [(kernels, test accuracy)]}: the accepted stages, the vanilla twin pruned and
    retrained like them, and both trained networks pruned by norm without retraining to the
    stages' sizes and a grid of other sizes."""
    n = target.count(result.trained)
    accepted = result.accepted
    sizes = size_grid(n, [r["kernels"] for r in accepted])
    curves = {"Bayesian, self-compression":
              [(r["kernels"], r["test_accuracy"]) for r in accepted],
              "Bayesian, pruned by norm, no retraining":
              pruned_without_retraining(result.trained, target, sizes, ds.test)}
    if result.vanilla is not None:
        curves["vanilla, pruned by norm, no retraining"] = pruned_without_retraining(
            result.vanilla, target, sizes, ds.test)
        curves["vanilla, pruned and retrained like the Bayesian"] = [
            (n, result.stages[0]["vanilla"]["test_accuracy"])] + [
            (r["vanilla"]["kernels"], r["vanilla"]["test_accuracy"])
            for r in result.stages[1:] if "vanilla" in r]
    return curves


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


def vanilla_retrained(ds, target, config, sizes, *, seed=0, dtype=np.float64, progress=False):
    """[(kernels, test accuracy)] of vanilla networks trained from scratch with ``k`` kernels,
    with the config's whole budget (an optional, costly baseline)."""
    points = []
    for k in sizes:
        net = target.build(int(k), config, bayesian=False, seed=seed, dtype=dtype)
        fit(net, ds.train, **config.fit_kwargs(len(ds.train.y), seed=seed, progress=progress))
        points.append((int(k), evaluate(net, ds.test)["accuracy"]))
    return points


def size_grid(n, stage_sizes):
    """Kernel counts for the baseline curves: the stages' sizes, n minus one to four, and
    fractions of n."""
    grid = {n, *stage_sizes, *(n - k for k in range(1, 5) if n - k >= 1)}
    grid |= {max(1, int(round(n * f))) for f in (0.75, 0.5, 0.25, 0.125)}
    return sorted(grid)
