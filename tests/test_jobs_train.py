"""`tinybnn train` and `tinybnn evaluate` on the small digits set: the files they write, the
same seed giving the same metrics, and one-line errors for impossible options."""

import json
import subprocess
import sys

import pytest

from tinybnn import io
from tinybnn.cli import main

QUICK = ["--dataset", "digits", "--kernels", "3", "--epochs", "1", "--batch-size", "64",
         "--no-progress"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_model_metrics_and_plot(tmp_path, capsys):
    code, out, err = run(["train", *QUICK, "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["kernel_norms.png", "learning_curves.png", "metrics.json", "model.npz"]
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    for key in ("test_accuracy", "n_kernels", "n_parameters", "epochs", "seconds", "seed",
                "preset", "dataset"):
        assert key in metrics, key
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["n_kernels"] == 3
    assert metrics["dataset"] == "digits" and metrics["preset"] == "tinybnn"
    model, meta = io.load(tmp_path / "a" / "model.npz")
    assert meta["complete"] and meta["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert model.n_parameters()["total"] == metrics["n_parameters"]
    assert (tmp_path / "a" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"

    code, out, err = run(["evaluate", str(tmp_path / "a" / "model.npz")], capsys)
    assert code == 0, err
    again = json.loads(out)
    assert again["test_accuracy"] == metrics["test_accuracy"]
    assert again["n_parameters"] == metrics["n_parameters"]


def test_same_seed_gives_same_metrics(tmp_path, capsys):
    results = []
    for name in ("x", "y"):
        assert run(["train", *QUICK, "--vanilla", "--seed", "7", "--out", str(tmp_path / name)],
                   capsys)[0] == 0
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        m.pop("seconds")
        m["options"].pop("out")
        for row in m["history"]:  # the times of each epoch vary, nothing else may
            row.pop("seconds"), row.pop("cpu_seconds")
        results.append(m)
    assert results[0] == results[1]


def test_mlp_and_presets(tmp_path, capsys):
    for extra in (["--model", "mlp", "--hidden", "16,16"], ["--preset", "authors2019"],
                  ["--preset", "authors_later", "--dtype", "float32"]):
        code, out, err = run(["train", *QUICK, *extra, "--out", str(tmp_path / "m")], capsys)
        assert code == 0, err


@pytest.mark.parametrize("argv,message", [
    (["--kernels", "0"], "kernels must be an integer >= 1"),
    (["--lr", "-0.1"], "learning rate must be a positive number"),
    (["--batch-size", "100000"], "batch size must be at most the"),
    (["--epochs", "0"], "epochs must be an integer >= 1"),
    (["--preset", "magic"], "unknown preset 'magic'"),
    (["--hidden", "4,x", "--model", "mlp"], "hidden must be comma-separated"),
    (["--validation", "1.5"], "validation must be a fraction"),
    (["--dataset", "cifar"], "cifar"),
    (["--nll-beta", "2"], "nll beta must lie in [0, 1]"),
])
def test_impossible_values_give_one_line(tmp_path, capsys, argv, message):
    base = ["train", "--dataset", "digits", "--epochs", "1", "--no-progress"]
    code, out, err = run([*base, *argv, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert message in err and err.startswith("tinybnn: error:") and err.count("\n") == 1


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(["train", *QUICK, "--out", str(blocker / "sub")], capsys)
    assert code == 2 and "cannot write to the output folder" in err and err.count("\n") == 1


def test_evaluate_bad_file_and_unknown_option_exit_cleanly(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    for argv in (["evaluate", str(bad)], ["train", "--no-such-option"]):
        proc = subprocess.run([sys.executable, "-m", "tinybnn", *argv], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_rho_init_and_rate_options(tmp_path, capsys):
    code, _, err = run(["train", *QUICK, "--rho-init=-6,-5", "--rho-rate", "10",
                        "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["options"]["rho_init"] == "-6,-5" and metrics["options"]["rho_rate"] == 10
    code, _, err = run(["train", *QUICK, "--rho-init=-5,-6", "--out", str(tmp_path / "x")],
                       capsys)
    assert code == 2 and "rho init must be 'low,high' with low <= high" in err


def test_relu_option(tmp_path, capsys):
    """The MLP trains with the exact ReLU on request; the CNN refuses it in one line."""
    code, out, _ = run(["train", *QUICK, "--model", "mlp", "--hidden", "8", "--relu", "exact",
                        "--out", str(tmp_path / "m")], capsys)
    assert code == 0
    from tinybnn import io

    model, _ = io.load(tmp_path / "m" / "model.npz")
    assert "ReLUExact" in [type(layer).__name__ for _, layer in model.layers]
    code, _, err = run(["train", *QUICK, "--relu", "exact", "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and "the exact ReLU is for MLPs" in err and err.count("\n") == 1


def test_resume_ends_with_the_files_of_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    """Ctrl-C inside epoch 2 (here: a KeyboardInterrupt raised while its update 10 is
    computed), then `tinybnn train --resume OUT`: the same parameters bit for bit and the same
    metrics.json as a run that was never interrupted, but for the times and the folder."""
    import math

    import numpy as np

    import tinybnn.train as train_module
    from tinybnn import data
    from tinybnn.jobs.train import TrainOptions, train_run
    from tinybnn.checkpoints import Interrupted

    argv = [*QUICK, "--epochs", "2", "--checkpoint-every", "7"]
    assert run(["train", *argv, "--out", str(tmp_path / "whole")], capsys)[0] == 0
    steps = math.ceil(len(data.load("digits", validation=1 / 12, seed=0).train.y) / 64)

    real, calls = train_module.loss_and_grads, [0]

    def ctrl_c_in_epoch_2(*args, **kwargs):
        calls[0] += 1
        if calls[0] == steps + 10:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "loss_and_grads", ctrl_c_in_epoch_2)
    out = tmp_path / "cut"
    options = TrainOptions(dataset="digits", kernels=3, epochs=2, batch_size=64,
                           checkpoint_every=7, progress=False, out=str(out))
    with pytest.raises(Interrupted) as stop:
        train_run(options)
    assert stop.value.message == (f"the last checkpoint is {out}/model.npz (epoch 2 of 2, step "
                                  f"7 of {steps}); resume with: tinybnn train --resume {out}")
    calls[0] = 0  # the same through the command line (the same run, the same checkpoint)
    code, _, err = run(["train", *argv, "--out", str(out)], capsys)
    assert code == 130 and err.splitlines()[-1] == f"tinybnn: interrupted; {stop.value.message}"
    monkeypatch.undo()

    code, _, err = run(["train", "--resume", str(out), "--no-progress"], capsys)
    assert code == 0, err
    assert err.startswith(f"resuming {out}/model.npz (epoch 2 of 2, step 7 of {steps})")
    results = []
    for name in ("whole", "cut"):
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        m.pop("seconds")
        m["options"].pop("out")
        for row in m["history"]:
            row.pop("seconds"), row.pop("cpu_seconds")
        results.append(m)
    assert results[0] == results[1]
    whole, cut = (io.load(tmp_path / name / "model.npz")[0] for name in ("whole", "cut"))
    for k, p in whole.params.items():
        np.testing.assert_array_equal(cut.params[k], p)
    assert io.load_checkpoint(out / "model.npz").state is None  # a finished run keeps no state


def test_resume_takes_no_other_options_and_needs_a_run_to_continue(tmp_path, capsys):
    out = tmp_path / "done"
    assert run(["train", *QUICK, "--out", str(out)], capsys)[0] == 0
    for argv, message in (
            (["--epochs", "3", "--seed", "1"], "found --epochs, --seed too (only "
                                               "--progress/--no-progress may be given"),
            (["--out", str(tmp_path / "other")], "found --out too"),
            ([], "nothing to resume: " + str(out / "model.npz") + " is a finished run"),
    ):
        code, _, err = run(["train", "--resume", str(out), *argv], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
    code, _, err = run(["train", "--resume", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "expected the checkpoint" in err and err.count("\n") == 1
    code, _, err = run(["train", *QUICK, "--checkpoint-every", "-1", "--out", str(out)], capsys)
    assert code == 2 and "checkpoint every must be an integer >= 0" in err
