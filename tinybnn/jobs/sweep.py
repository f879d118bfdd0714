"""The paper's experiment: Bayesian and vanilla CNNs over a grid of kernel counts, datasets,
presets and seeds, run in parallel with joblib.

Every run is independent: it trains one network with :func:`tinybnn.jobs.train.train_run` into its own
folder ``out/runs/<dataset>-<preset>-<kind>-N<k>-seed<s>/`` and is skipped when that folder
already holds a complete ``metrics.json`` (so an interrupted sweep resumes where it stopped).
Each run also counts its near-zero kernels (``||M_k||_F < zero_threshold``). The results go to
``out/sweep.json`` and three figures: test accuracy against N (mean and spread over seeds),
near-zero kernels against N, and, when several presets are swept, near-zero kernels by preset.

Parallelism: ``n_jobs`` worker processes (joblib's loky backend); each worker limits BLAS and
numba to ``cores // n_jobs`` threads so that the runs do not oversubscribe the machine (two
processes with a thread pool each on two cores slow each other 4-10x); each run's
metrics.json records the thread counts it had.
"""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import io
from ..errors import ConfigError
from .common import option, prepare_output, write_json
from .train import TrainOptions, train_run


@dataclass
class SweepOptions:
    """Options of ``tinybnn sweep``. Lists are comma-separated on the command line."""

    kernels: str = field(default="10,20,32,50,100", metadata=option("kernel counts N"))
    datasets: str = field(default="mnist,fashion_mnist", metadata=option("datasets"))
    presets: str = field(default="authors2019", metadata=option(
        "training presets (several: compare how many near-zero kernels each produces)"))
    seeds: str = field(default="0,1,2", metadata=option("seeds"))
    vanilla: bool = field(default=True, metadata=option("also train the vanilla networks"))
    subset: int | None = field(default=None, metadata=option("training images per run (all)"))
    epochs: int | None = field(default=None, metadata=option("epochs per run (the preset's)"))
    batch_size: int | None = field(default=None, metadata=option("batch size (the preset's)"))
    lr: float | None = field(default=None, metadata=option("initial learning rate (the preset's)"))
    final_lr: float | None = field(default=None, metadata=option("final learning rate"))
    zero_threshold: float = field(default=1e-3, metadata=option(
        "a kernel counts as near-zero when ||M_k||_F is below this"))
    n_jobs: int = field(default=2, metadata=option("runs in parallel (processes)"))
    dtype: str = field(default="float32", metadata=option(
        "float64 or float32", choices=("float64", "float32")))
    out: str = field(default="runs/sweep", metadata=option("output folder"))


def _list(text, cast, what):
    try:
        values = [cast(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise ConfigError(f"{what} must be a comma-separated list, found {text!r}")
    return values


def plan(o):
    """The TrainOptions of every run of the sweep, in a fixed order."""
    kernels = _list(o.kernels, int, "kernels")
    if min(kernels) < 1:
        raise ConfigError(f"kernel counts must be >= 1, found {kernels}")
    if o.n_jobs < 1:
        raise ConfigError(f"n_jobs must be >= 1, found {o.n_jobs}")
    runs = []
    for dataset in _list(o.datasets, str, "datasets"):
        for preset in _list(o.presets, str, "presets"):
            for n in kernels:
                for seed in _list(o.seeds, int, "seeds"):
                    for vanilla in ([False, True] if o.vanilla else [False]):
                        name = (f"{dataset}-{preset}-{'vanilla' if vanilla else 'bayes'}-N{n}"
                                f"-seed{seed}")
                        runs.append(TrainOptions(
                            model="cnn", kernels=n, vanilla=vanilla, dataset=dataset,
                            subset=o.subset, preset=preset, epochs=o.epochs,
                            batch_size=o.batch_size, lr=o.lr, final_lr=o.final_lr, seed=seed,
                            dtype=o.dtype, out=str(Path(o.out) / "runs" / name),
                            progress=False).resolved())
    return runs


def near_zero_kernels(model_path, threshold):
    """Number of kernels of the model's conv layer with ||M_k||_F < threshold, and all norms."""
    model, _ = io.load(model_path)
    M = model.params["conv.M"]
    norms = np.linalg.norm(M.reshape(M.shape[0], -1), axis=1)
    return int((norms < threshold).sum()), [float(v) for v in norms]


def run_one(options, zero_threshold, threads):
    """Train one run (or reuse a finished one) with ``threads`` numba and BLAS threads; returns
    its result row."""
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    folder = Path(options.out)
    done = folder / "metrics.json"
    if done.is_file():
        metrics = json.loads(done.read_text())
    else:
        with threadpool_limits(limits=threads, user_api="blas"):  # metrics.json records them
            metrics = train_run(options)
    zeros, norms = near_zero_kernels(folder / "model.npz", zero_threshold)
    return {"dataset": options.dataset, "preset": options.preset, "kernels": options.kernels,
            "seed": options.seed, "bayesian": not options.vanilla,
            "test_accuracy": metrics["test_accuracy"], "near_zero_kernels": zeros,
            "kernel_norms": norms, "seconds": metrics.get("seconds"), "folder": str(folder)}


def sweep(options, *, progress=True):
    """Run every planned run (in parallel) and write sweep.json and the figures."""
    runs = plan(options)
    out = prepare_output(options.out)
    from joblib import Parallel, delayed

    threads = max(1, (os.cpu_count() or 1) // options.n_jobs)
    rows = Parallel(n_jobs=options.n_jobs, verbose=10 if progress else 0)(
        delayed(run_one)(r, options.zero_threshold, threads) for r in runs)
    result = {"options": asdict(options), "runs": rows, "summary": summarise(rows)}
    write_json(out / "sweep.json", result)
    from .. import plots

    plots.save(plots.sweep_accuracy(rows), out / "accuracy_vs_kernels.png")
    plots.save(plots.sweep_zeros(rows, options.zero_threshold), out / "near_zero_kernels.png")
    return result


def summarise(rows):
    """Mean and standard deviation over seeds of accuracy and near-zero kernels per setting."""
    groups = {}
    for r in rows:
        key = (r["dataset"], r["preset"], r["bayesian"], r["kernels"])
        groups.setdefault(key, []).append(r)
    out = []
    for (dataset, preset, bayesian, n), rs in sorted(groups.items()):
        acc = np.array([r["test_accuracy"] for r in rs])
        zeros = np.array([r["near_zero_kernels"] for r in rs])
        out.append({"dataset": dataset, "preset": preset, "bayesian": bayesian, "kernels": n,
                    "seeds": len(rs), "test_accuracy_mean": float(acc.mean()),
                    "test_accuracy_std": float(acc.std()),
                    "near_zero_kernels_mean": float(zeros.mean()),
                    "near_zero_kernels_std": float(zeros.std())})
    return out
