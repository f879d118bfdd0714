"""The training job behind ``tinybnn train`` and ``tinybnn evaluate``, callable from Python.

``TrainOptions`` is a commented dataclass; the command line derives one ``--option`` per field
(``tinybnn/cli.py``), so the two never disagree. ``train_run(options)`` loads the data, builds
the network, trains it with checkpoints, evaluates it on the test split and writes into
``options.out``::

    model.npz             the model (architecture, parameters, options, metrics, history);
                          rewritten atomically after every epoch (and every
                          ``checkpoint_every`` updates), so it is always loadable; until the
                          run finishes it holds the training state too (tinybnn.io), and
                          ``resume`` continues from it: ``tinybnn train --resume OUT``
    metrics.json          test_accuracy (a fraction), n_kernels, n_parameters, epochs, seconds,
                          seed, preset, dataset, and more (see ``run_metrics``)
    learning_curves.png   accuracy, data term and regulariser per epoch
    kernel_norms.png      every kernel's (unit's) mean norm against epoch, on a log axis

A resumed run takes every option from the checkpoint (but ``progress``) and ends with the files
of a run that was never interrupted: the same parameters, metrics and history, but for the times
(tinybnn.checkpoints says why). Ctrl-C raises :class:`tinybnn.checkpoints.Interrupted`, whose
message names the last checkpoint and the command that resumes it.
"""

import dataclasses
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import data, io, presets
from ..architectures import mlp, paper_cnn
from ..checkpoints import Interrupted
from ..errors import ConfigError
from ..evaluate import evaluate
from ..kernels import threads
from ..train import fit
from ..units import (NEAR_ZERO, n_units, prunable_layers, switched_off, trajectory,
                    unit_record)
from .common import (ARCHITECTURES, ScheduleOptions, dataset_field, hidden_sizes, option,
                     prepare_output, validation_field, write_json)


@dataclass
class TrainOptions(ScheduleOptions):
    """Everything ``tinybnn train`` needs (the schedule's options first). None means "the
    preset's value"."""

    model: str = field(default="cnn", metadata=option(
        "network: 'cnn' (the paper's conv-relu-pool-fc CNN) or 'mlp'", choices=ARCHITECTURES))
    kernels: int = field(default=32, metadata=option("number of conv kernels N of the CNN"))
    hidden: str = field(default="400", metadata=option(
        "hidden layer sizes of the MLP, comma-separated (e.g. 400,400)"))
    relu: str = field(default="first_order", metadata=option(
        "the MLP's ReLU: first_order (the paper's linearisation) or exact (rectified-Gaussian "
        "moments; tinybnn/layers/relu_exact.py); the CNN has only the first-order one",
        choices=("first_order", "exact")))
    vanilla: bool = field(default=False, metadata=option(
        "train the deterministic network with cross-entropy instead of the Bayesian one"))
    dataset: str = dataset_field()
    subset: int | None = field(default=None, metadata=option(
        "use only this many training images (class-balanced, seeded) for a quick run"))
    validation: float = validation_field(
        "fraction of the training images held out for validation (default 1/12: 5,000 of "
        "MNIST's 60,000, as the authors)")
    preset: str = field(default="tinybnn", metadata=option(
        "training preset: tinybnn, authors2019, authors_later, elbo or elbo_beta "
        "(tinybnn/presets.py)"))
    rho_rate: float = field(default=1.0, metadata=option(
        "the variance parameters' learning rate as a multiple of the means' (1: the same)"))
    nll_beta: float | None = field(default=None, metadata=option(
        "beta of the beta-NLL data term: 0 is the plain Gaussian NLL, 0.5 or 1 weight each "
        "example by its variance (tinybnn/losses.py) (default: the preset's)"))
    seed: int = field(default=0, metadata=option("seed of every random choice"))
    dtype: str = field(default="float64", metadata=option(
        "float64 or float32 (float32 is faster; gradient checks stay in float64)",
        choices=("float64", "float32")))
    out: str = field(default="runs/train", metadata=option("output folder"))
    checkpoint_every: int = field(default=0, metadata=option(
        "also save the checkpoint OUT/model.npz every this many updates inside an epoch, so "
        "that a long one-image-per-update run stopped by Ctrl-C or a kill loses at most that "
        "many (0: only at the end of each epoch). A save of the paper's CNN (N = 32) takes "
        "about 60 ms, the time of 50 one-image updates: every 10000 updates costs about half "
        "a percent"))
    resume: str | None = field(default=None, metadata=option(
        "continue the interrupted run in this output folder from its last checkpoint, with "
        "its options (give no other option but --progress/--no-progress); it ends with "
        "exactly the numbers of a run that was never interrupted"))
    progress: bool = field(default=True, metadata=option("show progress bars"))

    def config(self):
        """The TrainConfig: the preset with this run's overrides (tinybnn.presets.resolve)."""
        return presets.resolve(self.preset, **self.schedule(), nll_beta=self.nll_beta,
                               rho_rate=self.rho_rate)

    def resolved(self):
        """The options with the preset's defaults filled in, checked; a new TrainOptions."""
        c = self.config()
        o = TrainOptions(**asdict(self))
        o.epochs, o.batch_size, o.lr, o.final_lr = c.epochs, c.batch_size, c.lr, c.final_lr
        o.nll_beta, o.reg_scale = c.nll_beta, c.reg_scale
        o.last_variance = c.last_variance or 0.0  # 0: drawn like the others (so that resolving
        # the resolved options again gives the same run)
        o.rho_init = ",".join(f"{v:g}" for v in c.rho_init)
        _check(o)
        return o


def _check(o):
    """The checks of the options that are not training settings (tinybnn.presets.check)."""
    for ok, what, found in (
            (o.model in ARCHITECTURES, "model must be 'cnn' or 'mlp'", o.model),
            (isinstance(o.kernels, int) and o.kernels >= 1, "kernels must be an integer >= 1",
             o.kernels),
            (0 <= o.validation < 1, "validation must be a fraction in [0, 1)", o.validation),
            (isinstance(o.checkpoint_every, int) and o.checkpoint_every >= 0,
             "checkpoint every must be an integer >= 0 (updates; 0: at the ends of epochs)",
             o.checkpoint_every),
            (o.dtype in ("float64", "float32"), "dtype must be float64 or float32", o.dtype),
            (o.relu == "first_order" or o.model == "mlp",
             "the exact ReLU is for MLPs (the CNN's factored first-conv covariance takes only the "
             "first-order ReLU, tinybnn/layers/relu_exact.py says why); relu must be "
             "first_order for the CNN", o.relu)):
        if not ok:
            raise ConfigError(f"{what}, found {found!r}")
    hidden_sizes(o.hidden)


def build_model(o, input_shape, n_classes):
    """The network the options describe, initialised from ``o.seed``."""
    dtype = np.dtype(o.dtype).type
    rho = presets.rho_range(o.rho_init, o.preset)
    if o.model == "cnn":
        return paper_cnn(o.kernels, bayesian=not o.vanilla, input_shape=input_shape,
                         n_classes=n_classes, seed=o.seed, dtype=dtype, rho_range=rho,
                         last_variance=o.last_variance or None)
    sizes = (int(np.prod(input_shape)),) + hidden_sizes(o.hidden) + (n_classes,)
    return mlp(sizes, bayesian=not o.vanilla, input_shape=input_shape, seed=o.seed, dtype=dtype,
               rho_range=rho, last_variance=o.last_variance or None, relu=o.relu)


def n_kernels(model):
    """Kernels of the first conv layer, or None for a network without one."""
    for _, layer in model.layers:
        if hasattr(layer, "n_kernels"):
            return layer.n_kernels
    return None


def run_metrics(model, meta, test):
    """The metrics.json dict: test metrics plus what describes the run."""
    counts = model.n_parameters()
    return {
        "test_accuracy": test["accuracy"], "test_nll": test["nll"],
        "test_log_loss": test["log_loss"],
        "test_mean_predictive_variance": test["mean_predictive_variance"],
        "test_per_class_accuracy": test["per_class_accuracy"], "n_test": test["n"],
        "n_kernels": n_kernels(model), "n_parameters": counts["total"],
        "n_parameters_by_kind": counts, "bayesian": model.bayesian,
        "epochs": meta["options"]["epochs"], "seconds": meta.get("seconds"),
        "seed": meta["options"]["seed"], "preset": meta["options"]["preset"],
        "dataset": meta["options"]["dataset"], "options": meta["options"],
    }


def epoch_line(row):
    """One line on an epoch for a log: losses, accuracies, time, and the kernels (units) of each
    prunable layer that are switched off (norm below tinybnn.units.NEAR_ZERO)."""
    parts = [f"epoch {row['epoch']}", f"loss {row['train_loss']:.4g}"]
    if "train_accuracy" in row:
        parts.append(f"train acc {row['train_accuracy']:.4f}")
    if "val_accuracy" in row:
        parts.append(f"val acc {row['val_accuracy']:.4f}")
    for name, u in row.get("units", {}).items():
        norms = np.sort(u["norms"])
        parts.append(f"{name}: {len(switched_off(norms))} of {len(norms)} below {NEAR_ZERO:g} "
                     f"(smallest {', '.join(f'{v:.1e}' for v in norms[:3])})")
    parts.append(f"{row['seconds']:.0f} s")
    return "; ".join(parts)


#: The options a resumed run may take from the command line rather than from its checkpoint.
RESUME_MAY_SET = ("resume", "progress")


def resume_options(options):
    """(the options of the run to continue, its io.Checkpoint) for ``options.resume``: the
    checkpoint's options, with ``progress`` from ``options`` and ``out`` the folder resumed. A
    ConfigError if ``options`` sets anything else (any field but ``progress`` that differs
    from its default; ``out`` may name the same folder), or if there is nothing to resume."""
    given = [f.name for f in dataclasses.fields(TrainOptions)
             if f.name not in RESUME_MAY_SET and getattr(options, f.name) != f.default
             and not (f.name == "out" and Path(options.out) == Path(options.resume))]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigError(f"--resume continues a run with the options it was started with; "
                          f"found {flags} too (only --progress/--no-progress may be given "
                          f"with --resume)")
    folder = Path(options.resume)
    path = folder / "model.npz" if not folder.is_file() else folder
    folder = path.parent
    if not path.is_file():
        raise ConfigError(f"cannot resume: expected the checkpoint {path} of an interrupted "
                          f"'tinybnn train --out {folder}', found no such file")
    ck = io.load_checkpoint(path)
    opts = ck.meta.get("options")
    if not isinstance(opts, dict):
        raise ConfigError(f"cannot resume {path}: it does not record the options of a "
                          f"'tinybnn train' run")
    if "metrics" in ck.meta:
        raise ConfigError(f"nothing to resume: {path} is a finished run "
                          f"({len(ck.meta.get('history', []))} epochs; see its metrics.json)")
    if ck.state is None:
        raise ConfigError(f"cannot resume {path}: it holds no training state (saved by a "
                          f"tinybnn without resumable checkpoints)")
    known = {f.name for f in dataclasses.fields(TrainOptions)}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ConfigError(f"cannot resume {path}: its options {unknown} are unknown to this "
                          f"tinybnn (written by another version?)")
    o = TrainOptions(**dict(opts, out=str(folder), resume=None, progress=options.progress))
    return o.resolved(), ck


def train_run(options, *, log=None):
    """Train, evaluate and write the run's files; returns the metrics dict. ``log`` (e.g.
    ``print``) is called with one line per epoch (:func:`epoch_line`). With ``options.resume``,
    continue that run (:func:`resume_options`). Ctrl-C raises tinybnn.checkpoints.Interrupted, whose
    message ends with the command that resumes the run."""
    ck = None
    if options.resume is not None:
        o, ck = resume_options(options)
    else:
        o = options.resolved()
    out = prepare_output(o.out)
    ds = data.load(o.dataset, subset=o.subset, validation=o.validation, seed=o.seed,
                   dtype=np.dtype(o.dtype).type)
    if o.batch_size > len(ds.train.y):
        raise ConfigError(f"batch size must be at most the {len(ds.train.y)} training images, "
                          f"found {o.batch_size}")
    model = build_model(o, ds.train.x.shape[1:], len(ds.classes))
    start_units = unit_record(model)
    config = o.config()
    kw = config.fit_kwargs(len(ds.train.y), seed=o.seed, progress=o.progress)
    meta = {"options": asdict(o), "preset": config.as_dict(), "classes": list(ds.classes),
            "threads": threads.thread_counts()}
    start, before = time.perf_counter(), 0.0
    if ck is not None:
        before = ck.state.get("seconds", 0.0)  # the training time of the earlier pieces
        done, step, steps = (ck.state.get(k) for k in ("epochs_done", "step_in_epoch",
                                                       "steps_per_epoch"))
        if log is not None and isinstance(done, int) and isinstance(step, int):
            epoch, step = (done, steps) if step == 0 else (done + 1, step)
            log(f"resuming {ck.path} (epoch {epoch} of {o.epochs}, step {step} of {steps})")
    try:
        history = fit(model, ds.train, val=ds.val, **kw, checkpoint=out / "model.npz",
                      checkpoint_meta=meta, checkpoint_every=o.checkpoint_every, resume=ck,
                      on_epoch=None if log is None else (lambda row: log(epoch_line(row))))
    except Interrupted as err:
        if err.checkpoint is None:
            raise
        raise err.with_message(f"{err.message}; resume with: tinybnn train --resume "
                               f"{shlex.quote(str(o.out))}") from None
    meta["seconds"] = before + time.perf_counter() - start
    metrics = run_metrics(model, meta, evaluate(model, ds.test, jitter=kw["objective"].jitter))
    metrics["history"] = history  # every epoch, with its kernel (unit) norms and variances
    metrics["start_units"] = start_units  # the same before training
    metrics["threads"] = meta["threads"]
    io.save(out / "model.npz", model, dict(meta, history=history, metrics=metrics, complete=True))
    write_json(out / "metrics.json", metrics)
    from .. import plots

    kind = "vanilla" if o.vanilla else "Bayesian"
    what = f"{o.model.upper()} N={o.kernels}" if o.model == "cnn" else f"MLP {o.hidden}"
    title = f"{kind} {what} on {o.dataset}, preset {o.preset}"
    plots.save(plots.learning_curves(history, title), out / "learning_curves.png")
    layer = prunable_layers(model)[0] if prunable_layers(model) else None
    if layer is not None:  # the first prunable layer's kernel (unit) norms, epoch by epoch
        epochs, norms = trajectory([{"kernel_ids": list(range(n_units(model[layer]))),
                                     "history": history, "start_units": start_units}], layer)
        plots.save(plots.trajectories(epochs, norms, NEAR_ZERO, title),
                   out / "kernel_norms.png")
    return metrics


def evaluate_run(model_path, *, dataset=None, test_subset=None, seed=0):
    """Load a model file and return metrics.json-style metrics on a test split."""
    model, meta = io.load(model_path)
    opts = meta.get("options", {})
    name = dataset or opts.get("dataset")
    if name is None:
        raise ConfigError(f"{model_path} does not say which dataset it was trained on; "
                          f"pass --dataset")
    ds = data.load(name, test_subset=test_subset, seed=seed, dtype=model.dtype.type)
    if ds.test.x.shape[1:] != model.input_shape:
        raise ConfigError(f"the model takes inputs of shape {model.input_shape}, {name} has "
                          f"{ds.test.x.shape[1:]}")
    meta = dict(meta, options=dict(opts, dataset=name))
    meta["options"].setdefault("epochs", None)
    meta["options"].setdefault("seed", None)
    meta["options"].setdefault("preset", None)
    if model.task != "classification":
        return run_metrics(model, meta, evaluate(model, ds.test))
    from ..evaluate import classification_metrics, predict
    from ..uncertainty import summary_table

    mean, cov = predict(model, ds.test.x)
    metrics = run_metrics(model, meta, classification_metrics(mean, cov, ds.test.y))
    # mean confidence, predicted-class variance, trace and entropy over all, correct and wrong
    # predictions (tinybnn/uncertainty.py)
    metrics["uncertainty"] = summary_table(mean, cov, ds.test.y)
    return metrics
