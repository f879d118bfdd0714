"""Minibatch training with a seeded shuffle, per-epoch metrics, resumable checkpoints and a
progress bar.

``fit`` runs the optimiser over a training split for a number of epochs and returns the history,
one dict per epoch::

    epoch, lr, steps, seconds, cpu_seconds, train_loss, train_nll, train_reg, train_accuracy,
    val_accuracy, val_nll, val_log_loss, val_mean_predictive_variance   (if a validation split)
    units       {layer: {"norms", "outgoing_norms", "variances"}} after the epoch, for every
                layer whose kernels (units) can be removed (:func:`tinybnn.units.unit_record`):
                the trajectory of a network switching its kernels off
    snapshots   with ``snapshots`` k > 1: k - 1 more {"epoch": e, "units": ...} inside the
                epoch, at fractional epochs e (e.g. 1.25, 1.5, 1.75 for k = 4)

The train figures are running means over the epoch's minibatches (the parameters change while
they are measured); the validation figures are measured at the end of the epoch.

The training split is checked once (shape, dtype, finite values) before the first step, and BLAS
is limited once around all the steps (:mod:`tinybnn.kernels.threads`): at one image per update those
per-step checks cost more than a tenth of a step.

Safety:

- a NaN or Inf in the loss, the network output or the parameters stops training with a
  :class:`~tinybnn.errors.DivergenceError` naming the step and the last good checkpoint;
- with ``checkpoint`` set, the model is saved there (atomically) after every epoch and, with
  ``checkpoint_every`` k > 0, after updates k, 2k, ... of every epoch too, so a run stopped by
  Ctrl-C, a divergence or a kill leaves its last checkpoint loadable (a mid-epoch checkpoint is
  written only once the parameters are checked finite); Ctrl-C raises
  :class:`tinybnn.checkpoints.Interrupted`, a KeyboardInterrupt that names it.

Resuming: every checkpoint holds the training state too, and ``fit(..., resume=path)`` continues
from it, ending with exactly the numbers of a run that was never interrupted; what is stored
and why is in :mod:`tinybnn.checkpoints`.

All randomness (the shuffle) comes from ``numpy.random.default_rng(seed)``.
"""

import math
import time

import numpy as np

from .checkpoints import Run, new_figures, settings_of
from .errors import ConfigError, DivergenceError
from .evaluate import evaluate
from .gaussian import Point
from .kernels import threads
from .losses import Objective
from .model import loss_and_grads
from .optim import SGD, Adam, Constant, ExponentialDecay
from .units import unit_record


def make_optimizer(name, lr, final_lr, total_steps, momentum=0.9, rate_scale=None):
    """Adam or SGD with a constant rate (``final_lr`` None) or exponential decay to final_lr;
    ``rate_scale`` as in :mod:`tinybnn.optim` (e.g. {"rho": 10})."""
    schedule = Constant(lr) if final_lr is None else ExponentialDecay(lr, final_lr, total_steps)
    if name == "adam":
        return Adam(schedule, rate_scale=rate_scale)
    if name == "sgd":
        return SGD(schedule, momentum=momentum, rate_scale=rate_scale)
    raise ConfigError(f"optimizer must be 'adam' or 'sgd', found {name!r}")


def _progress(total, desc, enabled, initial=0):
    """A tqdm bar that works in a terminal and a notebook (tqdm.auto), or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, initial=initial)


def fit(model, train, *, val=None, objective=Objective(), epochs=10, batch_size=100, lr=1e-3,
        final_lr=None, optimizer="adam", rate_scale=None, seed=0, progress=True,
        checkpoint=None, checkpoint_meta=None, on_epoch=None, snapshots=1, checkpoint_every=0,
        resume=None):
    """Train ``model`` in place on ``train`` (``.x``, ``.y``); returns the history (a list).

    objective       : the loss (regulariser, N_train, prior, jitter); see tinybnn.losses
    epochs, batch_size, lr, final_lr, optimizer : the schedule (final_lr None = constant)
    rate_scale      : per-parameter rate factors by name suffix, e.g. {"rho": 10}
    checkpoint      : a path; the model and the training state are saved there after every
                      epoch (and every ``checkpoint_every`` updates)
    checkpoint_meta : a dict stored in the checkpoint's metadata (with the history so far);
                      None when resuming: the resumed checkpoint's
    on_epoch        : called with each epoch's dict after it is recorded
    snapshots       : unit records per epoch (1: at its end only)
    checkpoint_every: also save after updates k, 2k, ... of every epoch (k = this; 0: only
                      at the ends of epochs); needs ``checkpoint``
    resume          : the path of a checkpoint written by fit with the same settings and data
                      (or an :class:`tinybnn.io.Checkpoint` from ``io.load_checkpoint``):
                      ``model`` (the same architecture and dtype) takes its parameters and the
                      run continues where it stopped; the history returned is the whole run's.
                      To keep checkpointing, pass ``checkpoint`` too (e.g. the same path).

    Ctrl-C raises :class:`tinybnn.checkpoints.Interrupted` (a KeyboardInterrupt) naming the last checkpoint.
    """
    n = len(train.y)
    _check_schedule(n, epochs, snapshots, batch_size, checkpoint_every, checkpoint)
    model.check_input(train.x)  # once: the steps below pass checked Points
    steps_per_epoch = math.ceil(n / batch_size)
    opt = make_optimizer(optimizer, lr, final_lr, epochs * steps_per_epoch,
                         rate_scale=rate_scale)
    settings = settings_of(train, objective, epochs, batch_size, lr, final_lr, optimizer,
                           rate_scale, seed, snapshots)
    run = Run(model, opt, np.random.default_rng(seed), epochs, steps_per_epoch, checkpoint,
              checkpoint_every, checkpoint_meta, settings)
    if resume is not None:
        run.restore(resume)
    try:
        with threads.blas_limit(model.blas_threads):
            for epoch in range(run.done + 1, epochs + 1):
                row = _train_epoch(model, train, val, objective, opt, run, epoch, batch_size,
                                   snapshots, progress)
                run.history.append(row)
                if checkpoint:
                    run.save(epoch, 0, run.rng.bit_generator.state, None)
                if on_epoch is not None:
                    on_epoch(row)
    except KeyboardInterrupt:
        raise run.interrupted() from None
    return run.history


def _check_schedule(n, epochs, snapshots, batch_size, checkpoint_every, checkpoint):
    """Refuse a schedule fit cannot run, naming what was expected and what was found."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, found {epochs!r}")
    if not isinstance(snapshots, int) or snapshots < 1:
        raise ConfigError(f"snapshots must be an integer >= 1, found {snapshots!r}")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ConfigError(f"batch_size must be an integer between 1 and the {n} training "
                          f"examples, found {batch_size!r}")
    if (not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool)
            or checkpoint_every < 0):
        raise ConfigError(f"checkpoint_every must be an integer >= 0 (updates; 0: only at the "
                          f"ends of epochs), found {checkpoint_every!r}")
    if checkpoint_every and not checkpoint:
        raise ConfigError(f"checkpoint_every={checkpoint_every} needs a checkpoint path to save "
                          f"to, found checkpoint={checkpoint!r}")


def _train_epoch(model, train, val, objective, opt, run, epoch, batch_size, snapshots,
                 progress):
    """Epoch ``epoch`` of ``run`` (or what a resumed one has left), with its mid-epoch
    checkpoints; returns its history row."""
    n, steps = len(train.y), run.steps
    start, cpu = time.perf_counter(), time.process_time()
    rng_state = run.rng.bit_generator.state  # before the shuffle: what a checkpoint
    order = run.rng.permutation(n)           # inside this epoch stores
    figures = run.take_partial() or new_figures()
    bar = _progress(steps, f"epoch {epoch}/{run.epochs}", progress, initial=figures["step"])

    def after_update(i):
        if run.every and i % run.every == 0 and i < steps:
            _check_parameters(model, (epoch - 1) * steps + i, run.last_path())
            run.save(epoch - 1, i, rng_state, dict(
                figures, seconds=figures["seconds"] + time.perf_counter() - start,
                cpu_seconds=figures["cpu_seconds"] + time.process_time() - cpu))

    try:
        rate = _epoch(model, train, order, batch_size, objective, opt, bar, epoch, snapshots,
                      figures, after_update)
    except _StepDivergence as err:
        raise DivergenceError(f"training diverged at step {(epoch - 1) * steps + err.step} "
                              f"(epoch {epoch}, batch {err.step}): {err}; last good "
                              f"checkpoint: {run.last_path()}") from None
    finally:
        if bar is not None:
            bar.close()
    _check_parameters(model, epoch * steps, run.last_path())
    row = _epoch_row(model, val, objective, epoch, epoch * steps, rate, figures, n)
    row["seconds"] = figures["seconds"] + time.perf_counter() - start
    row["cpu_seconds"] = figures["cpu_seconds"] + time.process_time() - cpu  # all threads'
    return row


def _epoch_row(model, val, objective, epoch, step, rate, figures, n):
    """An epoch's history row (but its times): the running means of its updates, the
    validation figures at its end, and the units' record."""
    sums = figures["sums"]
    row = {"epoch": epoch, "lr": rate, "steps": step, "train_loss": sums["loss"] / n,
           "train_nll": sums["nll"] / n, "train_reg": sums["reg"] / n}
    if model.task == "classification":
        row["train_accuracy"] = sums["correct"] / n
    if val is not None:
        m = evaluate(model, val, jitter=objective.jitter)
        row.update({f"val_{k}": v for k, v in m.items() if k not in ("n", "per_class_accuracy")})
    row["units"] = unit_record(model)
    if figures["snapshots"]:
        row["snapshots"] = figures["snapshots"]
    return row


class _StepDivergence(DivergenceError):
    """A DivergenceError that knows its step within the epoch (1-based)."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


def _epoch(model, train, order, batch_size, objective, opt, bar, epoch, snapshots, figures,
           after_update):
    """One pass over ``train`` in ``order``, from update ``figures["step"] + 1`` on (a resumed
    epoch skips the updates done); adds to ``figures``' sums of loss, nll, reg, correct and its
    unit snapshots in place, counting the updates in ``figures["step"]``, and calls
    ``after_update(i)`` after update i (1-based). Returns the last learning rate. A divergence
    is raised as a _StepDivergence naming its step."""
    sums, snaps = figures["sums"], figures["snapshots"]
    n, rate = len(order), None
    steps = math.ceil(n / batch_size)
    marks = {round(steps * j / snapshots): j for j in range(1, snapshots)}  # step -> snapshot
    classify = model.task == "classification"
    for i in range(figures["step"], steps):
        idx = order[i * batch_size:(i + 1) * batch_size]
        x, y = train.x[idx], train.y[idx]
        try:
            parts, grads = loss_and_grads(model, Point(x), y, objective)
            if not np.isfinite(parts.total):
                raise DivergenceError(f"the loss is {parts.total}")
        except DivergenceError as err:
            raise _StepDivergence(str(err), i + 1) from None
        rate = opt.step(model.params, grads)
        sums["loss"] += parts.total * len(idx)
        sums["nll"] += parts.nll * len(idx)
        sums["reg"] += parts.reg * len(idx)
        if classify:
            sums["correct"] += int((parts.output.argmax(axis=1) == y).sum())
        if i + 1 in marks:
            snaps.append({"epoch": epoch - 1 + marks[i + 1] / snapshots,
                          "units": unit_record(model)})
        figures["step"] = i + 1
        if bar is not None:
            bar.update()
            if i % 10 == 0 or i == steps - 1:
                seen = min(n, (i + 1) * batch_size)
                bar.set_postfix(loss=f"{parts.total:.4g}", acc=f"{sums['correct'] / seen:.3f}")
        after_update(i + 1)
    return rate


def _check_parameters(model, step, last_good="none"):
    for k, p in model.params.items():
        if not np.all(np.isfinite(p)):
            raise DivergenceError(f"parameter {k} holds NaN or Inf after step {step}; last good "
                                  f"checkpoint: {last_good}")
