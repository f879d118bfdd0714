r"""The standard normal density and distribution function, each beside its derivative.

Used by the exact ReLU moments (:mod:`tinybnn.layers.relu_exact`). NumPy has no ``erf``, so
the error functions are Python's ``math.erf`` / ``math.erfc`` made into NumPy ufuncs by numba
(``numba.vectorize``, compiled on the first call, not at import, and cached); each has a NumPy
twin, ``np.vectorize`` of the
same ``math`` function, slow but obviously right, and ``tests/test_relu_exact.py`` checks that
the two agree exactly. With ``NUMBA_DISABLE_JIT=1`` the ufuncs run the Python function.

==============  ==============================================  ===========================
map             value                                           derivative
==============  ==============================================  ===========================
norm_pdf        phi(a) = exp(-a^2 / 2) / sqrt(2 pi)             -a phi(a)   (norm_pdf_grad)
norm_cdf        Phi(a) = erfc(-a / sqrt 2) / 2                  phi(a)      (norm_cdf_grad)
==============  ==============================================  ===========================

``Phi`` is computed from ``erfc`` rather than ``(1 + erf(a / sqrt 2)) / 2``: for a very negative
``a`` the latter subtracts two numbers close to 1 and returns 0 (``Phi(-10)`` = 7.6e-24, not 0),
while ``erfc`` keeps full relative precision in the tail. ``Phi(a)`` and ``Phi(-a)`` are then both
accurate, and the exact ReLU moments use each where the other would lose digits.
"""

import functools
import math

import numba
import numpy as np

SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# float32 first: numpy picks the first loop its input casts to safely, so float32 input stays
# float32 and float64 input uses the float64 loop.
_SIGNATURES = ["float32(float32)", "float64(float64)"]


class LazyUfunc:
    """``numba.vectorize(_SIGNATURES, cache=True)`` of a scalar function, made on its first call.

    Made at import, the two ufuncs below cost every process that imports tinybnn's layers about
    0.25 s even with a warm cache (loading and building them), and four compilations with an
    empty one, though only the exact ReLU uses them: ``import tinybnn.compress`` took 1.06 s,
    0.51-0.59 s with them made on first use (``python -X importtime``), and a warm-cache process
    that imports it and trains the main job's network on 20 images 1.49-1.86 s, 1.24-1.62 s
    (four alternated pairs, 2026-12-01). The signatures stay explicit, so float32 input keeps a
    float32 loop whichever dtype comes first (a signature-less numba ufunc would not).
    """

    def __init__(self, fn):
        self.py_func, self._ufunc = fn, None
        functools.update_wrapper(self, fn)

    def __call__(self, x):
        if self._ufunc is None:
            self._ufunc = numba.vectorize(_SIGNATURES, cache=True)(self.py_func)
        return self._ufunc(x)


@LazyUfunc
def erf(x):
    """The error function 2/sqrt(pi) int_0^x exp(-t^2) dt, element-wise (a numba ufunc)."""
    return math.erf(x)


@LazyUfunc
def erfc(x):
    """The complementary error function 1 - erf(x), accurate for large x (a numba ufunc)."""
    return math.erfc(x)


def erf_numpy(x):
    """NumPy twin of :func:`erf`: ``math.erf`` applied element by element."""
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def erfc_numpy(x):
    """NumPy twin of :func:`erfc`: ``math.erfc`` applied element by element."""
    x = np.asarray(x)
    return np.vectorize(math.erfc, otypes=[x.dtype])(x)


def norm_pdf(a):
    """phi(a) = exp(-a^2/2) / sqrt(2 pi), the standard normal density."""
    return INV_SQRT_2PI * np.exp(-0.5 * a * a)


def norm_pdf_grad(a):
    """d phi / da = -a phi(a)."""
    return -a * norm_pdf(a)


def norm_cdf(a):
    """Phi(a) = P(Z <= a) = erfc(-a / sqrt 2) / 2, accurate in both tails' relative sense."""
    return 0.5 * erfc(-a / SQRT2)


def norm_cdf_grad(a):
    """d Phi / da = phi(a)."""
    return norm_pdf(a)
