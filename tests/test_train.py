"""Training on the small digits set: learning happens, the same seed gives the same numbers,
divergence and interruption leave a loadable checkpoint, and impossible settings are refused
(model files: tests/test_io.py; metrics: tests/test_evaluate.py)."""

import numpy as np
import pytest

from tinybnn import data, io
from tinybnn.architectures import mlp
from tinybnn.errors import ConfigError, DivergenceError
from tinybnn.evaluate import evaluate, predict
from tinybnn.losses import Objective
from tinybnn.train import fit

from vdp_helpers import digits_cnn as small_cnn


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", validation=0.1, seed=0)


def test_bayesian_cnn_learns_digits(digits):
    model = small_cnn()
    history = fit(model, digits.train, val=digits.val, objective=Objective(n_train=1212),
                  epochs=6, batch_size=50, lr=3e-3, progress=False)
    test = evaluate(model, digits.test)
    assert test["accuracy"] > 0.7, test  # chance is 0.1; 6 short epochs give about 0.8
    assert history[-1]["train_nll"] < history[0]["train_nll"]
    assert history[-1]["val_accuracy"] > history[0]["val_accuracy"] - 0.05
    assert test["mean_predictive_variance"] > 0
    keys = {"epoch", "lr", "seconds", "train_loss", "train_nll", "train_reg", "train_accuracy",
            "val_accuracy", "val_nll", "val_log_loss", "val_mean_predictive_variance"}
    assert keys <= set(history[0])


def test_vanilla_cnn_and_mlp_learn_digits(digits):
    for model in (small_cnn(bayesian=False), mlp((64, 32, 10), input_shape=(1, 8, 8))):
        fit(model, digits.train, objective=Objective(n_train=1212), epochs=6, batch_size=50,
            lr=3e-3, progress=False)
        assert evaluate(model, digits.test)["accuracy"] > 0.7


def test_same_seed_same_numbers(digits):
    runs = []
    for _ in range(2):
        model = small_cnn(seed=3)
        h = fit(model, digits.train, val=digits.val, epochs=2, batch_size=64, seed=5,
                progress=False)
        runs.append(([{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")}
                      for r in h], model.params))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])


def test_divergence_names_the_step_and_keeps_the_checkpoint(digits, tmp_path):
    model = small_cnn()
    ckpt = tmp_path / "model.npz"

    def poison(row):
        if row["epoch"] == 1:
            model.params["fc.M"][0, 0] = np.nan

    # 1212 training examples / batch 64 = 19 steps per epoch, so epoch 2 starts at step 20
    with pytest.raises(DivergenceError, match=r"diverged at step 20 \(epoch 2, batch 1\).*"
                                              + str(ckpt).replace(".", r"\.")):
        fit(model, digits.train, epochs=3, batch_size=64, progress=False, checkpoint=ckpt,
            on_epoch=poison)
    saved, meta = io.load(ckpt)
    assert len(meta["history"]) == 1 and not meta["complete"]
    assert all(np.all(np.isfinite(p)) for p in saved.params.values())


def test_interrupt_leaves_last_complete_epoch(digits, tmp_path):
    model = small_cnn()
    ckpt = tmp_path / "model.npz"

    def stop(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:  # tinybnn.checkpoints.Interrupted: it names it
        fit(model, digits.train, epochs=5, batch_size=64, progress=False, checkpoint=ckpt,
            on_epoch=stop)
    assert caught.value.message == f"the last checkpoint is {ckpt} (epoch 2 of 5, step 19 of 19)"
    saved, meta = io.load(ckpt)
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    mean, _ = predict(saved, digits.test.x)
    np.testing.assert_allclose(mean, predict(model, digits.test.x)[0])
    assert list(tmp_path.iterdir()) == [ckpt]  # no temporary files left behind


@pytest.mark.parametrize("kwargs", [dict(epochs=0), dict(batch_size=0), dict(batch_size=10**6),
                                    dict(lr=-1.0), dict(optimizer="rmsprop"),
                                    dict(checkpoint_every=-1),
                                    dict(checkpoint_every=5)])  # without a checkpoint path
def test_fit_rejects_impossible_settings(digits, kwargs):
    with pytest.raises(ConfigError):
        fit(small_cnn(), digits.train, progress=False, **kwargs)
