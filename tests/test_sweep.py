"""`tinybnn sweep` on a tiny grid: one row per run, near-zero kernels counted, reuse of finished
runs, and a clear error for an impossible grid."""

import json
from pathlib import Path

import numpy as np
import pytest

from tinybnn import io
from tinybnn.errors import ConfigError
from tinybnn.jobs.sweep import SweepOptions, near_zero_kernels, plan, sweep


def tiny(tmp_path, **kw):
    base = dict(kernels="2,3", datasets="digits", presets="elbo", seeds="0", epochs=1,
                batch_size=64, n_jobs=1, dtype="float64", out=str(tmp_path))
    return SweepOptions(**dict(base, **kw))


def test_sweep_writes_rows_summary_and_plots(tmp_path):
    result = sweep(tiny(tmp_path), progress=False)
    assert len(result["runs"]) == 4  # 2 sizes x (Bayesian, vanilla)
    assert {(r["kernels"], r["bayesian"]) for r in result["runs"]} == \
        {(2, True), (2, False), (3, True), (3, False)}
    assert json.loads((tmp_path / "sweep.json").read_text())["summary"] == result["summary"]
    for name in ("accuracy_vs_kernels.png", "near_zero_kernels.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    # a second call reuses the finished runs (same numbers, no retraining)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/model.npz")}
    again = sweep(tiny(tmp_path), progress=False)
    assert [r["test_accuracy"] for r in again["runs"]] == [r["test_accuracy"] for r in result["runs"]]
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/model.npz")}


def test_near_zero_kernels_are_counted(tmp_path):
    from tinybnn.model import paper_cnn

    model = paper_cnn(4, input_shape=(1, 8, 8), kernel_size=3)
    model.params["conv.M"][1] = 1e-5
    io.save(tmp_path / "m.npz", model, {})
    zeros, norms = near_zero_kernels(tmp_path / "m.npz", 1e-3)
    assert zeros == 1 and np.isclose(norms[1], 3e-5)


@pytest.mark.parametrize("kw", [dict(kernels="0,2"), dict(kernels="a"), dict(seeds=""),
                                dict(n_jobs=0), dict(presets="nope")])
def test_impossible_grids(tmp_path, kw):
    with pytest.raises(ConfigError):
        plan(tiny(tmp_path, **kw))


def test_two_workers_use_one_thread_each(tmp_path):
    """With 2 workers on this 2-core machine every run trains with one numba and one BLAS
    thread (two thread pools per core slow each other down 4-10x), and says so."""
    import os

    result = sweep(tiny(tmp_path, kernels="2", vanilla=False, n_jobs=2), progress=False)
    threads = max(1, (os.cpu_count() or 1) // 2)
    for row in result["runs"]:
        metrics = json.loads((Path(row["folder"]) / "metrics.json").read_text())
        assert metrics["threads"]["numba"] == threads
        assert all(n == threads for n in metrics["threads"]["blas"])
