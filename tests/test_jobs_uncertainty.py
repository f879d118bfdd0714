"""`tinybnn uncertainty` (and the "uncertainty" entry of `tinybnn evaluate`): the files it
writes, with given models and with a quick pair it trains itself, and one-line errors (exit 2)
for missing or wrong model files, impossible levels and an unwritable folder."""

import json

import numpy as np
import pytest

from tinybnn import data, io
from tinybnn.architectures import mlp
from tinybnn.cli import main
from tinybnn.jobs.uncertainty import summary
from tinybnn.losses import Objective
from tinybnn.train import fit

FAST = ["--test-subset", "60", "--mc-samples", "4", "--mc-images", "15", "--no-progress"]
PNGS = ["fgsm.png", "monte_carlo.png", "noise.png", "ood.png", "reliability.png"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digit_models(tmp_path_factory):
    """A Bayesian and a vanilla MLP 64-16-10 trained briefly on the digits, as model files."""
    folder = tmp_path_factory.mktemp("models")
    ds = data.load("digits", validation=0.0, seed=0)
    paths = {}
    for bayesian in (True, False):
        m = mlp((64, 16, 10), bayesian=bayesian, input_shape=(1, 8, 8), seed=0)
        fit(m, ds.train, objective=Objective(n_train=len(ds.train.y)), epochs=3, batch_size=50,
            lr=1e-2, seed=0, progress=False)
        paths[bayesian] = folder / ("bayes.npz" if bayesian else "vanilla.npz")
        io.save(paths[bayesian], m, {"options": {"dataset": "digits", "model": "mlp"}})
    regression = mlp((64, 4, 1), task="regression", input_shape=(1, 8, 8))
    paths["regression"] = folder / "regression.npz"
    io.save(paths["regression"], regression, {"options": {"dataset": "digits"}})
    return paths


def given(paths, out):
    return ["uncertainty", "--bayes-model", str(paths[True]), "--vanilla-model",
            str(paths[False]), "--dataset", "digits", "--ood-dataset", "uniform", *FAST,
            "--out", str(out)]


def test_uncertainty_with_model_files_writes_json_and_plots(digit_models, tmp_path, capsys):
    code, out, err = run(given(digit_models, tmp_path / "u"), capsys)
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "u").iterdir())
    assert files == sorted(PNGS + ["uncertainty.json"])
    for png in PNGS:
        assert (tmp_path / "u" / png).read_bytes()[:4] == b"\x89PNG"
    r = json.loads((tmp_path / "u" / "uncertainty.json").read_text())
    assert r["n_test"] == 60 and r["dataset"] == "digits"
    assert r["noise"]["bayes"]["std"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert len(r["fgsm"]["targeted"]["vanilla"]["success_rate"]) == 6
    assert set(r["ood"]["bayes"]["auroc"]) == {"confidence", "predicted_variance", "trace",
                                               "entropy"}
    assert set(r["ood"]["vanilla"]["auroc"]) == {"confidence", "entropy"}
    assert 0 <= r["calibration"]["vanilla"]["ece"] <= 1
    assert r["monte_carlo"]["rows"][-1]["samples"] == 4
    assert r["models"]["bayes"]["test_accuracy"] > 0.5
    assert r["reference"]["noise"]["vdp"][0] == 97.6
    short = json.loads(out)
    assert short["bayes"]["test_accuracy"] == r["models"]["bayes"]["test_accuracy"]
    assert short == summary(r)
    assert list(short["vanilla"]) == ["test_accuracy", "noise_accuracy", "ood_auroc", "ece"]


def test_uncertainty_trains_a_quick_pair(tmp_path, capsys):
    code, _, err = run(["uncertainty", "--dataset", "digits", "--ood-dataset", "uniform",
                        "--quick-kernels", "2", "--quick-subset", "200", "--quick-epochs", "1",
                        "--mc-samples", "0", "--test-subset", "30", "--no-progress",
                        "--epsilons", "0,0.2", "--noise-stds", "0,0.5",
                        "--out", str(tmp_path / "q")], capsys)
    assert code == 0, err
    r = json.loads((tmp_path / "q" / "uncertainty.json").read_text())
    assert r["models"]["bayes"]["path"].endswith("quick_bayes/model.npz")
    assert r["models"]["vanilla"]["trained"]["subset"] == 200
    assert "monte_carlo" not in r
    assert (tmp_path / "q" / "quick_vanilla" / "model.npz").is_file()


def test_evaluate_json_has_an_uncertainty_entry(digit_models, capsys):
    code, out, err = run(["evaluate", str(digit_models[True])], capsys)
    assert code == 0, err
    u = json.loads(out)["uncertainty"]
    assert set(u) >= {"accuracy", "confidence", "predicted_variance", "trace", "entropy"}
    assert u["trace"]["all"] > 0 and 0 < u["confidence"]["correct"] <= 1
    code, out, _ = run(["evaluate", str(digit_models[False])], capsys)
    assert json.loads(out)["uncertainty"]["trace"]["all"] is None


def error_cases(paths, tmp):
    base = ["--dataset", "digits", "--ood-dataset", "uniform", *FAST, "--out", str(tmp / "e")]
    B, V = str(paths[True]), str(paths[False])
    blocker = tmp / "a-file"
    blocker.write_text("not a folder")
    return {
        "missing file": (["--bayes-model", str(tmp / "nope.npz"), "--vanilla-model", V],
                         "no model file at"),
        "not a model": (["--bayes-model", str(blocker), "--vanilla-model", V], "model file"),
        "only one model": (["--bayes-model", B], "give both --bayes-model and --vanilla-model"),
        "swapped": (["--bayes-model", V, "--vanilla-model", B],
                    "should hold a Bayesian network, found a vanilla one"),
        "regression": (["--bayes-model", str(paths["regression"]), "--vanilla-model", V],
                       "need a classifier"),
        "negative eps": (["--bayes-model", B, "--vanilla-model", V, "--epsilons", "0,-0.1"],
                         r"must lie in \[0, 1\]"),
        "huge std": (["--bayes-model", B, "--vanilla-model", V, "--noise-stds", "0.1,3"],
                     r"must lie in \[0, 1\]"),
        "not numbers": (["--bayes-model", B, "--vanilla-model", V, "--epsilons", "0,big"],
                        "comma-separated numbers"),
        "shape": (["--bayes-model", B, "--vanilla-model", V, "--ood-dataset", "mnist"],
                  r"take images of shape \(1, 8, 8\)"),
        "bins": (["--bayes-model", B, "--vanilla-model", V, "--bins", "0"], "bins must be"),
        "unwritable": (["--bayes-model", B, "--vanilla-model", V, "--out",
                        str(blocker / "sub")], "cannot write to the output folder"),
    }, base


@pytest.mark.parametrize("case", ["missing file", "not a model", "only one model", "swapped",
                                  "regression", "negative eps", "huge std", "not numbers",
                                  "shape", "bins", "unwritable"])
def test_bad_input_is_one_line_and_exit_2(case, digit_models, tmp_path, capsys):
    import re

    cases, base = error_cases(digit_models, tmp_path)
    extra, match = cases[case]
    code, _, err = run(["uncertainty", *base, *extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinybnn: error: "), err
    assert re.search(match, lines[0]), lines[0]


def test_defaults_are_mnist_against_fashion_mnist():
    """The default datasets (MNIST in, Fashion-MNIST out) load and pass through the OOD test
    with an untrained 784-8-10 MLP (the whole command on them is run in docs/UNCERTAINTY.md)."""
    from tinybnn.jobs.uncertainty import UncertaintyOptions, _images
    from tinybnn.robustness import ood_detection

    o = UncertaintyOptions()
    assert (o.dataset, o.ood_dataset, o.test_subset) == ("mnist", "fashion_mnist", 2000)
    model = mlp((784, 8, 10), input_shape=(1, 28, 28))
    x, y = _images(o.dataset, model, 20, 0, model.input_shape)
    x_ood, _ = _images(o.ood_dataset, model, 20, 0, model.input_shape)
    assert x.shape == x_ood.shape == (20, 1, 28, 28) and y.shape == (20,)
    r = ood_detection(model, x, x_ood)
    assert np.isfinite(r["auroc"]["entropy"])
