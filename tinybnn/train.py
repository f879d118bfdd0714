"""Minibatch training with a seeded shuffle, per-epoch metrics, checkpoints and a progress bar.

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
is limited once around all the steps (:mod:`tinybnn.threads`): at one image per update those
per-step checks cost more than a tenth of a step.

Safety:

- a NaN or Inf in the loss, the network output or the parameters stops training with a
  :class:`~tinybnn.errors.DivergenceError` naming the step and the last good checkpoint;
- with ``checkpoint`` set, the model is saved there (atomically) after every epoch, so a run
  stopped by Ctrl-C or a divergence leaves the last complete epoch loadable.

All randomness (the shuffle) comes from ``numpy.random.default_rng(seed)``.
"""

import math
import time

import numpy as np

from . import io, threads
from .errors import ConfigError, DivergenceError
from .evaluate import evaluate
from .losses import Objective
from .gaussian import Point
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


def _progress(total, desc, enabled):
    """A tqdm bar that works in a terminal and a notebook (tqdm.auto), or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def fit(model, train, *, val=None, objective=Objective(), epochs=10, batch_size=100, lr=1e-3,
        final_lr=None, optimizer="adam", rate_scale=None, seed=0, progress=True,
        checkpoint=None, checkpoint_meta=None, on_epoch=None, snapshots=1):
    """Train ``model`` in place on ``train`` (``.x``, ``.y``); returns the history (a list).

    objective       : the loss (regulariser, N_train, prior, jitter); see tinybnn.losses
    epochs, batch_size, lr, final_lr, optimizer : the schedule (final_lr None = constant)
    rate_scale      : per-parameter rate factors by name suffix, e.g. {"rho": 10}
    checkpoint      : a path; the model is saved there after every epoch
    checkpoint_meta : a dict stored in the checkpoint's metadata (with the history so far)
    on_epoch        : called with each epoch's dict after it is recorded
    snapshots       : unit records per epoch (1: at its end only)
    """
    n = len(train.y)
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, found {epochs!r}")
    if not isinstance(snapshots, int) or snapshots < 1:
        raise ConfigError(f"snapshots must be an integer >= 1, found {snapshots!r}")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ConfigError(f"batch_size must be an integer between 1 and the {n} training "
                          f"examples, found {batch_size!r}")
    model.check_input(train.x)  # once: the steps below pass checked Points
    steps_per_epoch = math.ceil(n / batch_size)
    opt = make_optimizer(optimizer, lr, final_lr, epochs * steps_per_epoch,
                         rate_scale=rate_scale)
    rng = np.random.default_rng(seed)
    history, step = [], 0
    with threads.blas_limit(model.blas_threads):
        for epoch in range(1, epochs + 1):
            start, cpu = time.perf_counter(), time.process_time()
            order = rng.permutation(n)
            bar = _progress(steps_per_epoch, f"epoch {epoch}/{epochs}", progress)
            try:
                sums, rate, snaps = _epoch(model, train, order, batch_size, objective, opt,
                                           bar, epoch, snapshots)
            except DivergenceError as err:
                where = checkpoint if (checkpoint and history) else "none"
                raise DivergenceError(f"training diverged at step {step + err.step} (epoch "
                                      f"{epoch}, batch {err.step}): {err}; last good "
                                      f"checkpoint: {where}") from None
            finally:
                if bar is not None:
                    bar.close()
            step += steps_per_epoch
            _check_parameters(model, step)
            row = {"epoch": epoch, "lr": rate, "steps": step,
                   "train_loss": sums["loss"] / n, "train_nll": sums["nll"] / n,
                   "train_reg": sums["reg"] / n}
            if model.task == "classification":
                row["train_accuracy"] = sums["correct"] / n
            if val is not None:
                m = evaluate(model, val, jitter=objective.jitter)
                row.update({f"val_{k}": v for k, v in m.items()
                            if k not in ("n", "per_class_accuracy")})
            row["units"] = unit_record(model)
            if snaps:
                row["snapshots"] = snaps
            row["seconds"] = time.perf_counter() - start
            row["cpu_seconds"] = time.process_time() - cpu  # all threads' CPU time
            history.append(row)
            if checkpoint:
                meta = dict(checkpoint_meta or {}, history=history, complete=epoch == epochs)
                io.save(checkpoint, model, meta)
            if on_epoch is not None:
                on_epoch(row)
    return history


class _StepDivergence(DivergenceError):
    """A DivergenceError that knows its step within the epoch (1-based)."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


def _epoch(model, train, order, batch_size, objective, opt, bar, epoch, snapshots):
    """One pass over ``train`` in ``order``; returns (sums of loss, nll, reg, correct; the last
    learning rate; the unit snapshots inside the epoch). A divergence is raised as a
    _StepDivergence naming its step."""
    sums = {"loss": 0.0, "nll": 0.0, "reg": 0.0, "correct": 0}
    n, rate, snaps = len(order), None, []
    steps = math.ceil(n / batch_size)
    marks = {round(steps * j / snapshots): j for j in range(1, snapshots)}  # step -> snapshot
    classify = model.task == "classification"
    for i in range(steps):
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
        if bar is not None:
            bar.update()
            if i % 10 == 0 or i == steps - 1:
                seen = min(n, (i + 1) * batch_size)
                bar.set_postfix(loss=f"{parts.total:.4g}", acc=f"{sums['correct'] / seen:.3f}")
    return sums, rate, snaps


def _check_parameters(model, step):
    for k, p in model.params.items():
        if not np.all(np.isfinite(p)):
            raise DivergenceError(f"parameter {k} holds NaN or Inf after step {step}")
