"""The paper's experiment: Bayesian and vanilla CNNs over a grid of kernel counts, datasets,
presets and seeds, run in parallel with joblib.

Every run is independent: it trains one network with :func:`tinybnn.jobs.train.train_run` into its own
folder ``out/runs/<dataset>-<preset>-<kind>-N<k>-seed<s>/`` and is skipped when that folder
already holds a complete ``metrics.json`` (so an interrupted sweep resumes where it stopped).
Each run also counts its near-zero kernels (``||M_k||_F < zero_threshold``). The results go to
``out/sweep.json`` and three figures: test accuracy against N (mean and spread over seeds),
near-zero kernels against N, and, when several presets are swept, near-zero kernels by preset.

Parallelism, two backends (``backend``):

* ``loky`` (the default): ``n_jobs`` worker processes on this machine; each run limits BLAS and
  numba to ``cores // n_jobs`` threads so that the runs do not oversubscribe the machine (two
  processes with a thread pool each on two cores slow each other 4-10x).
* ``dask``: the same runs through joblib's Dask backend, on the workers of the Dask scheduler at
  ``scheduler`` (``tcp://HOST:8786``), or, with ``scheduler="local"``, of a ``LocalCluster``
  started here (one worker process per core, at least 2, one thread each) and closed at the
  end; the cluster must have at least 2 worker threads (with 1, joblib's shortcut for one job
  would train every run in this process, not on the cluster). It needs
  dask.distributed (the ``[cluster]`` extra). A worker runs as many runs at once as it has
  threads, and each run gets the worker's cores divided among them (:func:`worker_threads`): the
  worker's ``cores`` resource if it declares one (``dask worker --resources cores=4``), otherwise
  one core per worker thread, so a run on a worker with ``--nthreads 1`` uses 1 numba and 1 BLAS
  thread however many cores its node has. ``n_jobs`` is not used: the cluster's threads set how
  many runs go at once. Run folders are made absolute, so the output folder must be at the same
  path on every worker (a shared file system); that is also where finished runs are found.

Either way each run's metrics.json records the thread counts it had, and the results are the
same: every run is deterministic given its seed, so the same grid gives the same rows on the
cluster as on loky (tests/test_sweep.py), as long as the runs have the same thread counts, the
same software and the same kind of CPU (another BLAS build or CPU may change the last digits).
"""

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import io
from ..errors import ConfigError
from .common import option, prepare_output, write_json
from .train import TrainOptions, train_run


#: The joblib backends ``tinybnn sweep`` runs on.
BACKENDS = ("loky", "dask")

#: What to run when dask.distributed is missing.
CLUSTER_INSTALL = 'pip install "tinybnn[cluster]"'

#: Seconds to wait for the cluster to have 2 worker threads (a sweep needs 2: with 1, joblib
#: would train every run in the calling process instead).
WORKER_WAIT = 60


@dataclass
class SweepOptions:
    """Options of ``tinybnn sweep``. Lists are comma-separated on the command line."""

    kernels: str = field(default="10,20,32,50,100", metadata=option("kernel counts N"))
    datasets: str = field(default="mnist,fashion_mnist", metadata=option("datasets"))
    presets: str = field(default="authors2019", metadata=option(
        "training presets (several: compare how many near-zero kernels each produces)"))
    seeds: str = field(default="0,1,2", metadata=option("seeds"))
    vanilla: bool = field(default=True, metadata=option("also train the vanilla networks"))
    subset: int | None = field(default=None, metadata=option("training images per run (all)"))
    epochs: int | None = field(default=None, metadata=option("epochs per run (the preset's)"))
    batch_size: int | None = field(default=None, metadata=option("batch size (the preset's)"))
    lr: float | None = field(default=None, metadata=option("initial learning rate (the preset's)"))
    final_lr: float | None = field(default=None, metadata=option("final learning rate"))
    zero_threshold: float = field(default=1e-3, metadata=option(
        "a kernel counts as near-zero when ||M_k||_F is below this"))
    n_jobs: int = field(default=2, metadata=option(
        "runs in parallel (processes; loky only: with dask, one run per worker thread)"))
    backend: str = field(default="loky", metadata=option(
        "loky: worker processes on this machine; dask: the workers of a Dask cluster "
        "(needs the [cluster] extra)", choices=BACKENDS))
    scheduler: str = field(default="local", metadata=option(
        "with --backend dask: the Dask scheduler's address (tcp://HOST:8786), or 'local' to "
        "start a LocalCluster here (one single-threaded worker process per core)"))
    dtype: str = field(default="float32", metadata=option(
        "float64 or float32", choices=("float64", "float32")))
    out: str = field(default="runs/sweep", metadata=option("output folder"))


def _list(text, cast, what):
    try:
        values = [cast(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise ConfigError(f"{what} must be a comma-separated list, found {text!r}")
    return values


def plan(o):
    """The TrainOptions of every run of the sweep, in a fixed order."""
    kernels = _list(o.kernels, int, "kernels")
    if min(kernels) < 1:
        raise ConfigError(f"kernel counts must be >= 1, found {kernels}")
    if o.n_jobs < 1:
        raise ConfigError(f"n_jobs must be >= 1, found {o.n_jobs}")
    if o.backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, found {o.backend!r}")
    if o.backend != "dask" and o.scheduler != "local":
        raise ConfigError(f"a scheduler ({o.scheduler!r}) is for --backend dask, "
                          f"found --backend {o.backend}")
    if not str(o.scheduler).strip():
        raise ConfigError("scheduler must be an address (tcp://HOST:8786) or 'local', found ''")
    runs = []
    for dataset in _list(o.datasets, str, "datasets"):
        for preset in _list(o.presets, str, "presets"):
            for n in kernels:
                for seed in _list(o.seeds, int, "seeds"):
                    for vanilla in ([False, True] if o.vanilla else [False]):
                        name = (f"{dataset}-{preset}-{'vanilla' if vanilla else 'bayes'}-N{n}"
                                f"-seed{seed}")
                        runs.append(TrainOptions(
                            model="cnn", kernels=n, vanilla=vanilla, dataset=dataset,
                            subset=o.subset, preset=preset, epochs=o.epochs,
                            batch_size=o.batch_size, lr=o.lr, final_lr=o.final_lr, seed=seed,
                            dtype=o.dtype, out=str(Path(o.out) / "runs" / name),
                            progress=False).resolved())
    return runs


def near_zero_kernels(model_path, threshold):
    """Number of kernels of the model's conv layer with ||M_k||_F < threshold, and all norms."""
    model, _ = io.load(model_path)
    M = model.params["conv.M"]
    norms = np.linalg.norm(M.reshape(M.shape[0], -1), axis=1)
    return int((norms < threshold).sum()), [float(v) for v in norms]


def worker_threads():
    """The numba and BLAS threads of one run on the Dask worker running it: the worker's cores
    divided among the runs it runs at once (one per worker thread, ``nthreads``). Its cores are
    its ``cores`` resource if it declares one, otherwise one per worker thread; so a worker
    started with ``--nthreads 1`` gives its run 1 thread, on a node of any size."""
    from distributed import get_worker

    state = get_worker().state
    cores = state.total_resources.get("cores", state.nthreads)
    return max(1, int(cores) // max(1, state.nthreads))


def run_one(options, zero_threshold, threads):
    """Train one run (or reuse a finished one) with ``threads`` numba and BLAS threads (None:
    :func:`worker_threads`, on a Dask worker); returns its result row."""
    import numba
    from threadpoolctl import threadpool_limits

    if threads is None:
        threads = worker_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    folder = Path(options.out)
    done = folder / "metrics.json"
    if done.is_file():
        metrics = json.loads(done.read_text())
    else:
        with threadpool_limits(limits=threads, user_api="blas"):  # metrics.json records them
            metrics = train_run(options)
    zeros, norms = near_zero_kernels(folder / "model.npz", zero_threshold)
    return {"dataset": options.dataset, "preset": options.preset, "kernels": options.kernels,
            "seed": options.seed, "bayesian": not options.vanilla,
            "test_accuracy": metrics["test_accuracy"], "near_zero_kernels": zeros,
            "kernel_norms": norms, "seconds": metrics.get("seconds"), "folder": str(folder)}


def sweep(options, *, progress=True):
    """Run every planned run (in parallel) and write sweep.json and the figures."""
    runs = plan(options)
    if options.backend == "dask":
        _import_distributed()  # before anything is written
    out = prepare_output(options.out)
    from joblib import Parallel, delayed

    verbose = 10 if progress else 0
    if options.backend == "dask":
        from joblib import parallel_config

        # absolute folders: a worker elsewhere (another node, another working folder) writes
        # and finds each run at the same place
        runs = plan(replace(options, out=str(Path(options.out).resolve())))
        with dask_client(options.scheduler, progress=progress) as client, \
                parallel_config(backend="dask", client=client):
            # one run per task: runs take minutes, and a task is what a worker retries
            rows = Parallel(batch_size=1, verbose=verbose)(
                delayed(run_one)(r, options.zero_threshold, None) for r in runs)
    else:
        threads = max(1, (os.cpu_count() or 1) // options.n_jobs)
        rows = Parallel(n_jobs=options.n_jobs, verbose=verbose)(
            delayed(run_one)(r, options.zero_threshold, threads) for r in runs)
    result = {"options": asdict(options), "runs": rows, "summary": summarise(rows)}
    write_json(out / "sweep.json", result)
    from .. import plots

    plots.save(plots.sweep_accuracy(rows), out / "accuracy_vs_kernels.png")
    plots.save(plots.sweep_zeros(rows, options.zero_threshold), out / "near_zero_kernels.png")
    return result


def _import_distributed():
    """dask.distributed, or a ConfigError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--backend dask needs dask.distributed, which is not installed: "
                          f"{CLUSTER_INSTALL}") from None
    return distributed


def _check_address(address):
    """A ConfigError unless ``address`` is a scheduler address dask.distributed can dial (checked
    before a Client is made: a Client that fails on a bad scheme hangs a minute in closing)."""
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, where = parse_address(address)  # no scheme: tcp
        if scheme not in ("tcp", "tls", "ws", "wss", "ucx"):
            raise ValueError(f"{scheme}:// is not a network protocol of dask.distributed")
        parse_host_port(where)  # a host and a port
    except (ValueError, TypeError) as err:
        raise ConfigError(f"the scheduler must be an address like tcp://HOST:8786, found "
                          f"{address!r}: {' '.join(str(err).split())}") from None


@contextlib.contextmanager
def dask_client(scheduler, *, progress=False):
    """A dask.distributed Client of the scheduler at ``scheduler``, or, for ``"local"``, of a
    LocalCluster started here (one worker process per core, at least 2, one thread each);
    closed (with the cluster) on leaving, whatever happens inside."""
    distributed = _import_distributed()
    cluster = None
    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=max(2, os.cpu_count() or 1), threads_per_worker=1, processes=True,
                dashboard_address=None))
            address = cluster.scheduler_address
        else:
            address = scheduler
            _check_address(address)
        try:
            client = stack.enter_context(distributed.Client(address, set_as_default=False))
        except OSError as err:  # unreachable or refused (after distributed's connect timeout)
            raise ConfigError(f"cannot connect to the Dask scheduler at {address}: "
                              f"{' '.join(str(err).split())}") from None
        # joblib runs every task in this process when the cluster has one thread in all (its
        # n_jobs == 1 shortcut), so wait for two, and refuse a cluster that never has them
        if _threads(client) < 2:
            if progress:
                print(f"dask: waiting up to {WORKER_WAIT} s for 2 worker threads at {address}",
                      file=sys.stderr, flush=True)
            deadline = time.monotonic() + WORKER_WAIT
            while _threads(client) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            if _threads(client) < 2:
                raise ConfigError(
                    f"the Dask scheduler at {address} has {_threads(client)} worker thread(s) "
                    f"after {WORKER_WAIT} s; a sweep on it needs at least 2 (with 1, joblib "
                    f"would train every run in this process): start workers with 'dask worker "
                    f"{address} --nthreads 1 --nworkers N', or use --backend loky")
        if progress:
            cores = client.ncores()
            where = "a LocalCluster started here" if cluster is not None else "the scheduler"
            print(f"dask: {len(cores)} workers with {sum(cores.values())} threads in all, at "
                  f"{address} ({where})", file=sys.stderr, flush=True)
        yield client


def _threads(client):
    """The worker threads of the client's cluster, in all."""
    return sum(client.ncores().values())


def summarise(rows):
    """Mean and standard deviation over seeds of accuracy and near-zero kernels per setting."""
    groups = {}
    for r in rows:
        key = (r["dataset"], r["preset"], r["bayesian"], r["kernels"])
        groups.setdefault(key, []).append(r)
    out = []
    for (dataset, preset, bayesian, n), rs in sorted(groups.items()):
        acc = np.array([r["test_accuracy"] for r in rs])
        zeros = np.array([r["near_zero_kernels"] for r in rs])
        out.append({"dataset": dataset, "preset": preset, "bayesian": bayesian, "kernels": n,
                    "seeds": len(rs), "test_accuracy_mean": float(acc.mean()),
                    "test_accuracy_std": float(acc.std()),
                    "near_zero_kernels_mean": float(zeros.mean()),
                    "near_zero_kernels_std": float(zeros.std())})
    return out
