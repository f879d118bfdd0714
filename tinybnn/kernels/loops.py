"""How the loops are compiled: :class:`BatchLoop` (a loop over the batch, compiled parallel and
serial) and ``serial_jit`` (the small loops every step repeats). The package's docstring says why.
"""

import functools
import types

import numba

# fastmath only lets LLVM reorder sums and fuse multiply-adds (so reductions vectorise); the
# flags that would let it assume no NaN or Inf stay off, so a divergence still shows as NaN.
_FASTMATH = {"reassoc", "contract"}
PARALLEL_MIN_BATCH = 4  # below this many examples a BatchLoop runs serially (docs/COST.md)


class BatchLoop:
    """A loop whose outer ``numba.prange`` runs over the batch, compiled two ways.

    ``loop(batch, *args)`` runs ``loop.parallel`` (the prange shared between numba's threads)
    for a batch of at least :data:`PARALLEL_MIN_BATCH` examples when numba has more than one
    thread, and ``loop.serial`` (the same code, prange as a plain range) otherwise. Each is
    compiled on its first call, so a run compiles only the ones it uses. ``loop.py_func`` is the
    plain Python function.
    """

    def __init__(self, fn):
        self.py_func = fn
        self.parallel = numba.njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)(fn)
        # a copy under its own name, so that numba's on-disk cache keeps the two apart
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                  fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        self.serial = numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)(twin)
        functools.update_wrapper(self, fn)

    def pick(self, batch):
        """The compiled loop for a batch of ``batch`` examples."""
        if batch >= PARALLEL_MIN_BATCH and numba.get_num_threads() > 1:
            return self.parallel
        return self.serial

    def __call__(self, batch, *args):
        return self.pick(batch)(*args)

    def chunks(self, batch):
        """How many per-thread partial sums a batch-reducing loop keeps: numba's thread count
        for the parallel loop, 1 for the serial one."""
        return numba.get_num_threads() if self.pick(batch) is self.parallel else 1


parallel_jit = BatchLoop  # the decorator of every loop over the batch

# a piece of a BatchLoop's body, called from inside it (serial). inline="always" makes numba
# type and lower it as part of each caller instead of compiling it as a function of its own:
# each compiled function costs about 0.2 s however small, and the main job's cold start went
# from 10.9 to 9.4 s (medians of fresh processes alternated with the version before:
# benchmarks/README.md); the loops' numbers are bit-identical (float64 and float32, serial
# and parallel)
inner_jit = numba.njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")


# error_model="numpy": a division by zero gives inf or nan, as in NumPy, instead of raising
# ZeroDivisionError; without it numba tests every divisor and the loops cannot be vectorised
# (the Adam loop ran 3x slower, measured).
serial_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
