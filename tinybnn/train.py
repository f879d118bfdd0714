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
is limited once around all the steps (:mod:`tinybnn.threads`): at one image per update those
per-step checks cost more than a tenth of a step.

Safety:

- a NaN or Inf in the loss, the network output or the parameters stops training with a
  :class:`~tinybnn.errors.DivergenceError` naming the step and the last good checkpoint;
- with ``checkpoint`` set, the model is saved there (atomically) after every epoch and, with
  ``checkpoint_every`` k > 0, after updates k, 2k, ... of every epoch too, so a run stopped by
  Ctrl-C, a divergence or a kill leaves its last checkpoint loadable (a mid-epoch checkpoint is
  written only once the parameters are checked finite); Ctrl-C raises :class:`Interrupted`, a
  KeyboardInterrupt that names it.

Resuming: every checkpoint holds the training state too (:mod:`tinybnn.io`: ``__train__`` and
``optim/<slot>/<name>``), and ``fit(..., resume=path)`` continues from it, ending with exactly the
numbers of a run that was never interrupted (the same parameters bit for bit, the same history
but for the times). What is stored, and why each piece is needed for that:

    optimizer        Adam's step count t and its moments m, v per parameter (SGD: t and u), at
                     the parameters' dtype; the learning-rate schedule reads only t
    rng              the shuffle's Generator state (``bit_generator.state``, JSON) from before
                     the shuffle of the epoch in progress: the resumed run draws the same order
                     and skips the updates already done
    epochs_done, step_in_epoch   where the run stands (complete epochs; updates of the next)
    sums, snapshots  that epoch's running sums (loss, nll, reg, correct: Python floats and an
                     int, exact in JSON) and its unit snapshots so far, for its history row
    seconds, epoch_seconds, epoch_cpu_seconds   the times so far (the times are the only
                     figures a resumed run does not reproduce)
    settings         what the numbers depend on (epochs, batch size, rates, optimiser, seed,
                     snapshots, the objective, the number and a CRC-32 of the training labels):
                     a resume with other settings is refused, naming them

The checkpoint's metadata holds the complete epochs' history rows. ``checkpoint_every`` itself
may change between the pieces of a run: it decides when to save, not what is computed.

All randomness (the shuffle) comes from ``numpy.random.default_rng(seed)``.
"""

import dataclasses
import json
import math
import time
import zlib
from pathlib import Path

import numpy as np

from . import io, threads
from .errors import ConfigError, DivergenceError
from .evaluate import evaluate
from .losses import Objective
from .gaussian import Point
from .model import loss_and_grads
from .optim import SGD, Adam, Constant, ExponentialDecay
from .units import unit_record


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (any KeyboardInterrupt) during :func:`fit`, saying where the last checkpoint is.

    message      one line for the user: "the last checkpoint is runs/x/model.npz (epoch 3 of
                 5, step 1200 of 1833)", or why there is none
    checkpoint   the path of the last checkpoint written (or resumed from), or None
    epoch, step  its position: ``step`` updates of epoch ``epoch`` were done (step == steps at
                 the end of an epoch); None without a checkpoint
    epochs, steps   the run's epochs and updates per epoch
    """

    def __init__(self, message, checkpoint=None, epoch=None, step=None, epochs=None,
                 steps=None):
        super().__init__(message)
        self.message, self.checkpoint = message, checkpoint
        self.epoch, self.step, self.epochs, self.steps = epoch, step, epochs, steps

    def with_message(self, message):
        """The same interruption with another message (e.g. one that adds how to resume)."""
        return Interrupted(message, self.checkpoint, self.epoch, self.step, self.epochs,
                           self.steps)


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

    Ctrl-C raises :class:`Interrupted` (a KeyboardInterrupt) naming the last checkpoint.
    """
    n = len(train.y)
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
    model.check_input(train.x)  # once: the steps below pass checked Points
    steps_per_epoch = math.ceil(n / batch_size)
    opt = make_optimizer(optimizer, lr, final_lr, epochs * steps_per_epoch,
                         rate_scale=rate_scale)
    settings = _settings(train, objective, epochs, batch_size, lr, final_lr, optimizer,
                         rate_scale, seed, snapshots)
    run = _Run(model, opt, np.random.default_rng(seed), epochs, steps_per_epoch, checkpoint,
               checkpoint_every, checkpoint_meta, settings)
    if resume is not None:
        run.restore(resume)
    rng = run.rng
    try:
        with threads.blas_limit(model.blas_threads):
            for epoch in range(run.done + 1, epochs + 1):
                start, cpu = time.perf_counter(), time.process_time()
                rng_state = rng.bit_generator.state  # before the shuffle: what a checkpoint
                order = rng.permutation(n)           # inside this epoch stores
                figures = run.take_partial() or _new_figures()
                bar = _progress(steps_per_epoch, f"epoch {epoch}/{epochs}", progress,
                                initial=figures["step"])

                def after_update(i, epoch=epoch, rng_state=rng_state, figures=figures,
                                 start=start, cpu=cpu):
                    if checkpoint_every and i % checkpoint_every == 0 and i < steps_per_epoch:
                        _check_parameters(model, (epoch - 1) * steps_per_epoch + i,
                                          run.last_path())
                        run.save(epoch - 1, i, rng_state, dict(
                            figures, seconds=figures["seconds"] + time.perf_counter() - start,
                            cpu_seconds=figures["cpu_seconds"] + time.process_time() - cpu))

                try:
                    rate = _epoch(model, train, order, batch_size, objective, opt, bar, epoch,
                                  snapshots, figures, after_update)
                except _StepDivergence as err:
                    step = (epoch - 1) * steps_per_epoch + err.step
                    raise DivergenceError(f"training diverged at step {step} (epoch {epoch}, "
                                          f"batch {err.step}): {err}; last good checkpoint: "
                                          f"{run.last_path()}") from None
                finally:
                    if bar is not None:
                        bar.close()
                step = epoch * steps_per_epoch
                _check_parameters(model, step, run.last_path())
                sums = figures["sums"]
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
                if figures["snapshots"]:
                    row["snapshots"] = figures["snapshots"]
                row["seconds"] = figures["seconds"] + time.perf_counter() - start
                row["cpu_seconds"] = (figures["cpu_seconds"]  # all threads' CPU time
                                      + time.process_time() - cpu)
                run.history.append(row)
                if checkpoint:
                    run.save(epoch, 0, rng.bit_generator.state, None)
                if on_epoch is not None:
                    on_epoch(row)
    except KeyboardInterrupt:
        raise run.interrupted() from None
    return run.history


#: What a training state must hold (tinybnn.io stores it; _Run.save writes it).
_STATE_KEYS = ("optimizer", "rng", "epochs_done", "step_in_epoch", "steps_per_epoch", "sums",
               "snapshots", "epoch_seconds", "epoch_cpu_seconds", "seconds", "settings")


def _new_figures():
    """The running figures of an epoch: updates done, sums, unit snapshots, times so far."""
    return {"step": 0, "sums": {"loss": 0.0, "nll": 0.0, "reg": 0.0, "correct": 0},
            "snapshots": [], "seconds": 0.0, "cpu_seconds": 0.0}


def _settings(train, objective, epochs, batch_size, lr, final_lr, optimizer, rate_scale, seed,
              snapshots):
    """What a run's numbers depend on, as JSON would give it back: a checkpoint stores it and a
    resume must match it. The training data enter by their size and a CRC-32 of the labels
    (cheap; it catches another dataset, subset or split)."""
    y = np.ascontiguousarray(train.y)
    settings = {
        "epochs": epochs, "batch_size": batch_size, "lr": float(lr),
        "final_lr": None if final_lr is None else float(final_lr), "optimizer": optimizer,
        "rate_scale": {k: float(v) for k, v in (rate_scale or {}).items()},
        "seed": int(seed) if isinstance(seed, (int, np.integer)) else repr(seed),
        "snapshots": snapshots,
        "objective": (dataclasses.asdict(objective) if dataclasses.is_dataclass(objective)
                      else repr(objective)),
        "n_train": len(y), "labels_crc32": zlib.crc32(y.tobytes()),
    }
    return json.loads(json.dumps(settings))


class _Run:
    """One fit's position and its checkpoints: what is saved, and restored by a resume."""

    def __init__(self, model, opt, rng, epochs, steps, checkpoint, every, meta, settings):
        self.model, self.opt, self.rng, self.settings = model, opt, rng, settings
        self.epochs, self.steps, self.every = epochs, steps, every
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.meta = meta
        self.history, self.done = [], 0    # complete epochs
        self.partial = None                # a resumed epoch's figures (updates done, sums...)
        self.last = None                   # (path, epochs done, updates of the next done)
        self.started, self.seconds_before = time.perf_counter(), 0.0

    def save(self, done, step, rng_state, figures):
        """Write the checkpoint: the model, the history, and the training state after ``done``
        complete epochs and ``step`` updates of the next (with its ``figures``)."""
        figures = figures or _new_figures()
        state = {"optimizer": self.opt.state(), "rng": rng_state, "epochs_done": done,
                 "step_in_epoch": step, "steps_per_epoch": self.steps,
                 "sums": figures["sums"], "snapshots": figures["snapshots"],
                 "epoch_seconds": figures["seconds"],
                 "epoch_cpu_seconds": figures["cpu_seconds"],
                 "seconds": self.seconds_before + time.perf_counter() - self.started,
                 "settings": self.settings}
        meta = dict(self.meta or {}, history=self.history,
                    complete=done == self.epochs)
        io.save(self.checkpoint, self.model, meta, state=state)
        self.last = (self.checkpoint, done, step)

    def restore(self, resume):
        """Continue from the checkpoint ``resume`` (a path or an io.Checkpoint), refusing one
        whose settings, architecture or position do not fit this run."""
        ck = resume if isinstance(resume, io.Checkpoint) else io.load_checkpoint(resume)
        where, state = ck.path, ck.state
        if state is None:
            raise ConfigError(f"cannot resume from {where}: it holds a model but no training "
                              f"state (a finished run, or one saved by a tinybnn without "
                              f"resumable checkpoints)")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ConfigError(f"cannot resume from {where}: its training state lacks "
                              f"{', '.join(missing)}")
        theirs = state["settings"] if isinstance(state["settings"], dict) else {}
        differ = [f"{k} {theirs.get(k)!r} (checkpoint) vs {v!r} (here)"
                  for k, v in self.settings.items() if theirs.get(k) != v]
        if differ:
            raise ConfigError(f"cannot resume from {where}: it was trained with other settings: "
                              f"{'; '.join(differ)}")
        if ck.model.spec() != self.model.spec() or ck.model.dtype != self.model.dtype:
            raise ConfigError(f"cannot resume from {where}: its network ({ck.model.dtype}, "
                              f"{ck.model.spec()}) is not the one being trained "
                              f"({self.model.dtype}, {self.model.spec()})")
        done, step = state.get("epochs_done"), state.get("step_in_epoch")
        history = ck.meta.get("history")
        t = done * self.steps + step if isinstance(done, int) and isinstance(step, int) else None
        if (not isinstance(history, list) or len(history) != done or t is None
                or not 0 <= step < self.steps or state["optimizer"].get("t") != t):
            raise ConfigError(f"cannot resume from {where}: its position is inconsistent "
                              f"(expected {len(history or [])} complete epochs in the history, "
                              f"0 <= step_in_epoch < {self.steps} and optimiser step count "
                              f"epochs_done * {self.steps} + step_in_epoch; found epochs_done "
                              f"{done!r}, step_in_epoch {step!r}, t "
                              f"{state['optimizer'].get('t')!r})")
        self.opt.load_state(state["optimizer"])
        try:
            self.rng.bit_generator.state = state["rng"]
        except (TypeError, ValueError, KeyError) as err:
            raise ConfigError(f"cannot resume from {where}: its random state does not fit a "
                              f"{type(self.rng.bit_generator).__name__} Generator ({err})"
                              ) from None
        for k, p in self.model.params.items():
            p[...] = ck.model.params[k]
        self.history, self.done = list(history), done
        if step:
            self.partial = {"step": step, "sums": dict(state["sums"]),
                            "snapshots": list(state["snapshots"]),
                            "seconds": state["epoch_seconds"],
                            "cpu_seconds": state["epoch_cpu_seconds"]}
        if self.meta is None:
            self.meta = {k: v for k, v in ck.meta.items() if k not in ("history", "complete")}
        self.seconds_before = state.get("seconds", 0.0)
        self.last = (where, done, step)

    def take_partial(self):
        """The resumed epoch's figures (once), or None."""
        partial, self.partial = self.partial, None
        return partial

    def last_path(self):
        return self.last[0] if self.last else "none"

    def interrupted(self):
        """The Interrupted exception naming the last checkpoint."""
        if self.last is None:
            if self.checkpoint is None:
                why = "training was not checkpointed (checkpoint=None)"
            else:
                first = self.steps if not self.every else min(self.every, self.steps)
                why = (f"no checkpoint was written yet (the first was due after update "
                       f"{first} of epoch 1)")
            return Interrupted(why, epochs=self.epochs, steps=self.steps)
        path, done, step = self.last
        epoch, step = (done, self.steps) if step == 0 else (done + 1, step)
        return Interrupted(f"the last checkpoint is {path} (epoch {epoch} of {self.epochs}, "
                           f"step {step} of {self.steps})", path, epoch, step, self.epochs,
                           self.steps)


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
