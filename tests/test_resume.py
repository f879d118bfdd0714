"""Resumable training: a run interrupted at the end of an epoch or inside one, then resumed
from its checkpoint, ends with exactly the numbers of a run that was never interrupted; a
checkpoint that does not fit the run is refused; a divergence inside an epoch keeps the last
good checkpoint (the checkpoint file itself, and a writer killed mid-save: tests/test_io.py)."""

import numpy as np
import pytest

import tinybnn.train as train_module
from tinybnn import data, io
from tinybnn.architectures import paper_cnn
from tinybnn.checkpoints import Interrupted
from tinybnn.errors import ConfigError, DivergenceError
from tinybnn.losses import Objective
from tinybnn.train import fit

from vdp_helpers import digits_cnn

TIMES = ("seconds", "cpu_seconds")


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", validation=0.1, seed=0)  # 1212 training images


@pytest.fixture(scope="module")
def digits32():
    return data.load("digits", validation=0.1, seed=0, dtype=np.float32)


def small_cnn(dtype=np.float64):
    return digits_cnn(4, seed=2, dtype=dtype)


def settings(digits, optimizer):
    """3 epochs of 19 updates (batches of 64), decaying rates, 4 unit snapshots an epoch."""
    return dict(val=digits.val, objective=Objective(n_train=1212, regulariser="authors2019"),
                epochs=3, batch_size=64, lr=3e-3 if optimizer == "adam" else 1e-3,
                final_lr=1e-4, optimizer=optimizer, rate_scale={"rho": 10}, seed=5,
                progress=False, snapshots=4)


def without_times(history):
    return [{k: v for k, v in row.items() if k not in TIMES} for row in history]


def interrupt_at_update(monkeypatch, update):
    """Make fit raise KeyboardInterrupt when it is about to compute update ``update`` (1-based,
    counted from now), as Ctrl-C would."""
    calls = [0]
    real = train_module.loss_and_grads

    def loss_and_grads(*args, **kwargs):
        calls[0] += 1
        if calls[0] == update:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "loss_and_grads", loss_and_grads)


@pytest.mark.parametrize("optimizer,dtype", [("adam", np.float64), ("sgd", np.float32)])
def test_resumed_runs_end_with_the_numbers_of_an_uninterrupted_one(digits, digits32, tmp_path,
                                                                   monkeypatch, optimizer,
                                                                   dtype):
    digits = digits32 if dtype == np.float32 else digits
    kw = settings(digits, optimizer)
    reference = small_cnn(dtype)
    expected = fit(reference, digits.train, **kw)

    ckpt = tmp_path / "model.npz"
    model = small_cnn(dtype)
    # piece 1: checkpoints after updates 5, 10, 15 and 19 of epoch 1, 5 of epoch 2; Ctrl-C
    # while update 28 (epoch 2, update 9) is computed: the run resumes from epoch 2, update 5
    interrupt_at_update(monkeypatch, 28)
    with pytest.raises(Interrupted) as stop:
        fit(model, digits.train, **kw, checkpoint=ckpt, checkpoint_every=5)
    assert stop.value.message == f"the last checkpoint is {ckpt} (epoch 2 of 3, step 5 of 19)"
    assert (stop.value.checkpoint, stop.value.epoch, stop.value.step) == (ckpt, 2, 5)
    saved = io.load_checkpoint(ckpt)
    assert (saved.state["epochs_done"], saved.state["step_in_epoch"]) == (1, 5)
    assert len(saved.state["snapshots"]) == 1 and saved.state["optimizer"]["t"] == 24
    monkeypatch.undo()

    # piece 2, a fresh network and optimiser: resumed inside epoch 2, stopped by on_epoch
    # after epoch 2 (its checkpoint is written before on_epoch runs)
    def stop_after_epoch_2(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    model = small_cnn(dtype)
    with pytest.raises(Interrupted, match=r"\(epoch 2 of 3, step 19 of 19\)"):
        fit(model, digits.train, **kw, checkpoint=ckpt, checkpoint_every=5, resume=ckpt,
            on_epoch=stop_after_epoch_2)

    # piece 3: from the end of epoch 2 to the end, checkpointing at epoch ends only
    model = small_cnn(dtype)
    history = fit(model, digits.train, **kw, checkpoint=ckpt, resume=ckpt)
    for k, p in reference.params.items():
        np.testing.assert_array_equal(model.params[k], p)
        assert model.params[k].dtype == dtype
    assert without_times(history) == without_times(expected)
    assert [len(row["snapshots"]) for row in history] == [3, 3, 3]
    final = io.load_checkpoint(ckpt)
    assert final.meta["complete"] and without_times(final.meta["history"]) == without_times(
        expected)
    assert list(tmp_path.iterdir()) == [ckpt]  # no temporary files left behind


def test_resuming_a_finished_checkpoint_trains_no_more(digits, tmp_path):
    kw = dict(settings(digits, "adam"), epochs=1)
    ckpt = tmp_path / "model.npz"
    done = small_cnn()
    history = fit(done, digits.train, **kw, checkpoint=ckpt)
    again = small_cnn()
    assert without_times(fit(again, digits.train, **kw, resume=ckpt)) == without_times(history)
    for k, p in done.params.items():
        np.testing.assert_array_equal(again.params[k], p)


def test_a_checkpoint_that_does_not_fit_the_run_is_refused(digits, digits32, tmp_path):
    kw = dict(settings(digits, "adam"), epochs=2)
    ckpt = tmp_path / "model.npz"
    fit(small_cnn(), digits.train, **kw, checkpoint=ckpt)
    with pytest.raises(ConfigError, match=r"other settings: batch_size 64 \(checkpoint\) vs "
                                          r"50 \(here\)"):
        fit(small_cnn(), digits.train, **dict(kw, batch_size=50), resume=ckpt)
    with pytest.raises(ConfigError, match=r"other settings: seed 5 .* vs 6"):
        fit(small_cnn(), digits.train, **dict(kw, seed=6), resume=ckpt)
    with pytest.raises(ConfigError, match="other settings: optimizer 'adam'"):
        fit(small_cnn(), digits.train, **dict(kw, optimizer="sgd"), resume=ckpt)
    with pytest.raises(ConfigError, match="other settings: n_train 1212"):
        fit(small_cnn(), digits.val, **kw, resume=ckpt)  # other data
    with pytest.raises(ConfigError, match="its network .* is not the one being trained"):
        fit(paper_cnn(5, input_shape=(1, 8, 8), kernel_size=3), digits.train, **kw,
            resume=ckpt)
    with pytest.raises(ConfigError, match="its network .* is not the one being trained"):
        fit(small_cnn(np.float32), digits32.train, **dict(kw, val=digits32.val), resume=ckpt)
    plain = tmp_path / "plain.npz"  # a model file without a training state (older tinybnn)
    io.save(plain, small_cnn(), {"history": []})
    with pytest.raises(ConfigError, match="no training state"):
        fit(small_cnn(), digits.train, **kw, resume=plain)


def test_divergence_inside_an_epoch_keeps_the_last_good_checkpoint(digits, tmp_path,
                                                                   monkeypatch):
    """NaN parameters after update 10 are caught before the checkpoint due then is written."""
    real, calls = train_module.loss_and_grads, [0]

    def poisoned(*args, **kwargs):
        calls[0] += 1
        parts, grads = real(*args, **kwargs)
        if calls[0] == 10:
            grads["conv.M"][...] = np.nan  # the loss stays finite; the update spoils conv.M
        return parts, grads

    monkeypatch.setattr(train_module, "loss_and_grads", poisoned)
    ckpt = tmp_path / "model.npz"
    with pytest.raises(DivergenceError, match=f"conv.M holds NaN or Inf after step 10; last "
                                              f"good checkpoint: {ckpt}"):
        fit(small_cnn(), digits.train, **settings(digits, "adam"), checkpoint=ckpt,
            checkpoint_every=5)
    saved = io.load_checkpoint(ckpt)
    assert saved.state["step_in_epoch"] == 5
