"""`tinybnn compress` end to end on the small digits set, and its one-line errors."""

import dataclasses
import json

import pytest

from tinybnn import io
from tinybnn.cli import main
from tinybnn.jobs.compress import CompressOptions, compress_run

QUICK = dict(dataset="digits", kernels=4, subset=0, epochs=2, batch_size=32, lr=3e-3,
             final_lr=1e-3, retrain_epochs=1, rule="count", value=1, max_stages=2,
             tolerance=0.5, progress=False)
FIGURES = ("self_compression", "norms", "kernels", "variances", "accuracy_vs_kernels")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compress")
    report = compress_run(CompressOptions(**QUICK, out=str(out)), log=lambda m: None)
    return out, report


def test_writes_report_plots_and_model(run):
    out, report = run
    names = {p.name for p in out.iterdir()}
    assert {"report.json", "report.md", "model.npz", "trained.npz"} <= names
    assert {f"{f}.png" for f in FIGURES} <= names
    assert json.loads((out / "report.json").read_text())["stop_reason"] == report["stop_reason"]
    md = (out / "report.md").read_text()
    for png in report["plots"].values():
        assert f"({png})" in md and (out / png).is_file()
    model, meta = io.load(out / "model.npz")
    assert model["conv"].n_kernels == report["final_kernels"] == len(meta["kernel_ids"])
    trained, meta = io.load(out / "trained.npz")  # before any stage
    assert trained["conv"].n_kernels == report["start_kernels"] == 4
    assert len(meta["history"]) == QUICK["epochs"]


def test_stages_record_what_was_removed(run):
    _, report = run
    stages = report["stages"]
    assert stages[0]["kernels"] == 4 and "vanilla" in stages[0]
    assert len(report["switched_off_by_epoch"]) == QUICK["epochs"]
    s1 = stages[1]
    assert len(s1["removed"]) == 1 and s1["kernels"] == 3
    removed = s1["removed"][0]
    assert s1["removed_norms"] == [min(stages[0]["kernel_norms"])]  # the lowest norm went
    assert stages[0]["kernel_norms"][removed] == s1["removed_norms"][0]
    assert removed not in s1["kernel_ids"] and len(s1["kernel_ids"]) == 3
    assert set(s1["change_on_removal"]) >= {"max_mean_change", "relative_cov_change"}
    for key in ("n_parameters", "parameter_bytes", "model_file_bytes", "flops_per_example",
                "inference_ms_per_100", "val_accuracy", "test_accuracy", "test_nll",
                "test_mean_predictive_variance", "seconds", "history", "before_retraining"):
        assert key in s1, key
    assert s1["n_parameters"]["total"] < stages[0]["n_parameters"]["total"]
    assert s1["parameter_bytes"] == 8 * s1["n_parameters"]["total"]  # float64
    assert s1["flops_per_example"] < stages[0]["flops_per_example"]
    v1 = s1["vanilla"]  # the vanilla twin pruned like it: its lowest-norm kernel went
    assert v1["kernels"] == 3 and v1["removed_norms"] == [min(stages[0]["vanilla"]["kernel_norms"])]
    assert report["stop_reason"]
    assert {"Bayesian, self-compression", "vanilla, pruned and retrained like the Bayesian",
            "vanilla, pruned by norm, no retraining",
            "Bayesian, pruned by norm, no retraining"} == set(report["baselines"])


def test_same_seed_same_report(run, tmp_path):
    _, report = run
    again = compress_run(CompressOptions(**QUICK, out=str(tmp_path)), log=lambda m: None)
    for a, b in zip(report["stages"], again["stages"]):
        assert a["test_accuracy"] == b["test_accuracy"] and a["removed"] == b["removed"]
        assert a["kernel_norms"] == b["kernel_norms"]


def test_no_decision_reads_the_test_split():
    """The same run with every test label changed takes the same decisions (the kernels of
    every stage, which stages are kept, why it stops); only the reported test figures move."""
    from tinybnn import data
    from tinybnn.compress import Plan, Target, finetune, self_compress
    from tinybnn.presets import resolve

    ds = data.load("digits", validation=0.1, seed=0)
    config = resolve("tinybnn", epochs=6, batch_size=32, lr=3e-3, final_lr=1e-3)
    target = Target("cnn", ds.train.x.shape[1:], 10)
    plan = Plan(rule="count", value=1, max_stages=3, tolerance=0.01)
    runs = []
    for labels in (ds.test.y, (ds.test.y + 1) % 10):
        split = dataclasses.replace(ds, test=dataclasses.replace(ds.test, y=labels))
        runs.append(self_compress(split, target, config, plan, n_kernels=5,
                                  retrain=finetune(split, config, epochs=1)))
    a, b = runs
    assert [r["kernel_ids"] for r in a.stages] == [r["kernel_ids"] for r in b.stages]
    assert [r["accepted"] for r in a.stages] == [r["accepted"] for r in b.stages]
    assert [r["val_accuracy"] for r in a.stages] == [r["val_accuracy"] for r in b.stages]
    assert a.stop_reason == b.stop_reason and a.kernel_ids == b.kernel_ids
    assert a.stages[0]["test_accuracy"] > 0.6 > 0.2 > b.stages[0]["test_accuracy"]


def test_start_from_a_model_file(run, tmp_path):
    out, report = run
    opts = dict(QUICK, vanilla=False, max_stages=1)
    said = []
    again = compress_run(CompressOptions(**opts, model=str(out / "model.npz"), out=str(tmp_path)),
                         log=said.append)
    assert again["start_kernels"] == report["final_kernels"]
    assert said[0].startswith("starting from") and "training" not in said[0]
    assert not (tmp_path / "trained.npz").exists()  # nothing was trained


def test_model_file_with_the_relu_before_the_pool(tmp_path):
    """Files written before paper_cnn pooled first (ReLU -> max-pool) still compress."""
    from tinybnn.architectures import paper_cnn
    from tinybnn.model import Sequential

    layers = dict(paper_cnn(4, input_shape=(1, 8, 8), seed=1).layers)
    order = ["conv", "relu", "pool", "flatten", "fc", "softmax"]
    io.save(tmp_path / "old.npz", Sequential([(n, layers[n]) for n in order],
                                             input_shape=(1, 8, 8)), {})
    opts = dict(QUICK, vanilla=False, max_stages=1)
    report = compress_run(CompressOptions(**opts, model=str(tmp_path / "old.npz"),
                                          out=str(tmp_path / "o")), log=lambda m: None)
    assert report["start_kernels"] == 4 and report["final_kernels"] == 3
    assert [n for n, _ in io.load(tmp_path / "o" / "model.npz")[0].layers] == order


def test_mlp_hidden_units_compress(tmp_path):
    """Beyond the paper: the units of an MLP's first hidden layer, ranked by incoming norm."""
    opts = dict(QUICK, architecture="mlp", kernels=12, hidden="6", vanilla=False,
                max_stages=1, value=3)
    report = compress_run(CompressOptions(**opts, out=str(tmp_path)), log=lambda m: None)
    assert report["pruned_layer"] == "fc1" and report["stages"][1]["kernels"] == 9
    model, _ = io.load(tmp_path / "model.npz")
    assert model.params["fc1.M"].shape == (64, 9) and model.params["fc2.M"].shape == (9, 6)


@pytest.mark.parametrize("argv,message", [
    (["--criterion", "magic"], "invalid choice: 'magic'"),
    (["--rule", "threshold", "--value", "1e9"], "selects all 4 kernels"),
    (["--kernels", "0"], "kernels must be an integer >= 1"),
    (["--rule", "median_fraction", "--value", "1"], "median_fraction needs 0 < value < 1"),
    (["--rule", "count", "--value", "4"], "count must be between 0 and 3"),
])
def test_one_line_errors(tmp_path, capsys, argv, message):
    base = ["compress", "--dataset", "digits", "--kernels", "4", "--subset", "0", "--epochs", "1",
            "--no-vanilla", "--no-progress", "--out", str(tmp_path / "o")]
    code = main(base + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and err[-1].startswith("tinybnn: error:")
    assert not (tmp_path / "o" / "report.json").exists()
    assert not (tmp_path / "o" / "model.npz").exists()


def test_model_file_that_is_not_a_cnn(tmp_path, capsys):
    from tinybnn.architectures import mlp

    io.save(tmp_path / "mlp.npz", mlp((64, 8, 10), input_shape=(1, 8, 8)), {})
    code = main(["compress", "--dataset", "digits", "--subset", "0", "--model",
                 str(tmp_path / "mlp.npz"), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "is not a Bayesian paper CNN" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_unwritable_output(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    code = main(["compress", "--dataset", "digits", "--kernels", "2", "--subset", "0",
                 "--epochs", "1", "--no-progress", "--out", str(tmp_path / "f" / "x")])
    assert code == 2 and "cannot write to the output folder" in capsys.readouterr().err


def test_impossible_rule_values_fail_before_training(tmp_path, capsys):
    code = main(["compress", "--dataset", "digits", "--kernels", "4", "--subset", "0",
                 "--rule", "median_fraction", "--value", "1.5", "--no-progress",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "median_fraction needs 0 < value < 1" in capsys.readouterr().err
    assert not (tmp_path / "o" / "trained.npz").exists()  # nothing was trained
