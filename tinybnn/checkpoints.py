"""A training run's position and its resumable checkpoints (what :func:`tinybnn.train.fit` saves
and restores).

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
"""

import dataclasses
import json
import time
import zlib
from pathlib import Path

import numpy as np

from . import io
from .errors import ConfigError


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


#: What a training state must hold (tinybnn.io stores it; Run.save writes it).
STATE_KEYS = ("optimizer", "rng", "epochs_done", "step_in_epoch", "steps_per_epoch", "sums",
               "snapshots", "epoch_seconds", "epoch_cpu_seconds", "seconds", "settings")


def new_figures():
    """The running figures of an epoch: updates done, sums, unit snapshots, times so far."""
    return {"step": 0, "sums": {"loss": 0.0, "nll": 0.0, "reg": 0.0, "correct": 0},
            "snapshots": [], "seconds": 0.0, "cpu_seconds": 0.0}


def settings_of(train, objective, epochs, batch_size, lr, final_lr, optimizer, rate_scale, seed,
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


class Run:
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
        figures = figures or new_figures()
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
        missing = [k for k in STATE_KEYS if k not in state]
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
