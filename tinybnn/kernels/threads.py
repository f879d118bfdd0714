"""One thread pool at a time: OpenBLAS's threads kept out of numba's way.

numba's parallel loops ((:mod:`tinybnn.kernels`) and OpenBLAS's matrix products each start one
thread per core, and neither pool sleeps as soon as its work ends: its threads spin for a while,
waiting for more (OpenBLAS), or until told otherwise (GNU OpenMP, numba's threading layer here).
A CNN step alternates between the two (a BLAS product in the conv, a numba loop in the ReLU, a
BLAS product again, ...), so each pool's spinning threads take the cores from the other. On this
project's 2-core machine a Bayesian CNN N = 32 training step took 125 ms with OpenBLAS on 2
threads and 45 ms with it on 1 (benchmarks/README.md has the figures and the command).

So a network whose layers run numba's parallel loops (one with a ``Conv2d``) does its forward
and backward passes with BLAS on one thread (:attr:`tinybnn.model.Sequential.blas_threads`);
the limit is set with threadpoolctl for the duration of the pass only (about 20 microseconds a
call) and restored after, so other code in the process, and MLPs, whose time is all BLAS, keep
every BLAS thread.
"""

import contextlib

from threadpoolctl import ThreadpoolController

_controller = None
_active = None  # the limit in force inside an enclosing blas_limit, or None


@contextlib.contextmanager
def blas_limit(n_threads):
    """A context manager running BLAS on at most ``n_threads`` threads (None: unchanged).

    Inside an enclosing ``blas_limit`` with the same count it does nothing: training sets the
    limit once around all its steps (:func:`tinybnn.train.fit`), and the passes inside it then
    skip the two threadpoolctl calls (about 35 microseconds a step, measured, at one image per
    step)."""
    global _controller, _active
    if n_threads is None or n_threads == _active:
        yield
        return
    if _controller is None:  # built on first use: it lists the BLAS libraries loaded then
        _controller = ThreadpoolController()
    outer, _active = _active, n_threads
    try:
        with _controller.limit(limits=n_threads, user_api="blas"):
            yield
    finally:
        _active = outer


def thread_counts():
    """{"numba": threads of numba's parallel loops, "blas": threads of each BLAS library}: what a
    run records in its metrics, so that a time can be read with the threads it had."""
    import numba

    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    blas = [lib.num_threads for lib in _controller.lib_controllers if lib.user_api == "blas"]
    return {"numba": numba.get_num_threads(), "blas": blas}
