"""Central-difference gradient checks, shared by the tests and the tutorials.

For a scalar function ``f`` of an array ``x`` (changed in place and restored), the numerical
derivative of entry i is ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``, exact up to
``O(eps^2)`` truncation and ``O(1e-16 |f| / eps)`` rounding: use float64 and keep ``|f|`` near 1.

A symmetric covariance (B, K, K) is perturbed in pairs: entries (i, j) and (j, i) move together,
so the derivative found is ``G_ij + G_ji`` (``G_ii`` on the diagonal) for the symmetric gradient
convention ``dl = tr(G dS)``.

The error reported is norm-wise: ``max_i |a_i - n_i| / max_i |n_i|`` over the checked entries
(analytic a, numerical n), together with the entry where ``|a_i - n_i|`` is largest, so a wrong
derivation points at its first bad index.
"""

from dataclasses import dataclass

import numpy as np

DEFAULT_EPS = 1e-6
DEFAULT_TOL = 1e-6


@dataclass
class CheckResult:
    """The outcome of one check; ``str()`` gives a one-line summary."""

    name: str
    error: float  # max |a - n| / max |n|
    index: tuple  # the entry with the largest |a - n|
    analytic: float
    numeric: float
    n_checked: int
    tol: float

    @property
    def passed(self):
        return bool(self.error <= self.tol)

    def __str__(self):
        verdict = "ok" if self.passed else "WRONG"
        return (f"{self.name}: {verdict}, relative error {self.error:.2e} over {self.n_checked} "
                f"entries (worst at {self.index}: analytic {self.analytic:.10g}, "
                f"numerical {self.numeric:.10g})")


def _entries(x, symmetric, n_entries, rng):
    if symmetric:
        B, K, _ = x.shape
        idx = [(b, i, j) for b in range(B) for i in range(K) for j in range(i, K)]
    else:
        idx = list(np.ndindex(x.shape))
    if n_entries is not None and n_entries < len(idx):
        rng = np.random.default_rng(0) if rng is None else rng
        pick = rng.choice(len(idx), size=n_entries, replace=False)
        idx = [idx[i] for i in sorted(pick)]
    return idx


def numerical_gradient(f, x, index, *, eps=DEFAULT_EPS, symmetric=False):
    """The central difference of ``f()`` for entry ``index`` of ``x`` (and its mirror)."""
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks need float64, found {x.dtype}")
    mirror = (index[0], index[2], index[1]) if symmetric else None
    old = x[index]
    x[index] = old + eps
    if mirror and mirror != index:
        x[mirror] = old + eps
    f_plus = f()
    x[index] = old - eps
    if mirror and mirror != index:
        x[mirror] = old - eps
    f_minus = f()
    x[index] = old
    if mirror and mirror != index:
        x[mirror] = old
    return (f_plus - f_minus) / (2 * eps)


def check_gradient(f, x, analytic, *, name="x", eps=DEFAULT_EPS, tol=DEFAULT_TOL, symmetric=False,
                   n_entries=None, rng=None):
    """Compare ``analytic`` (the shape of ``x``) with central differences of ``f()`` in ``x``.

    n_entries : check this many random entries (all if None).
    """
    if analytic is None or np.shape(analytic) != x.shape:
        raise ValueError(f"{name}: analytic gradient has shape {np.shape(analytic)}, "
                         f"expected {x.shape}")
    idx = _entries(x, symmetric, n_entries, rng)
    a = np.empty(len(idx))
    n = np.empty(len(idx))
    for t, i in enumerate(idx):
        n[t] = numerical_gradient(f, x, i, eps=eps, symmetric=symmetric)
        mirror = (i[0], i[2], i[1]) if symmetric else i
        a[t] = analytic[i] + (analytic[mirror] if symmetric and mirror != i else 0.0)
    diff = np.abs(a - n)
    worst = int(np.argmax(diff))
    scale = max(np.abs(n).max(), np.finfo(float).tiny)
    return CheckResult(name, float(diff[worst] / scale), tuple(int(v) for v in idx[worst]),
                       float(a[worst]), float(n[worst]), len(idx), tol)
