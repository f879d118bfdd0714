"""Resumable training: a run interrupted at the end of an epoch or inside one, then resumed
from its checkpoint, ends with exactly the numbers of a run that was never interrupted; a
checkpoint that does not fit the run is refused; a writer killed with SIGKILL mid-save leaves
the previous checkpoint loadable."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tinybnn.train as train_module
from tinybnn import data, io
from tinybnn.architectures import mlp, paper_cnn
from tinybnn.checkpoints import Interrupted
from tinybnn.errors import ConfigError, DivergenceError, ModelFileError
from tinybnn.losses import Objective
from tinybnn.optim import SGD, Adam
from tinybnn.train import fit

TIMES = ("seconds", "cpu_seconds")


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", validation=0.1, seed=0)  # 1212 training images


@pytest.fixture(scope="module")
def digits32():
    return data.load("digits", validation=0.1, seed=0, dtype=np.float32)


def small_cnn(dtype=np.float64):
    return paper_cnn(4, input_shape=(1, 8, 8), kernel_size=3, seed=2, rho_range=(-10, -9),
                     dtype=dtype)


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


def test_checkpoint_file_layout_and_old_files(tmp_path):
    model = small_cnn()
    opt = Adam(1e-3)
    opt.step(model.params, {k: np.ones_like(p) for k, p in model.params.items()})
    rng = np.random.default_rng(3)
    state = {"optimizer": opt.state(), "rng": rng.bit_generator.state, "epochs_done": 0}
    ckpt, plain = tmp_path / "ckpt.npz", tmp_path / "plain.npz"
    io.save(ckpt, model, {"note": 1}, state=state)
    io.save(plain, model, {"note": 1})
    with np.load(ckpt) as z:
        names = set(z.files)
    assert {f"optim/{slot}/{k}" for slot in "mv" for k in model.params} | {"__train__"} <= names
    loaded, meta = io.load(ckpt)  # a checkpoint is also a plain model file
    assert meta == {"note": 1}
    back = io.load_checkpoint(ckpt)
    assert back.state["rng"] == rng.bit_generator.state  # the 128-bit integers survive JSON
    assert back.state["version"] == io.TRAIN_STATE_VERSION
    for k, p in opt.m.items():
        np.testing.assert_array_equal(back.state["optimizer"]["slots"]["m"][k], p)
    again = Adam(1e-3)
    again.load_state(back.state["optimizer"])
    p1, p2 = ({k: v.copy() for k, v in model.params.items()} for _ in range(2))
    g = {k: np.full_like(v, 0.5) for k, v in p1.items()}
    opt.step(p1, g), again.step(p2, g)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert io.load_checkpoint(plain).state is None  # an old file: a model, no state

    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    broken = dict(arrays, **{"optim/m/fc.M": arrays["optim/m/fc.M"][:-1]})
    np.savez(tmp_path / "shape.npz", **broken)
    with pytest.raises(ModelFileError, match="optimiser's m array of fc.M is float64"):
        io.load_checkpoint(tmp_path / "shape.npz")
    broken = {k: v for k, v in arrays.items() if k != "optim/v/fc.b"}
    np.savez(tmp_path / "missing.npz", **broken)
    with pytest.raises(ModelFileError, match="optimiser's v arrays are for the parameters"):
        io.load_checkpoint(tmp_path / "missing.npz")
    broken = dict(arrays, __train__=np.array('{"version": 99}'))
    np.savez(tmp_path / "newer.npz", **broken)
    with pytest.raises(ModelFileError, match="written by a newer tinybnn"):
        io.load_checkpoint(tmp_path / "newer.npz")
    io.load(tmp_path / "newer.npz")  # the model itself is still readable
    with pytest.raises(ConfigError, match="other settings than this optimiser: beta1"):
        Adam(1e-3, beta1=0.5).load_state(back.state["optimizer"])
    with pytest.raises(ConfigError, match="expected the state of a sgd optimiser"):
        SGD(1e-3).load_state(back.state["optimizer"])


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


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from tinybnn import io
    from tinybnn.architectures import mlp
    from tinybnn.optim import Adam

    model = mlp((784, 200, 10), input_shape=(1, 28, 28), seed=0)
    opt = Adam(1e-3)
    rng = np.random.default_rng(0)
    opt.step(model.params, {k: rng.normal(size=p.shape) for k, p in model.params.items()})
    for i in range(10**6):
        io.save(sys.argv[1], model, {"i": i}, state={"optimizer": opt.state(), "i": i})
        if i == 0:
            print("saved", flush=True)
""")


def test_a_writer_killed_mid_save_leaves_the_previous_checkpoint(tmp_path):
    """Kill a process that saves a 3.7 MB checkpoint in a loop (about 0.2 s a save here) with
    SIGKILL at random moments: every time the file loads, and the temporary file a kill leaves
    breaks neither the next save nor the next load; the next save removes leftovers older than
    a minute (io.STALE_TMP_SECONDS)."""
    target = tmp_path / "model.npz"
    chance, leftovers = random.Random(0), 0
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "saved"
            time.sleep(chance.uniform(0.05, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        ck = io.load_checkpoint(target)  # the old file or the new one, whole
        assert ck.meta["i"] == ck.state["i"] >= 0
        assert sorted(ck.state["optimizer"]["slots"]) == ["m", "v"]
        temporaries = sorted(tmp_path.glob(".model.npz.*.tmp"))
        leftovers = max(leftovers, len(temporaries))
    assert leftovers >= 1, "no kill landed inside a save; the test did not test anything"
    io.save(target, mlp((4, 3)), {"i": -1})  # a save and a load beside the leftovers
    assert io.load(target)[1] == {"i": -1}
    assert len(list(tmp_path.glob(".model.npz.*.tmp"))) == leftovers  # too young to remove
    old = time.time() - 2 * io.STALE_TMP_SECONDS
    for tmp in tmp_path.glob(".model.npz.*.tmp"):
        os.utime(tmp, (old, old))
    io.save(target, mlp((4, 3)), {"i": -2})
    assert list(tmp_path.iterdir()) == [target]
