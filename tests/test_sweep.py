"""`tinybnn sweep` on a tiny grid: one row per run, near-zero kernels counted, reuse of finished
runs, a clear error for an impossible grid, and the same rows on a Dask cluster."""

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tinybnn import io
from tinybnn.errors import ConfigError
from tinybnn.jobs.sweep import (CLUSTER_INSTALL, SweepOptions, near_zero_kernels, plan, sweep,
                                worker_threads)


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
    from tinybnn.architectures import paper_cnn

    model = paper_cnn(4, input_shape=(1, 8, 8), kernel_size=3)
    model.params["conv.M"][1] = 1e-5
    io.save(tmp_path / "m.npz", model, {})
    zeros, norms = near_zero_kernels(tmp_path / "m.npz", 1e-3)
    assert zeros == 1 and np.isclose(norms[1], 3e-5)


@pytest.mark.parametrize("kw", [dict(kernels="0,2"), dict(kernels="a"), dict(seeds=""),
                                dict(n_jobs=0), dict(presets="nope"), dict(backend="spark"),
                                dict(scheduler="tcp://127.0.0.1:8786"),
                                dict(backend="dask", scheduler=" ")])
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


# --- --backend dask ---------------------------------------------------------------------------

def comparable(result):
    """The run rows without what may differ from one run of the same grid to another."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "folder")}
            for r in result["runs"]]


@pytest.fixture
def local_cluster():
    """A LocalCluster of 2 worker processes with one thread each, always closed after."""
    import distributed  # the test extra installs it

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def test_dask_gives_the_rows_of_loky_with_one_thread_a_run(tmp_path, local_cluster):
    """The same grid on a Dask cluster and on loky: the same rows (every run is deterministic
    given its seed); each run on a 1-thread worker had 1 numba and 1 BLAS thread; a second
    sweep on the cluster reuses the finished runs."""
    address = local_cluster.scheduler_address
    on_dask = sweep(tiny(tmp_path / "dask", backend="dask", scheduler=address), progress=False)
    # as many loky processes as cores, so that each run has 1 thread there too
    on_loky = sweep(tiny(tmp_path / "loky", n_jobs=os.cpu_count() or 1), progress=False)
    assert len(on_dask["runs"]) == 4
    assert comparable(on_dask) == comparable(on_loky)
    assert on_dask["summary"] == on_loky["summary"]
    for row in on_dask["runs"]:
        assert Path(row["folder"]).is_absolute()
        assert Path(row["folder"]).parent == (tmp_path / "dask" / "runs").resolve()
        threads = json.loads((Path(row["folder"]) / "metrics.json").read_text())["threads"]
        assert threads["numba"] == 1 and all(n == 1 for n in threads["blas"]), threads
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "dask").glob("runs/*/model.npz")}
    again = sweep(tiny(tmp_path / "dask", backend="dask", scheduler=address), progress=False)
    assert comparable(again) == comparable(on_dask)
    assert before == {p: p.stat().st_mtime_ns
                      for p in (tmp_path / "dask").glob("runs/*/model.npz")}


def test_worker_threads_share_the_workers_cores(monkeypatch):
    """A run gets its worker's cores (its `cores` resource, else one per worker thread)
    divided by the runs the worker runs at once."""
    import distributed

    def worker(nthreads, resources):
        state = types.SimpleNamespace(nthreads=nthreads, total_resources=resources)
        monkeypatch.setattr(distributed, "get_worker", lambda: types.SimpleNamespace(state=state))

    for nthreads, resources, expected in ((1, {}, 1), (4, {}, 1), (1, {"cores": 4}, 4),
                                          (2, {"cores": 8}, 4), (4, {"cores": 2}, 1)):
        worker(nthreads, resources)
        assert worker_threads() == expected, (nthreads, resources)


def test_dask_without_the_cluster_extra_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from tinybnn.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    with pytest.raises(ConfigError, match=r'pip install "tinybnn\[cluster\]"'):
        sweep(tiny(tmp_path / "out", backend="dask"), progress=False)
    assert not (tmp_path / "out").exists()
    code = main(["sweep", "--backend", "dask", "--datasets", "digits", "--kernels", "2",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and CLUSTER_INSTALL in err, err
