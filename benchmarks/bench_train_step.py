"""One training step of tinybnn, timed, and timed against the PyTorch reference in the same process.

    python benchmarks/bench_train_step.py                        # every case, both dtypes
    python benchmarks/bench_train_step.py --cases cnn32 cnn100 --dtypes float64 --rounds 10
    python benchmarks/bench_train_step.py --memory               # + peak memory (subprocesses)
    python benchmarks/bench_train_step.py --startup              # + cold and warm start
    python benchmarks/bench_train_step.py --epoch                # + one epoch of full MNIST
    python benchmarks/bench_train_step.py --inference            # + compressed vs uncompressed
    python benchmarks/bench_train_step.py --peak                 # + fraction of the matmul peak
    python benchmarks/bench_train_step.py --profile --no-torch   # + where tinybnn's time goes
    python benchmarks/bench_train_step.py --relu-first --no-torch  # + pool-then-ReLU gain

A *step* is what ``tinybnn.train.fit`` does per minibatch: forward, loss (the ``elbo`` objective,
N_train = 60000, or the preset ``--loss`` names, e.g. ``authors2019``, the loss of the authors'
one-image recipe; cross-entropy for the vanilla CNN), backward, Adam update (lr 1e-3). Batch:
the first 100 MNIST training images. Cases (``--cases``):

    cnn32, cnn100    the paper's Bayesian CNN, N = 32 / 100 kernels (conv 5x5 -> pool -> ReLU ->
                     flatten -> linear 10 -> softmax, as paper_cnn builds it: the same numbers
                     as the paper's ReLU-first order, faster; factored first-conv covariance)
    vcnn32, vcnn100  the same network with point weights (vanilla), cross-entropy
    mlp1, mlp2       VDP MLPs 784-400-10 and 784-400-400-10

How it measures:

- tinybnn and, when ``torch`` is importable, ``torch_reference.TrainStep`` start from the *same*
  parameters (tinybnn's initialisation, copied) and see the same batch;
- agreement first: loss and every gradient of the initial parameters, tinybnn against the
  reference's autograd, as max |a - b| / max |b| per array (must be <= 1e-8 in float64; float32
  is printed for information);
- then ``--warmup`` steps of each, then ``--rounds`` rounds, each timing ``--per-round`` steps
  of tinybnn and then of the reference (interleaved, so both see the same background load),
  each block after a ``--pause`` (idle BLAS / OpenMP worker threads of the library that ran
  before keep spinning for up to ~0.1 s and would slow the other one down); the figure is the
  median over all timed steps (and the interquartile range);
- ratio = reference ms / tinybnn ms (> 1: tinybnn is faster);
- threads: torch.set_num_threads(--threads); numba and OpenBLAS use their defaults (one thread
  per core) unless NUMBA_NUM_THREADS / OPENBLAS_NUM_THREADS are set;
- ``--memory``: every (case, dtype, framework) runs alone in a fresh subprocess (8 steps);
  reported are the peak resident set size of that process (VmHWM in /proc/self/status, which
  includes Python, NumPy, numba and torch themselves, the MNIST arrays and the model) and its
  growth over the RSS just before the first step ("step peak"); for tinybnn also the peak of
  the NumPy allocations of one more step seen by ``tracemalloc``.

Without torch the script prints tinybnn's figures only.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

CASES = {
    # name: (reference model name, tinybnn builder keyword arguments, description)
    "cnn32": ("cnn", dict(kind="cnn", n_kernels=32), "Bayesian CNN N=32"),
    "cnn100": ("cnn", dict(kind="cnn", n_kernels=100), "Bayesian CNN N=100"),
    "vcnn32": ("cnn_vanilla", dict(kind="vcnn", n_kernels=32), "vanilla CNN N=32"),
    "vcnn100": ("cnn_vanilla", dict(kind="vcnn", n_kernels=100), "vanilla CNN N=100"),
    "mlp1": ("mlp", dict(kind="mlp", sizes=(784, 400, 10)), "VDP MLP 784-400-10"),
    "mlp2": ("mlp", dict(kind="mlp", sizes=(784, 400, 400, 10)), "VDP MLP 784-400-400-10"),
}
BATCH = 100
LOSS = "elbo"  # the objective of every step, tinybnn's and the reference's (--loss)
LR = 1e-3
AGREE_TOL = 1e-8  # float64, relative


# ------------------------------------------------------------------------------------- set-up
def mnist_batch(dtype, n=None):
    """The first n (default BATCH) MNIST training images (n, 1, 28, 28) in [0, 1] and their
    labels (n,) int64."""
    from tinybnn import dataset_files

    n = BATCH if n is None else n
    arrays = dataset_files.read_arrays("mnist")
    x = (arrays["x_train"][:n, None] / 255.0).astype(dtype)
    return x, arrays["y_train"][:n].astype(np.int64)


def build(spec, dtype):
    """A freshly initialised tinybnn model (seed 0) for a case's builder arguments."""
    from tinybnn.architectures import mlp, paper_cnn

    if spec["kind"] == "mlp":
        return mlp(spec["sizes"], input_shape=(1, 28, 28), dtype=dtype, seed=0)
    return paper_cnn(spec["n_kernels"], bayesian=spec["kind"] == "cnn", dtype=dtype, seed=0)


class TinyStep:
    """One tinybnn training step: loss_and_grads + Adam, as ``tinybnn.train.fit`` does it: the
    batch is checked once and passed as a Point, and :meth:`run` limits BLAS once around all
    its steps (fit limits it once around all its epochs)."""

    def __init__(self, model):
        from tinybnn.losses import Objective
        from tinybnn.optim import Adam

        self.model, self.objective, self.opt = model, Objective(LOSS, n_train=60000), Adam(LR)

    def step(self, x, y):
        from tinybnn.gaussian import Point
        from tinybnn.model import loss_and_grads

        parts, grads = loss_and_grads(self.model, Point(x), y, self.objective)
        self.opt.step(self.model.params, grads)
        return parts.total

    def run(self, x, y, n):
        """Seconds of each of ``n`` steps on (x, y)."""
        from tinybnn.kernels import threads

        self.model.check_input(x)
        with threads.blas_limit(self.model.blas_threads):
            return timed_steps(self.step, x, y, n)


def timed_steps(step, x, y, n):
    """Seconds of each of ``n`` calls of ``step(x, y)``."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        step(x, y)
        out.append(time.perf_counter() - t0)
    return out


def import_torch(threads):
    """(torch, torch_reference) or (None, None) when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(threads)
    import torch_reference

    return torch, torch_reference


# ------------------------------------------------------------------------------------- checks
def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def agreement(case, dtype, ref):
    """Worst relative error over the loss and every gradient, and its name."""
    from tinybnn.losses import Objective
    from tinybnn.model import loss_and_grads

    ref_name, spec, _ = CASES[case]
    model = build(spec, dtype)
    x, y = mnist_batch(dtype)
    params = {k: v.copy() for k, v in model.params.items()}
    parts, grads = loss_and_grads(model, x, y, Objective(LOSS, n_train=60000))
    r_loss, r_grads = ref.loss_and_grads(ref_name, params, x, y, preset=LOSS, n_train=60000,
                                         dtype=np.dtype(dtype).name)
    errs = {"loss": rel_err(parts.total, r_loss)}
    errs.update({f"d{k}": rel_err(grads[k], r_grads[k]) for k in params})
    worst = max(errs, key=errs.get)
    return errs[worst], worst


# ------------------------------------------------------------------------------------- timing
def time_case(case, dtype, ref, args):
    """Median ms/step of tinybnn (and of the reference) with interquartile ranges."""
    ref_name, spec, _ = CASES[case]
    model = build(spec, dtype)
    runners = [("tinybnn", TinyStep(model))]
    if ref is not None:
        runners.append(("torch", ref.TrainStep(
            ref_name, {k: v.copy() for k, v in model.params.items()}, preset=LOSS, lr=LR,
            dtype=np.dtype(dtype).name, n_train=60000)))
    return time_runners(runners, *mnist_batch(dtype), args)


def time_runners(runners, x, y, args):
    """{name: (median, 25th, 75th percentile) ms/step} of each (name, stepper), interleaved."""
    def run(r, n):
        return r.run(x, y, n) if hasattr(r, "run") else timed_steps(r.step, x, y, n)

    times = {name: [] for name, _ in runners}
    for _, r in runners:
        run(r, args.warmup)
    for _ in range(args.rounds):
        for name, r in runners:
            time.sleep(args.pause)  # let the other library's idle threads stop spinning
            times[name] += run(r, args.per_round)
    return {name: 1e3 * np.percentile(t, [50, 25, 75]) for name, t in times.items()}


def relu_first(model):
    """The same kind of network in the paper's order, conv -> relu -> pool -> ... (paper_cnn
    pools first; the two compute the same numbers, tests/test_model.py)."""
    from tinybnn.model import Sequential

    layers = dict(model.layers)
    order = ["conv", "relu", "pool"] + [n for n, _ in model.layers][3:]
    return Sequential([(n, layers[n]) for n in order], input_shape=model.input_shape)


def order_rows(cases, dtypes, args):
    """(case, dtype, pool-first ms, relu-first ms) for the CNN cases, side by side."""
    for case in cases:
        spec = CASES[case][1]
        if spec["kind"] not in ("cnn", "vcnn"):
            continue
        for dtype in dtypes:
            t = time_runners([("pool", TinyStep(build(spec, dtype))),
                              ("relu", TinyStep(relu_first(build(spec, dtype))))],
                             *mnist_batch(dtype), args)
            yield case, dtype, t["pool"][0], t["relu"][0]


def load():
    """The 1-minute load average, or nan where the OS has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# ------------------------------------------------------------------------------------- profile
def profile_case(case, dtype, steps=10, warmup=3):
    """Median wall ms of every layer's forward and backward, the loss and Adam in one step."""
    import tinybnn.model as tm

    model = build(CASES[case][1], dtype)
    x, y = mnist_batch(dtype)
    tiny = TinyStep(model)
    times = {}

    def timed(key, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            times.setdefault(key, []).append(time.perf_counter() - t0)
            return out
        return wrapper

    for name, layer in model.layers:  # instance attributes shadow the methods for this model
        layer.forward = timed(f"{name}.forward", layer.forward)
        layer.backward = timed(f"{name}.backward", layer.backward)
    tiny.opt.step = timed("adam", tiny.opt.step)
    data_term = tm.data_term
    tm.data_term = timed("loss", data_term)
    try:
        for i in range(warmup + steps):
            if i == warmup:
                times.clear()
            t0 = time.perf_counter()
            tiny.step(x, y)
            times.setdefault("step", []).append(time.perf_counter() - t0)
    finally:
        tm.data_term = data_term
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


# ------------------------------------------------------------------------------------- flops
def step_gflop(case, live):
    """Floating-point operations of one training step (2 per multiply-add, batch BATCH), from
    the cost model of docs/COST.md: the matrix products only (element-wise maps, max-pool and
    Adam are left out). ``live`` is the fraction of pooled conv rows the ReLU kept (Bayesian
    CNN), measured on the batch."""
    B = BATCH
    spec = CASES[case][1]
    if spec["kind"] in ("cnn", "vcnn"):
        N, P, d, L, K = spec["n_kernels"], 24 * 24, 25, 12 * 12, 10
        conv = 2 * P * d * N * 2  # mean forward + dM backward
        if spec["kind"] == "vcnn":
            return B * (conv + 3 * 2 * N * L * K) / 1e9  # fc: forward, dM, dx
        project = 2 * N * L * live * d * K * 2  # At forward + dM3 backward (kept rows only)
        small = 2 * P * d + N * d * K * (K + 1) + 2 * N * K * K * d + 2 * N * K * d
        fc_mean = 3 * 2 * N * L * K  # forward, dM, dmu
        return B * (conv + project + small + fc_mean) / 1e9
    D0, H, K = 784, 400, 10
    if len(spec["sizes"]) == 3:  # Point -> Diagonal -> (Projected, read dense by Softmax):
        # the dense cov v W, and its adjoint products v^T G and G W^T, 2 H K^2 each
        return B * (2 * 2 * D0 * H + 3 * 2 * H * K * K + 4 * 2 * H * K) / 1e9
    # 784-400-400-10: fc1 forward + dM; fc2 mean, dM, dmu; fc3 on Projected: A, dM (U^T V Q),
    # dU (each 2 D0 H K), t and dv ((U o U) products, 2 D0 H each), A^T diag(v) A and Q = A G
    return B * (2 * 2 * D0 * H + 3 * 2 * H * H + 3 * 2 * D0 * H * K + 2 * 2 * D0 * H
                + 2 * 2 * D0 * K * K) / 1e9


def live_fraction(case, dtype):
    """Fraction of pooled conv rows with a non-zero scale (the ReLU kept them) on the batch."""
    if CASES[case][1]["kind"] != "cnn":
        return 1.0
    model = build(CASES[case][1], dtype)
    x, _ = mnist_batch(dtype)
    from tinybnn.gaussian import Point

    z = Point(x)
    for name, layer in model.layers:
        layer.input_grad = False
        z = layer.forward(z)
        if name == "flatten":  # after both the pool and the ReLU, in either order
            return float((z.scale != 0).mean())
    return 1.0


def matmul_peak(dtype, n=2048, repeats=7):
    """GFLOP/s of an n x n matrix product in NumPy (its BLAS, its default threads): median."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / np.median(times) / 1e9


# ------------------------------------------------------------------------------------- memory
def child_memory(case, dtype, framework, threads):
    """Run in a fresh process: RSS before the first step, peak RSS after 8 steps (MB)."""
    ref_name, spec, _ = CASES[case]
    model = build(spec, dtype)
    x, y = mnist_batch(dtype)
    if framework == "torch":
        _, ref = import_torch(threads)
        runner = ref.TrainStep(ref_name, {k: v.copy() for k, v in model.params.items()},
                               preset=LOSS, lr=LR, dtype=np.dtype(dtype).name, n_train=60000)
    else:
        runner = TinyStep(model)
    before = rss_now_mb()
    for _ in range(8):
        runner.step(x, y)
    out = {"rss_before": before, "peak_rss": status_mb("VmHWM")}
    if framework == "tinybnn":
        import tracemalloc

        tracemalloc.start()
        runner.step(x, y)
        out["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(json.dumps(out))


def rss_now_mb():
    return status_mb("VmRSS")


def status_mb(field):
    """A memory figure of this process from /proc/self/status (Linux), in MB.

    VmHWM is the peak resident set size of this process image. (``getrusage``'s ru_maxrss
    would do on a fresh interpreter, but Linux carries the parent's peak over a fork + exec.)
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    raise OSError(f"{field} not in /proc/self/status")


def memory_rows(cases, dtypes, frameworks, threads):
    rows = []
    for case in cases:
        for dtype in dtypes:
            for fw in frameworks:
                cmd = [sys.executable, __file__, "--child-memory", case, dtype, fw,
                       "--threads", str(threads), "--loss", LOSS]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                rows.append((case, dtype, fw, json.loads(res.stdout.strip().splitlines()[-1])))
    return rows


# ------------------------------------------------------------------------------------- start-up
STARTUP_CHILD = r"""
import time
t0 = time.perf_counter()
import numpy as np
import tinybnn.model, tinybnn.optim, tinybnn.losses
t_import = time.perf_counter() - t0
import sys
sys.path.insert(0, {here!r})
from bench_train_step import TinyStep, build, mnist_batch, CASES
model = build(CASES["cnn32"][1], np.float64)
x, y = mnist_batch(np.float64)
step = TinyStep(model)
t1 = time.perf_counter(); step.step(x, y); t_first = time.perf_counter() - t1
steady = []
for _ in range(5):
    t1 = time.perf_counter(); step.step(x, y); steady.append(time.perf_counter() - t1)
print(t_import, t_first, float(np.median(steady)))
"""


def startup_rows(repeats):
    """Cold (empty numba cache) and warm (cached) start, medians over ``repeats`` processes."""
    rows = {}
    child = STARTUP_CHILD.format(here=HERE)
    env0 = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for label in ("cold", "warm"):
        firsts = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as cache:
                env = dict(env0, NUMBA_CACHE_DIR=cache)
                if label == "warm":  # fill the cache first
                    subprocess.run([sys.executable, "-c", child], env=env, check=True,
                                   capture_output=True)
                t0 = time.perf_counter()
                res = subprocess.run([sys.executable, "-c", child], env=env, check=True,
                                     capture_output=True, text=True)
                wall = time.perf_counter() - t0
                imp, first, steady = map(float, res.stdout.split())
                firsts.append((wall, imp, first, steady))
        rows[f"first step, {label}"] = np.median(np.array(firsts), axis=0)
    helps = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tinybnn", "--help"], env=env0, check=True,
                       capture_output=True)
        helps.append(time.perf_counter() - t0)
    imports = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy"], env=env0, check=True)
        t_np = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy, tinybnn.model"], env=env0,
                       check=True)
        imports.append((t_np, time.perf_counter() - t0))
    return rows, float(np.median(helps)), np.median(np.array(imports), axis=0)


# ------------------------------------------------------------------------------------- epoch
def epoch_time():
    """Wall time of ``tinybnn.train.fit`` for one epoch as ``tinybnn train`` runs it: full MNIST
    with 1/12 held out (55,000 images, 550 steps of batch 100), validation at the end of the
    epoch, Bayesian N = 32, float64, elbo. Returns (seconds, the epoch's history row)."""
    from tinybnn import data
    from tinybnn.architectures import paper_cnn
    from tinybnn.losses import Objective
    from tinybnn.train import fit

    ds = data.load("mnist", validation=1 / 12, seed=0)
    objective = Objective("elbo", n_train=len(ds.train.y))
    warm = data.load("mnist", subset=200, seed=1).train  # compile / warm caches, untimed
    fit(paper_cnn(32, seed=0), warm, epochs=1, batch_size=100, progress=False)
    model = paper_cnn(32, seed=0)
    t0 = time.perf_counter()
    history = fit(model, ds.train, val=ds.val, objective=objective, epochs=1, batch_size=100,
                  lr=1e-3, progress=False)
    return time.perf_counter() - t0, history[0]


# ------------------------------------------------------------------------------------- inference
def inference_rows(dtypes, keep=(32, 24, 16, 8), n_images=10000, repeats=5):
    """Prediction time (``tinybnn.evaluate.predict``, its batches of 500) of the Bayesian CNN N = 32
    and of the same network compressed to fewer kernels by ``tinybnn.prune`` (the lowest-norm
    kernels removed, as ``tinybnn compress`` removes the near-zero ones): ms per 100 images."""
    from tinybnn import data, prune
    from tinybnn.measure import inference_ms

    rows = []
    for dtype in dtypes:
        x = data.load("mnist", seed=0, dtype=np.dtype(dtype).type, subset=10).test.x[:n_images]
        full = build(CASES["cnn32"][1], dtype)
        for k in keep:
            model = full
            if k < 32:
                sel = prune.select(prune.rank(full, "conv", "norm"), rule="count", value=32 - k)
                model = prune.remove(full, "conv", sel.removed)
            rows.append((dtype, k, inference_ms(model, x, repeats)))
    return rows


# ------------------------------------------------------------------------------------- report
def machine():
    import numba

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    lines = [f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; {platform.node()}; {cpu}; "
             f"{os.cpu_count()} cores; Python {platform.python_version()}",
             f"numpy {np.__version__} (BLAS {blas.get('name')} {blas.get('version')}); "
             f"numba {numba.__version__}, {numba.get_num_threads()} threads"]
    return lines


def main(argv=None):
    global BATCH, LOSS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"],
                    choices=["float64", "float32"])
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps of each (default 3)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--per-round", type=int, default=4, help="timed steps per round (default 4)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--batch", type=int, default=BATCH,
                    help=f"examples per step: the first BATCH MNIST images (default {BATCH})")
    ap.add_argument("--loss", default=LOSS, choices=["elbo", "authors2019", "authors_later"],
                    help=f"the objective of every step (default {LOSS})")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="seconds of sleep before each block of steps (default 0.3)")
    ap.add_argument("--no-torch", action="store_true", help="time tinybnn only")
    ap.add_argument("--memory", action="store_true", help="peak memory per case (subprocesses)")
    ap.add_argument("--startup", action="store_true", help="cold and warm start (subprocesses)")
    ap.add_argument("--epoch", action="store_true", help="one epoch of full MNIST, cnn32 float64")
    ap.add_argument("--inference", action="store_true",
                    help="prediction time of the Bayesian CNN N=32 against compressed versions")
    ap.add_argument("--profile", action="store_true",
                    help="time every layer's forward and backward (tinybnn only)")
    ap.add_argument("--relu-first", action="store_true",
                    help="time the CNNs pooled first (paper_cnn) against ReLU first, side by side")
    ap.add_argument("--peak", action="store_true",
                    help="measure the dense-matrix peak (NumPy matmul) and each step's fraction")
    ap.add_argument("--child-memory", nargs=3, metavar=("CASE", "DTYPE", "FRAMEWORK"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    BATCH, LOSS = args.batch, args.loss  # read by mnist_batch and step_gflop; by the steps
    if args.child_memory:
        case, dtype, fw = args.child_memory
        if fw == "torch":
            import_torch(args.threads)
        child_memory(case, dtype, fw, args.threads)
        return 0

    torch, ref = (None, None) if args.no_torch else import_torch(args.threads)
    for line in machine():
        print(line)
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads "
              f"(reference: benchmarks/torch_reference.py)")
    else:
        print("torch not importable (or --no-torch): tinybnn figures only")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"batch {BATCH}, loss {LOSS}; median of {args.rounds} x {args.per_round} steps after "
          f"{args.warmup} warm-up steps; load average at start {load():.2f}")

    peak = {}
    if args.peak:
        for dtype in args.dtypes:
            peak[dtype] = matmul_peak(dtype)
        print("dense-matrix peak (NumPy 2048 x 2048 matmul, median of 7): "
              + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.items()))

    failed = False
    header = (f"{'case':<24}{'dtype':<9}{'tinybnn ms':>11}{'[IQR]':>17}{'img/s':>8}"
              + (f"{'GFLOP':>7}{'GF/s':>7}{'peak':>6}" if peak else "")
              + (f"{'torch ms':>10}{'[IQR]':>17}{'ratio':>7}{'agree':>10}" if ref else ""))
    print("\n" + header)
    for case in args.cases:
        for dtype in args.dtypes:
            t = time_case(case, dtype, ref, args)
            ms, lo, hi = t["tinybnn"]
            line = (f"{CASES[case][2]:<24}{dtype:<9}{ms:>11.2f}{f'[{lo:.2f}, {hi:.2f}]':>17}"
                    f"{BATCH / ms * 1e3:>8.0f}")
            if peak:
                gflop = step_gflop(case, live_fraction(case, dtype))
                rate = gflop / (ms / 1e3)
                line += f"{gflop:>7.2f}{rate:>7.1f}{100 * rate / peak[dtype]:>5.0f}%"
            if ref:
                rms, rlo, rhi = t["torch"]
                err, what = agreement(case, dtype, ref)
                ok = err <= AGREE_TOL or dtype == "float32"
                failed |= not ok
                flag = "" if dtype == "float32" else (" ok" if ok else " FAIL")
                line += (f"{rms:>10.2f}{f'[{rlo:.2f}, {rhi:.2f}]':>17}{rms / ms:>7.2f}"
                         f"{err:>10.1e}{flag}")
            print(line, flush=True)
    if peak:
        print("GFLOP: matrix-product operations of one tinybnn step (docs/COST.md); GF/s and peak: "
              "that over the median time, and as a fraction of the dense-matrix peak")
    if ref:
        print(f"agree: worst max|a - b| / max|b| over the loss and every gradient at the initial "
              f"parameters (float64 must be <= {AGREE_TOL:g})")
    print(f"load average at end {load():.2f}")

    if args.profile:
        for case in args.cases:
            for dtype in args.dtypes:
                prof = profile_case(case, dtype)
                total = prof.pop("step")
                print(f"\nprofile: {CASES[case][2]}, {dtype}: step {total:.1f} ms (median of 10; "
                      f"each part its own median)")
                for key, ms in prof.items():
                    print(f"  {key:<20}{ms:>8.2f} ms {100 * ms / total:>5.0f}%")

    if args.relu_first:
        print("\nthe CNN step with the max-pool before the ReLU (paper_cnn) and after it (the "
              "paper's order; the same numbers), side by side:")
        for case, dtype, pool_ms, relu_ms in order_rows(args.cases, args.dtypes, args):
            print(f"  {CASES[case][2]:<24}{dtype:<9}pool first {pool_ms:6.1f} ms, relu first "
                  f"{relu_ms:6.1f} ms: {relu_ms / pool_ms:.2f}x", flush=True)

    if args.memory:
        fws = ["tinybnn"] + (["torch"] if ref else [])
        print(f"\n{'case':<24}{'dtype':<9}{'framework':<10}{'peak RSS MB':>12}"
              f"{'step peak MB':>14}{'tracemalloc MB':>16}")
        for case, dtype, fw, m in memory_rows(args.cases, args.dtypes, fws, args.threads):
            tm = f"{m['tracemalloc_peak']:.0f}" if "tracemalloc_peak" in m else "-"
            print(f"{CASES[case][2]:<24}{dtype:<9}{fw:<10}{m['peak_rss']:>12.0f}"
                  f"{m['peak_rss'] - m['rss_before']:>14.0f}{tm:>16}", flush=True)
        print("peak RSS: VmHWM of a fresh process running 8 steps; step peak: its growth over "
              "the RSS before the first step; tracemalloc: NumPy allocations of one step")

    if args.startup:
        rows, help_s, (t_np, t_imp) = startup_rows(repeats=3)
        print("\nstart-up (medians of 3 fresh processes; cnn32 float64):")
        print(f"  python -c 'import numpy': {t_np:.2f} s;  'import numpy, tinybnn.model': "
              f"{t_imp:.2f} s;  python -m tinybnn --help: {help_s:.2f} s")
        for label, (wall, imp, first, steady) in rows.items():
            print(f"  {label:<18} process {wall:.2f} s: import {imp:.2f} s, first step "
                  f"{first:.2f} s, later steps {steady * 1e3:.0f} ms -> overhead of the first "
                  f"step {first - steady:.2f} s")
        print("  cold: NUMBA_CACHE_DIR is a new empty directory (numba compiles every kernel); "
              "warm: the same directory after one run")

    if args.inference:
        print("\ninference (tinybnn.evaluate.predict on the 10,000 MNIST test images; median of "
              "5): Bayesian CNN N=32 and compressed to N kernels by tinybnn.prune")
        base = {}
        for dtype, k, ms in inference_rows(args.dtypes):
            base.setdefault(dtype, ms)
            print(f"  {dtype:<9} N={k:<4}{ms:>8.1f} ms / 100 images {100 / ms * 1e3:>8.0f} img/s "
                  f"{base[dtype] / ms:>6.2f} x", flush=True)

    if args.epoch:
        seconds, row = epoch_time()
        print(f"\none epoch of full MNIST (tinybnn.train.fit as `tinybnn train` runs it: 55,000 "
              f"images = 550 steps of batch 100, then 5,000 validation images; cnn32 float64, "
              f"elbo): {seconds:.1f} s (of which {row['seconds']:.1f} s inside fit's epoch "
              f"loop); train accuracy {row['train_accuracy']:.3f}, validation accuracy "
              f"{row['val_accuracy']:.3f}; load average {load():.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
