"""``tinybnn compress``: the steps of :mod:`tinybnn.compress` wired to an output folder.

Writes into ``options.out``::

    report.json        every stage (kernels kept, which were removed, criterion values, the
                       prediction change on removal, accuracy, parameters, bytes, flops, times),
                       the stopping reason, the baselines, the options, preset and seed
    report.md          the plots, each with one sentence on what it shows, and a summary table
    model.npz          the compressed Bayesian model (the last accepted stage)
    trained.npz        the Bayesian model as trained, before any stage (not written when it
                       came from --model): pass it to --model to try other rules without
                       training again
    stage<k>_norms.png, stage<k>_kernels.png, stage<k>_variances.png     at every stage
    stages.png, accuracy_vs_kernels.png                                  after the run
"""

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import compress as C
from . import data, io, plots, presets
from .errors import ConfigError
from .prune import CRITERIA, RULES, check_rule, rank, select, unit_means
from .report import write_markdown
from .runs import hidden_sizes, option, prepare_output, write_json


@dataclass
class CompressOptions:
    """Everything ``tinybnn compress`` needs. The defaults are the README's quick main job."""

    dataset: str = field(default="mnist", metadata=option("dataset: mnist or fashion_mnist"))
    architecture: str = field(default="cnn", metadata=option(
        "cnn: the paper's CNN (its conv kernels are removed); mlp: a VDP MLP (the units of its "
        "first hidden layer are removed)", choices=("cnn", "mlp")))
    kernels: int = field(default=32, metadata=option(
        "conv kernels N of the CNN, or units of the MLP's first hidden layer"))
    hidden: str = field(default="", metadata=option(
        "the MLP's further hidden sizes after the pruned layer, comma-separated (none)"))
    subset: int | None = field(default=20000, metadata=option(
        "training images (class-balanced, seeded); 0 for all"))
    validation: float = field(default=1 / 12, metadata=option("fraction held out for validation"))
    preset: str = field(default="tinybnn", metadata=option(
        "training preset: tinybnn, authors2019, authors_later, elbo or elbo_beta "
        "(tinybnn/presets.py)"))
    epochs: int | None = field(default=3, metadata=option(
        "epochs of the initial training (0 or less: the preset's)"))
    batch_size: int | None = field(default=None, metadata=option("minibatch size"))
    lr: float | None = field(default=None, metadata=option("initial learning rate"))
    final_lr: float | None = field(default=None, metadata=option(
        "learning rate at the end of the initial training (exponential decay); fine-tuning "
        "runs at this rate"))
    rho_init: str | None = field(default=None, metadata=option(
        "initial rho drawn from U[low, high]: write --rho-init=low,high"))
    finetune_epochs: int = field(default=1, metadata=option("epochs of fine-tuning per stage"))
    criterion: str = field(default="norm", metadata=option(
        "kernel ranking: norm, snr, variance or random", choices=CRITERIA))
    rule: str = field(default="median_fraction", metadata=option(
        "selection rule: threshold (the paper's, with --value 1e-3), median_fraction, "
        "largest_gap or count", choices=RULES))
    value: float = field(default=0.75, metadata=option("the selection rule's parameter"))
    retrain: str = field(default="finetune", metadata=option(
        "after removal: finetune (continue from the weights) or scratch",
        choices=("finetune", "scratch")))
    tolerance: float = field(default=0.005, metadata=option(
        "stop when test accuracy falls more than this (a fraction) below the start"))
    target_kernels: int | None = field(default=None, metadata=option(
        "stop once this many kernels or fewer remain"))
    max_stages: int = field(default=3, metadata=option("at most this many stages"))
    baselines: bool = field(default=True, metadata=option(
        "also train the vanilla network and measure the baselines"))
    model: str | None = field(default=None, metadata=option(
        "start from this trained Bayesian paper CNN (a model file) instead of training one"))
    seed: int = field(default=0, metadata=option("seed of every random choice"))
    dtype: str = field(default="float64", metadata=option(
        "float64 or float32", choices=("float64", "float32")))
    out: str = field(default="runs/compress", metadata=option("output folder"))
    progress: bool = field(default=True, metadata=option("show progress bars"))

    def checked(self):
        p = presets.get(self.preset)
        o = CompressOptions(**asdict(self))
        o.epochs = p.epochs if o.epochs is None or o.epochs <= 0 else o.epochs
        o.batch_size = p.batch_size if o.batch_size is None else o.batch_size
        o.lr = p.lr if o.lr is None else o.lr
        o.final_lr = p.final_lr if o.final_lr is None else o.final_lr
        o.rho_init = ",".join(f"{v:g}" for v in presets.rho_range(o.rho_init, o.preset))
        o.subset = None if not o.subset else o.subset
        for name, expected, ok in (
                ("kernels", "an integer >= 1", o.kernels >= 1),
                ("batch_size", "an integer >= 1", o.batch_size >= 1),
                ("epochs", "an integer >= 1", o.epochs >= 1),
                ("finetune_epochs", "an integer >= 0", o.finetune_epochs >= 0),
                ("max_stages", "an integer >= 0", o.max_stages >= 0),
                ("lr", "a positive number", o.lr > 0),
                ("final_lr", "a positive number", o.final_lr is None or o.final_lr > 0),
                ("tolerance", "a fraction in [0, 1)", 0 <= o.tolerance < 1),
                ("target_kernels", "an integer >= 1",
                 o.target_kernels is None or o.target_kernels >= 1)):
            if not ok:
                raise ConfigError(f"{name} must be {expected}, found {getattr(o, name)!r}")
        if o.dataset not in ("mnist", "fashion_mnist", "digits"):
            raise ConfigError(f"compress needs an image dataset (mnist, fashion_mnist, digits), "
                              f"found {o.dataset!r}")
        return o


def unit_images(model, target):
    """One image per kernel (unit) of the pruned layer: a conv kernel's first input channel,
    or an MLP unit's incoming weights shaped like the input image."""
    layer = model[target.layer]
    if target.kind == "cnn":
        return layer.params["M"][:, 0]
    C, H, W = target.input_shape if len(target.input_shape) == 3 else (1, 1, target.input_shape[0])
    return layer.params["M"].T.reshape(-1, C, H, W)[:, 0]


def _stage_plots(out, k, model, target, ids, vanilla, record, title):
    norms = np.linalg.norm(unit_means(model[target.layer]), axis=1)
    removed_pos = [ids.index(i) for i in record.get("removed", [])]
    vnorms = None if vanilla is None else rank(vanilla, target.layer, "norm").scores
    what = "kernel" if target.kind == "cnn" else "unit"
    files = {
        "norms": plots.kernel_norms(norms, vnorms, record.get("cutoff"), removed_pos,
                                    f"{title}: sorted {what} norms"),
        "kernels": plots.kernel_grid(unit_images(model, target), removed_pos, ids,
                                     f"{title}: {what} means", limit=40, norms=norms),
        "variances": plots.variance_histogram(model[target.layer].s,
                                              f"{title}: {what} variances"),
    }
    return {name: plots.save(fig, out / f"stage{k}_{name}.png").name for name, fig in files.items()}


def compress_run(options, *, log=print):
    """Run the whole procedure; returns the report dict (also written to report.json)."""
    o = options.checked()
    dtype = np.dtype(o.dtype).type
    ds = data.load(o.dataset, subset=o.subset, validation=o.validation, seed=o.seed, dtype=dtype)
    rest = hidden_sizes(o.hidden) if o.hidden else ()
    target = C.Target(o.architecture, ds.train.x.shape[1:], len(ds.classes), rest,
                      presets.rho_range(o.rho_init, o.preset))
    start_model = None
    if o.model:
        start_model, _ = io.load(o.model)
        target.check(start_model, o.model)
        start_model = start_model.astype(dtype)
        o.kernels = target.count(start_model)
    check_rule(o.rule, o.value, o.kernels)  # before any training
    if o.batch_size > len(ds.train.y):
        raise ConfigError(f"batch size must be at most the {len(ds.train.y)} training images, "
                          f"found {o.batch_size}")
    out = prepare_output(o.out)
    t_start = time.perf_counter()
    preset = presets.get(o.preset)
    objective = preset.objective(len(ds.train.y))
    train_kw = dict(epochs=o.epochs, batch_size=o.batch_size, lr=o.lr, final_lr=o.final_lr,
                    progress=o.progress)
    finetune_kw = dict(train_kw, epochs=o.finetune_epochs, lr=o.final_lr or o.lr, final_lr=None)
    trained = [w for w, on in (("Bayesian", start_model is None), ("vanilla", o.baselines)) if on]
    log(f"training the {' and the '.join(trained)} {o.architecture} with {o.kernels} "
        f"kernels/units on {len(ds.train.y)} {o.dataset} images ({o.epochs} epochs)" if trained
        else f"starting from {o.model} ({o.kernels} kernels/units); no baselines")
    bayes, vanilla, histories = C.train_pair(ds, target, o.kernels, objective=objective,
                                             train_kw=train_kw, seed=o.seed, dtype=dtype,
                                             vanilla=o.baselines, bayes=start_model)
    if start_model is None:
        io.save(out / "trained.npz", bayes,
                {"options": asdict(o), "preset": preset.as_dict(),
                 "history": histories["bayes"], "complete": True})
    preview = select(rank(bayes, target.layer, o.criterion), o.rule, o.value)  # fails early
    timing_x = ds.test.x[:500]
    check_x = (ds.val if ds.val is not None else ds.test).x[:500]
    ids = list(range(o.kernels))
    stage0 = dict(stage=0, **C.measure(bayes, target, ds.test, timing_x=timing_x),
                  history=histories["bayes"])
    if vanilla is not None:
        stage0["vanilla"] = C.measure(vanilla, target, ds.test, timing_x=timing_x)
    stage0["plots"] = _stage_plots(out, 0, bayes, target, ids, vanilla,
                                   {"cutoff": preview.cutoff, "removed": preview.removed},
                                   "Stage 0 (trained)")
    stage_rows, current, stop = [stage0], bayes, None
    start_acc = stage0["test_accuracy"]
    log(f"stage 0: {o.kernels} kernels, test accuracy {start_acc:.4f}")
    for k in range(1, o.max_stages + 1):
        if o.target_kernels is not None and len(ids) <= o.target_kernels:
            stop = f"target size reached ({len(ids)} <= {o.target_kernels} kernels)"
            break
        smaller, new_ids, record = C.compress_stage(
            current, target, ids, ds, criterion=o.criterion, rule=o.rule, value=o.value,
            retrain=o.retrain, train_kw=train_kw, finetune_kw=finetune_kw,
            objective=objective, seed=o.seed, check_x=check_x)
        if smaller is None:
            stop = f"no kernel selected by {o.rule} (value {o.value}) at stage {k}"
            break
        record.update(stage=k, **C.measure(smaller, target, ds.test, timing_x=timing_x))
        record["plots"] = _stage_plots(out, k, smaller, target, new_ids, None, {"cutoff": None},
                                       f"Stage {k} ({len(new_ids)} kernels)")
        accepted = record["test_accuracy"] >= start_acc - o.tolerance
        record["accepted"] = accepted
        stage_rows.append(record)
        log(f"stage {k}: removed {len(record['removed'])}, {len(new_ids)} kernels left, test "
            f"accuracy {record['test_accuracy']:.4f}{'' if accepted else ' (rejected)'}")
        if not accepted:
            stop = (f"accuracy fell more than {o.tolerance:.3f} below the start "
                    f"({record['test_accuracy']:.4f} < {start_acc:.4f} - {o.tolerance})")
            break
        current, ids = smaller, new_ids
    else:
        stop = f"max_stages ({o.max_stages}) reached"
    if stop is None:
        stop = "stopped"
    log(f"stopped: {stop}")
    io.save(out / "model.npz", current,
            {"options": asdict(o), "preset": preset.as_dict(),
             "kernel_ids": ids, "stop_reason": stop, "complete": True})
    accepted_rows = [r for r in stage_rows if r.get("accepted", True)]
    curves = {"Bayesian, self-compression":
              [(r["kernels"], r["test_accuracy"]) for r in accepted_rows]}
    if o.baselines:
        sizes = C.size_grid(o.kernels, [r["kernels"] for r in accepted_rows])
        log(f"baselines at sizes {sizes}: pruning without retraining, vanilla retrained")
        prune = C.pruned_without_retraining
        curves["Bayesian, pruned by norm, no retraining"] = prune(bayes, target, sizes, ds.test)
        curves["vanilla, pruned by weight norm, no retraining"] = prune(vanilla, target, sizes,
                                                                         ds.test)
        curves["vanilla, retrained at each size"] = C.vanilla_retrained(
            ds, target, [s for s in sizes if s != o.kernels], objective=objective,
            train_kw=train_kw, seed=o.seed, dtype=dtype) + [
            (o.kernels, stage0["vanilla"]["test_accuracy"])]
    final_plots = {
        "stages": plots.save(plots.stages(accepted_rows), out / "stages.png").name,
        "accuracy_vs_kernels": plots.save(plots.accuracy_vs_kernels(curves),
                                          out / "accuracy_vs_kernels.png").name,
    }
    report = {
        "architecture": o.architecture, "pruned_layer": target.layer, "dataset": o.dataset,
        "preset": o.preset, "seed": o.seed, "options": asdict(o),
        "n_train": len(ds.train.y), "n_test": len(ds.test.y),
        "start_kernels": o.kernels, "final_kernels": len(ids), "final_kernel_ids": ids,
        "start_test_accuracy": start_acc,
        "final_test_accuracy": accepted_rows[-1]["test_accuracy"],
        "stop_reason": stop, "stages": stage_rows,
        "baselines": {label: [[k, a] for k, a in pts] for label, pts in curves.items()},
        "plots": final_plots, "seconds": time.perf_counter() - t_start,
    }
    write_json(out / "report.json", report)
    write_markdown(out / "report.md", report)
    return report
