"""A training run's position and its checkpoints (tinybnn.checkpoints), without training:
``settings_of`` is what JSON gives back, with the size and a CRC-32 of the labels;
``new_figures`` starts every epoch from fresh zeros; ``Interrupted`` is a KeyboardInterrupt
that keeps its position under a new message; ``Run.interrupted`` names the last checkpoint, or
says why there is none; ``Run.save`` then ``Run.restore`` into a fresh network, optimiser and
Generator continues the run where it stood (parameters, optimiser state, random state,
history, the epoch's figures, metadata); and a restore refuses a state that lacks keys, stands
at an impossible position, holds another Generator's state or comes from other settings."""

import dataclasses
import json
import re
import zlib

import numpy as np
import pytest

from tinybnn import data, io
from tinybnn.architectures import mlp
from tinybnn.checkpoints import Interrupted, Run, new_figures, settings_of
from tinybnn.errors import ConfigError
from tinybnn.losses import Objective
from tinybnn.optim import Adam

SETTINGS = {"epochs": 3, "seed": 0}  # what Run compares; settings_of makes the real ones
EPOCHS, STEPS = 3, 4


def test_settings_of_is_what_json_gives_back():
    y = np.array([0, 2, 1, 1, 0, 2], dtype=np.int64)
    train = data.Split(np.zeros((6, 4)), y)
    objective = Objective(regulariser="authors2019", n_train=6)
    got = settings_of(train, objective, 3, 2, 1e-2, None, "adam", {"rho": 10}, np.int64(7), 4)
    assert got == {"epochs": 3, "batch_size": 2, "lr": 0.01, "final_lr": None,
                   "optimizer": "adam", "rate_scale": {"rho": 10.0}, "seed": 7, "snapshots": 4,
                   "objective": json.loads(json.dumps(dataclasses.asdict(objective))),
                   "n_train": 6, "labels_crc32": zlib.crc32(y.tobytes())}
    assert type(got["seed"]) is int and got["objective"]["regulariser"] == "authors2019"
    assert json.loads(json.dumps(got)) == got
    # the labels enter by their bytes: another order differs, a strided view reads as a copy
    other = data.Split(np.zeros((6, 4)), y[::-1])
    assert settings_of(other, objective, 3, 2, 1e-2, None, "adam", None, 7, 4)[
        "labels_crc32"] == zlib.crc32(y[::-1].copy().tobytes()) != got["labels_crc32"]
    odd = settings_of(train, "custom", 3, 2, 1e-2, 1e-4, "sgd", None, None, None)
    assert (odd["seed"], odd["objective"], odd["final_lr"], odd["rate_scale"]) == (
        "None", "'custom'", 1e-4, {})


def test_new_figures_start_from_fresh_zeros():
    first = new_figures()
    assert first == {"step": 0, "sums": {"loss": 0.0, "nll": 0.0, "reg": 0.0, "correct": 0},
                     "snapshots": [], "seconds": 0.0, "cpu_seconds": 0.0}
    first["sums"]["loss"] += 1.0
    first["snapshots"].append([1.0])
    assert new_figures()["sums"]["loss"] == 0.0 and new_figures()["snapshots"] == []


def test_interrupted_keeps_its_position_under_a_new_message():
    stop = Interrupted("the last checkpoint is m.npz", "m.npz", 2, 5, 3, 19)
    assert isinstance(stop, KeyboardInterrupt) and str(stop) == stop.message
    again = stop.with_message("resume with --resume")
    assert type(again) is Interrupted and str(again) == again.message == "resume with --resume"
    assert (again.checkpoint, again.epoch, again.step, again.epochs, again.steps) == (
        "m.npz", 2, 5, 3, 19)


def make_run(checkpoint, every=None, seed=0, meta=None, rng=None):
    model, opt = mlp((4, 3), seed=seed), Adam(1e-3)
    rng = np.random.default_rng(0) if rng is None else rng
    return Run(model, opt, rng, EPOCHS, STEPS, checkpoint, every, meta, dict(SETTINGS))


def take_steps(run, n):
    """n Adam updates of the run's network with gradients of ones."""
    for _ in range(n):
        run.opt.step(run.model.params, {k: np.ones_like(p) for k, p in run.model.params.items()})


def test_interrupted_names_the_last_checkpoint_or_why_there_is_none(tmp_path):
    stop = make_run(None).interrupted()
    assert stop.message == "training was not checkpointed (checkpoint=None)"
    assert (stop.checkpoint, stop.epoch, stop.step, stop.epochs, stop.steps) == (
        None, None, None, EPOCHS, STEPS)
    path = tmp_path / "m.npz"
    for every, first in ((None, 4), (10, 4), (3, 3)):
        assert make_run(path, every).interrupted().message == (
            f"no checkpoint was written yet (the first was due after update {first} of "
            f"epoch 1)")
    run = make_run(path)
    run.save(1, 0, run.rng.bit_generator.state, None)  # the end of epoch 1
    stop = run.interrupted()
    assert stop.message == f"the last checkpoint is {path} (epoch 1 of 3, step 4 of 4)"
    assert (stop.checkpoint, stop.epoch, stop.step) == (path, 1, 4)
    run.save(1, 2, run.rng.bit_generator.state, None)  # inside epoch 2
    assert run.interrupted().message.endswith("(epoch 2 of 3, step 2 of 4)")


def saved_run(tmp_path):
    """A run saved inside epoch 2 (1 complete epoch of 4 updates, then 2): its path, the run,
    its random state and the figures of the epoch so far."""
    path = tmp_path / "m.npz"
    run = make_run(path, meta={"preset": "p"})
    take_steps(run, 1 * STEPS + 2)
    run.rng.random(5)
    state = run.rng.bit_generator.state
    figures = {"step": 2, "sums": {"loss": 1.5, "nll": 1.0, "reg": 0.5, "correct": 3},
               "snapshots": [[0.5, 0.25]], "seconds": 0.75, "cpu_seconds": 0.5}
    run.history = [{"epoch": 1, "train_loss": 2.0}]
    run.save(1, 2, state, figures)
    return path, run, state, figures


@pytest.mark.parametrize("as_checkpoint", [False, True])
def test_save_then_restore_continues_the_run(tmp_path, as_checkpoint):
    path, first, state, figures = saved_run(tmp_path)
    meta = io.load(path)[1]
    assert meta == {"preset": "p", "history": first.history, "complete": False}
    second = make_run(None, seed=9, rng=np.random.default_rng(123))  # other numbers everywhere
    second.restore(io.load_checkpoint(path) if as_checkpoint else path)
    for k, p in first.model.params.items():
        np.testing.assert_array_equal(second.model.params[k], p)
    assert second.opt.t == first.opt.t == 6
    for slot in ("m", "v"):
        for k, a in getattr(first.opt, slot).items():
            np.testing.assert_array_equal(getattr(second.opt, slot)[k], a)
    assert second.rng.bit_generator.state == state
    np.testing.assert_array_equal(second.rng.random(3), first.rng.random(3))  # the same draws
    assert (second.history, second.done) == (first.history, 1)
    assert second.take_partial() == {k: figures[k] for k in
                                     ("step", "sums", "snapshots", "seconds", "cpu_seconds")}
    assert second.take_partial() is None  # once
    assert second.meta == {"preset": "p"}  # the run's own metadata, not history or complete
    assert second.last == (path, 1, 2)
    assert second.seconds_before == io.load_checkpoint(path).state["seconds"]  # as stored
    assert second.interrupted().message == (f"the last checkpoint is {path} (epoch 2 of 3, "
                                            f"step 2 of 4)")


def test_restore_refuses_a_state_that_does_not_fit_the_run(tmp_path):
    path, first, state, _ = saved_run(tmp_path)
    run = make_run(None, rng=np.random.Generator(np.random.MT19937(0)))
    with pytest.raises(ConfigError, match=re.escape(f"cannot resume from {path}: its random "
                                                    f"state does not fit a MT19937 Generator")):
        run.restore(path)
    with pytest.raises(ConfigError, match=r"other settings: seed 0 \(checkpoint\) vs 1 \(here\)"):
        Run(first.model, Adam(1e-3), np.random.default_rng(0), EPOCHS, STEPS, None, None, None,
            dict(SETTINGS, seed=1)).restore(path)

    take_steps(first, 1)  # t = 7, no longer epochs_done * 4 + step_in_epoch = 6
    first.save(1, 2, state, None)
    with pytest.raises(ConfigError, match=r"its position is inconsistent .* found epochs_done "
                                          r"1, step_in_epoch 2, t 7\)"):
        make_run(None).restore(path)
    take_steps(first, 1)  # t = 8 = 1 * 4 + 4, but step_in_epoch must stay below 4
    first.save(1, STEPS, state, None)
    with pytest.raises(ConfigError, match="its position is inconsistent"):
        make_run(None).restore(path)

    io.save(path, first.model, {"history": []}, state={"optimizer": first.opt.state(),
                                                        "rng": state, "epochs_done": 0})
    with pytest.raises(ConfigError, match="its training state lacks step_in_epoch, "
                                          "steps_per_epoch, sums, snapshots, epoch_seconds, "
                                          "epoch_cpu_seconds, seconds, settings$"):
        make_run(None).restore(path)
