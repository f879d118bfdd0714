"""Small synthetic datasets made in code, seeded, for MLPs and for pictures of uncertainty.

Both return the same :class:`~tinybnn.data.Dataset` as :func:`tinybnn.data.load`, with
``val=None``:

==================  ==============  ========================  ===============================
function            ``x``           ``y``                     what it shows
==================  ==============  ========================  ===============================
``regression_gap``  ``(n, 1)``      ``(n, 1)`` float          uncertainty growing in a gap in
                                                              the inputs and beyond the data
``two_moons``       ``(n, 2)``      ``(n,)`` int64, 2         a curved decision boundary
                                    classes
==================  ==============  ========================  ===============================

All randomness comes from one ``numpy.random.default_rng(seed)``: the same arguments give
identical arrays.
"""

import math
import numbers

import numpy as np

from tinybnn.data import Dataset, Split, check_dtype, check_seed
from tinybnn.errors import ConfigError

#: The two intervals the regression training inputs are drawn from; the gap lies between them.
GAP_INTERVALS = ((-1.5, -0.5), (0.5, 1.5))
#: The test inputs of the regression set: an even grid over this wider range.
GAP_TEST_RANGE = (-2.5, 2.5)


def _check_count(value, what, least):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ConfigError(f"{what} should be an int >= {least}, found {value!r}")
    return int(value)


def _check_noise(noise):
    if (isinstance(noise, bool) or not isinstance(noise, numbers.Real)
            or not math.isfinite(noise) or noise < 0):
        raise ConfigError(f"noise should be a finite float >= 0, found {noise!r}")
    return float(noise)


def gap_function(x):
    """The noise-free regression curve ``sin(3 x)``, for plotting beside predictions."""
    return np.sin(3.0 * x)


def regression_gap(n_train=160, n_test=200, noise=0.1, *, seed=0, dtype=np.float64):
    r"""A 1-D regression problem with a gap in its training inputs.

    .. math::

        y = \sin(3x) + \varepsilon, \qquad \varepsilon \sim \mathcal{N}(0, \text{noise}^2)

    Training inputs: half of ``n_train`` drawn uniformly from ``[-1.5, -0.5]`` and the rest from
    ``[0.5, 1.5]`` (:data:`GAP_INTERVALS`), in random order, so there is no data in
    ``(-0.5, 0.5)``. Test inputs: ``n_test`` evenly spaced points over ``[-2.5, 2.5]``
    (:data:`GAP_TEST_RANGE`), sorted, covering the gap and both sides beyond the data; their
    targets carry the same noise. A well-calibrated model's predictive variance should grow in
    the gap and outside ``[-1.5, 1.5]``; :func:`gap_function` gives the noise-free curve.

    Returns
    -------
    Dataset
        ``train.x`` ``(n_train, 1)``, ``train.y`` ``(n_train, 1)``; ``test.x``
        ``(n_test, 1)``, ``test.y`` ``(n_test, 1)``; ``val=None``; ``classes=()``.
    """
    n_train = _check_count(n_train, "n_train", 2)
    n_test = _check_count(n_test, "n_test", 1)
    noise = _check_noise(noise)
    dtype = check_dtype(dtype)
    rng = np.random.default_rng(check_seed(seed))

    (a0, a1), (b0, b1) = GAP_INTERVALS
    n_left = n_train // 2
    x_train = np.concatenate([rng.uniform(a0, a1, n_left),
                              rng.uniform(b0, b1, n_train - n_left)])       # (n_train,)
    x_train = rng.permutation(x_train)
    y_train = gap_function(x_train) + noise * rng.standard_normal(n_train)  # (n_train,)
    x_test = np.linspace(*GAP_TEST_RANGE, n_test)                           # (n_test,)
    y_test = gap_function(x_test) + noise * rng.standard_normal(n_test)     # (n_test,)

    def column(a):
        return a.astype(dtype)[:, None]                                     # (n, 1)

    return Dataset(name="regression_gap",
                   train=Split(column(x_train), column(y_train)),
                   val=None,
                   test=Split(column(x_test), column(y_test)),
                   classes=())


def _moons(n, noise, rng):
    """``n`` points of two interleaved half circles; see :func:`two_moons`."""
    n_upper = n // 2
    y = np.concatenate([np.zeros(n_upper, np.int64), np.ones(n - n_upper, np.int64)])  # (n,)
    t = rng.uniform(0.0, np.pi, n)                                          # (n,)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)                        # (n, 2)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)            # (n, 2)
    x = np.where(y[:, None] == 0, upper, lower)                             # (n, 2)
    x = x + noise * rng.standard_normal((n, 2))
    order = rng.permutation(n)
    return x[order], y[order]


def two_moons(n=200, noise=0.1, *, n_test=200, seed=0, dtype=np.float64):
    r"""Two interleaved half circles, one class each, in 2-D.

    With :math:`t \sim U(0, \pi)` and :math:`\varepsilon \sim \mathcal{N}(0,
    \text{noise}^2 I_2)`:

    .. math::

        \text{class 0 (upper):}\; x = (\cos t,\ \sin t) + \varepsilon, \qquad
        \text{class 1 (lower):}\; x = (1 - \cos t,\ \tfrac12 - \sin t) + \varepsilon

    ``n // 2`` points are of class 0 and the rest of class 1, in random order. The test set
    (``n_test`` points) is drawn the same way from the same generator after the training set.

    Returns
    -------
    Dataset
        ``train.x`` ``(n, 2)``, ``train.y`` ``(n,)`` int64 in {0, 1}; ``test`` likewise with
        ``n_test`` points; ``val=None``; ``classes=("upper", "lower")``.
    """
    n = _check_count(n, "n", 2)
    n_test = _check_count(n_test, "n_test", 2)
    noise = _check_noise(noise)
    dtype = check_dtype(dtype)
    rng = np.random.default_rng(check_seed(seed))

    x_train, y_train = _moons(n, noise, rng)
    x_test, y_test = _moons(n_test, noise, rng)
    return Dataset(name="two_moons",
                   train=Split(x_train.astype(dtype), y_train),
                   val=None,
                   test=Split(x_test.astype(dtype), y_test),
                   classes=("upper", "lower"))
