"""``tinybnn compress``: :func:`tinybnn.compress.self_compress` run on a shipped dataset, and
what it returns written to an output folder.

Writes into ``options.out``::

    report.json        every stage (kernels kept, which were removed and their norms, the
                       prediction's change on removal, the training history with every
                       epoch's kernel norms, validation and test metrics, sizes, flops, times),
                       the vanilla twin's stages, the baselines, the stop reason, the options
    report.md          the figures, each with a sentence, and the tables
    trained.npz        the Bayesian network as trained, before any stage (pass it to --model
                       to try other rules without training again; not written with --model)
    model.npz          the compressed Bayesian network (the last accepted stage)
    self_compression.png   kernel norms through training, and test accuracy against kernels
                           kept, Bayesian against vanilla (the README's picture)
    norms.png, kernels.png, variances.png, accuracy_vs_kernels.png
"""

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import compress as C
from .. import data, io, presets
from ..baselines import vanilla_retrained
from ..errors import ConfigError
from ..kernels import threads
from ..prune import CRITERIA, RULES, check_rule
from ..units import NEAR_ZERO, switch_off_counts, trajectory
from .common import (ARCHITECTURES, ScheduleOptions, dataset_field, hidden_sizes, option,
                     prepare_output, validation_field, write_json)
from .report import write_markdown


@dataclass
class CompressOptions(ScheduleOptions):
    """Everything ``tinybnn compress`` needs. The defaults are the README's main job; None means
    "the preset's value"."""

    dataset: str = dataset_field()
    architecture: str = field(default="cnn", metadata=option(
        "cnn: the paper's CNN (its conv kernels are removed); mlp: a VDP MLP (the units of its "
        "first hidden layer are removed)", choices=ARCHITECTURES))
    kernels: int = field(default=32, metadata=option(
        "conv kernels N of the CNN, or units of the MLP's first hidden layer"))
    hidden: str = field(default="", metadata=option(
        "the MLP's further hidden sizes after the pruned layer, comma-separated (none)"))
    subset: int = field(default=0, metadata=option(
        "training images (class-balanced, seeded); 0 for all"))
    validation: float = validation_field(
        "fraction held out for validation, which every decision reads")
    preset: str = field(default="authors2019_quick", metadata=option(
        "training preset (tinybnn/presets.py): authors2019_quick, authors2019, tinybnn, "
        "authors_later, elbo or elbo_beta"))
    retrain: str = field(default="finetune", metadata=option(
        "after a removal: finetune (continue from the pruned weights) or scratch (train a new "
        "network of the smaller size)", choices=("finetune", "scratch")))
    retrain_epochs: int = field(default=1, metadata=option(
        "epochs of fine-tuning after each removal (scratch: the preset's epochs)"))
    criterion: str = field(default="norm", metadata=option(
        "kernel ranking: norm (the paper's), snr, variance or random", choices=CRITERIA))
    rule: str = field(default="threshold", metadata=option(
        "selection rule: threshold (remove the kernels whose norm is below --value; the paper's "
        "1e-3), largest_gap, median_fraction or count", choices=RULES))
    value: float = field(default=NEAR_ZERO, metadata=option("the selection rule's parameter"))
    tolerance: float = field(default=0.005, metadata=option(
        "keep a stage while its validation accuracy is at most this much (a fraction) below "
        "the trained network's"))
    target_kernels: int | None = field(default=None, metadata=option(
        "stop once this many kernels or fewer remain (none)"))
    max_stages: int = field(default=3, metadata=option("at most this many stages"))
    vanilla: bool = field(default=True, metadata=option(
        "also train the vanilla twin (the same data, seed and budget) and prune it the same way"))
    scratch_baselines: bool = field(default=False, metadata=option(
        "also train vanilla networks from scratch at each size of the baseline curves (costly)"))
    model: str | None = field(default=None, metadata=option(
        "start from this trained Bayesian network (a model file) instead of training one"))
    seed: int = field(default=0, metadata=option("seed of every random choice"))
    dtype: str = field(default="float64", metadata=option(
        "float64 or float32", choices=("float64", "float32")))
    out: str = field(default="runs/compress", metadata=option("output folder"))
    progress: bool = field(default=True, metadata=option("show progress bars"))

    def config(self):
        """The TrainConfig: the preset with this run's overrides."""
        return presets.resolve(self.preset, **self.schedule())

    def check(self):
        """Raise a ConfigError naming the first impossible option (before any work)."""
        for name, expected, ok in (
                ("kernels", "an integer >= 1", self.kernels >= 1),
                ("subset", "an integer >= 0", self.subset >= 0),
                ("validation", "a fraction in (0, 1)", 0 < self.validation < 1),
                ("retrain_epochs", "an integer >= 1", self.retrain_epochs >= 1),
                ("max_stages", "an integer >= 0", self.max_stages >= 0),
                ("tolerance", "a fraction in [0, 1)", 0 <= self.tolerance < 1),
                ("target_kernels", "an integer >= 1",
                 self.target_kernels is None or self.target_kernels >= 1)):
            if not ok:
                raise ConfigError(f"{name} must be {expected}, found {getattr(self, name)!r}")
        if self.dataset not in ("mnist", "fashion_mnist", "digits"):
            raise ConfigError(f"compress needs an image dataset (mnist, fashion_mnist, digits), "
                              f"found {self.dataset!r}")
        return self.config()


def compress_run(options, *, log=print):
    """Run self-compression and write its files; returns the report dict."""
    o = options
    config = o.check()
    dtype = np.dtype(o.dtype).type
    ds = data.load(o.dataset, subset=o.subset or None, validation=o.validation, seed=o.seed,
                   dtype=dtype)
    target = C.Target(o.architecture, ds.train.x.shape[1:], len(ds.classes),
                      hidden_sizes(o.hidden) if o.hidden else ())
    start = None
    if o.model:
        start, _ = io.load(o.model)
        target.check(start, o.model)
        start = start.astype(dtype)
    n = target.count(start) if start is not None else o.kernels
    check_rule(o.rule, o.value, n)  # before any training
    if config.batch_size > len(ds.train.y):
        raise ConfigError(f"batch size must be at most the {len(ds.train.y)} training images, "
                          f"found {config.batch_size}")
    out = prepare_output(o.out)
    t0 = time.perf_counter()
    if start is not None:
        log(f"starting from {o.model} ({n} kernels/units), which is not trained again")
    plan = C.Plan(rule=o.rule, value=o.value, criterion=o.criterion, max_stages=o.max_stages,
                  tolerance=o.tolerance, target_kernels=o.target_kernels)
    retrain = (C.finetune(ds, config, epochs=o.retrain_epochs, seed=o.seed, progress=o.progress)
               if o.retrain == "finetune" else
               C.from_scratch(ds, target, config, seed=o.seed, dtype=dtype, progress=o.progress))
    result = C.self_compress(ds, target, config, plan, retrain=retrain,
                             n_kernels=None if start is not None else n, trained=start,
                             vanilla=o.vanilla, seed=o.seed, dtype=dtype, progress=o.progress,
                             timing_x=ds.test.x[:2000], log=log)
    meta = {"options": asdict(o), "config": config.as_dict(), "complete": True}
    if start is None:
        io.save(out / "trained.npz", result.trained,
                dict(meta, history=result.stages[0]["history"],
                     start_units=result.stages[0]["start_units"]))
    io.save(out / "model.npz", result.model,
            dict(meta, kernel_ids=result.kernel_ids, stop_reason=result.stop_reason))
    if o.scratch_baselines and result.vanilla is not None:
        sizes = sorted(k for k, _ in result.baselines["vanilla, pruned by norm, no retraining"])
        log(f"vanilla networks trained from scratch at sizes {sizes}")
        result.baselines["vanilla, retrained from scratch at each size"] = vanilla_retrained(
            ds, target, config, sizes, seed=o.seed, dtype=dtype, progress=o.progress)
    report = make_report(result, target, ds, o, config, time.perf_counter() - t0)
    report["plots"] = draw(result, target, report, out)
    write_json(out / "report.json", report)
    write_markdown(out / "report.md", report)
    return report


def make_report(result, target, ds, o, config, seconds):
    """The JSON-able report of a CompressResult."""
    s0 = result.stages[0]
    layer = target.layer
    return {
        "architecture": o.architecture, "pruned_layer": layer, "dataset": o.dataset,
        "preset": o.preset, "seed": o.seed, "options": asdict(o), "config": config.as_dict(),
        "near_zero": NEAR_ZERO, "n_train": len(ds.train.y), "n_val": len(ds.val.y),
        "n_test": len(ds.test.y), "start_kernels": s0["kernels"],
        "final_kernels": len(result.kernel_ids), "final_kernel_ids": result.kernel_ids,
        "start_test_accuracy": s0["test_accuracy"],
        "final_test_accuracy": result.accepted[-1]["test_accuracy"],
        "switched_off_by_epoch": switch_off_counts(s0["history"], layer),
        "stop_reason": result.stop_reason, "stages": result.stages,
        "baselines": {label: [[k, a] for k, a in pts] for label, pts in result.baselines.items()},
        "threads": threads.thread_counts(), "seconds": seconds,
    }


def draw(result, target, report, out):
    """The report's figures, written beside it; returns {name: file name}."""
    from .. import plots

    s0 = result.stages[0]
    epochs, norms = trajectory(result.accepted, target.layer)
    vnorms = s0["vanilla"]["kernel_norms"] if "vanilla" in s0 else None
    removed = [i for r in result.accepted[1:] for i in r["removed"]]
    layer = result.trained[target.layer]
    what = "kernel" if target.kind == "cnn" else "unit"
    images = (layer.params["M"][:, 0] if target.kind == "cnn" else
              layer.params["M"].T.reshape(-1, *target.input_shape[-2:])
              if len(target.input_shape) > 1 else layer.params["M"].T[:, None, :])
    figures = {
        "self_compression": plots.self_compression(epochs, norms, report["baselines"],
                                                   NEAR_ZERO, vnorms, len(s0["history"])),
        "norms": plots.kernel_norms(s0["kernel_norms"], vnorms, NEAR_ZERO, removed,
                                    f"Sorted {what} norms after training"),
        "kernels": plots.kernel_grid(images, removed, None, f"The trained {what} means",
                                     limit=40, norms=np.asarray(s0["kernel_norms"])),
        "variances": plots.variance_histogram(layer.s, f"{what.capitalize()} variances after "
                                              "training"),
        "accuracy_vs_kernels": plots.accuracy_vs_kernels(report["baselines"]),
    }
    return {name: plots.save(fig, out / f"{name}.png").name for name, fig in figures.items()}
