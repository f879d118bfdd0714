"""The shipped image datasets, loaded and split (their files: :mod:`tinybnn.dataset_files`).

One entry point::

    ds = tinybnn.data.load("mnist", subset=1000, validation=0.1, seed=0)
    ds.train.x   # (n, 1, 28, 28) float64 in [0, 1]   NCHW: images, channels, height, width
    ds.train.y   # (n,) int64 class labels in 0..9

=================  =========================  =============  ==================================
name               image shape ``(1, H, W)``  train / test   split
=================  =========================  =============  ==================================
``mnist``          (1, 28, 28)                60,000/10,000  the original one
``fashion_mnist``  (1, 28, 28)                60,000/10,000  the original one
``digits``         (1, 8, 8)                  1,347/450      fixed here: the first 1,347 images
                                                             train, the last 450 test
=================  =========================  =============  ==================================

Each file is found and its sha256 checked before numpy reads a byte of it
(:mod:`tinybnn.dataset_files`). All randomness (subsets, the validation split) comes from
``numpy.random.default_rng`` seeded by ``seed``: the same arguments give identical arrays.
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np

from tinybnn.dataset_files import read_arrays, source
from tinybnn.errors import ConfigError, DataError, ShapeError

#: Digits has no original split; this many of its first images are the training set.
DIGITS_N_TRAIN = 1347


# --------------------------------------------------------------------------------------------
# What load() returns
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Split:
    """One part of a dataset: inputs ``x`` of shape ``(n, ...)`` and targets ``y`` ``(n, ...)``.

    For the image sets ``x`` is ``(n, 1, H, W)`` float in [0, 1] and ``y`` is ``(n,)`` int64.
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ShapeError(f"a Split needs as many targets as inputs: "
                             f"x has {self.x.shape[0]} rows, y has {self.y.shape[0]}")

    def __len__(self):
        return self.x.shape[0]


@dataclass(frozen=True)
class Dataset:
    """A named dataset: ``train``, ``val`` (``None`` when no validation split was asked for),
    ``test``, and ``classes``, the class names indexed by label (empty for regression)."""

    name: str
    train: Split
    val: Split | None
    test: Split
    classes: tuple


# --------------------------------------------------------------------------------------------
# Checking arguments
# --------------------------------------------------------------------------------------------

def check_dtype(dtype):
    """``numpy.float32`` or ``numpy.float64`` as a ``numpy.dtype``; anything else is refused."""
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ConfigError(f"dtype should be float32 or float64, found {dtype!r}") from err
    if dt not in (np.float32, np.float64):
        raise ConfigError(f"dtype should be float32 or float64, found {dt}")
    return dt


def check_seed(seed):
    """A seed is a non-negative int (``bool`` is refused)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed should be a non-negative int, found {seed!r}")
    return int(seed)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_subset_arg(subset):
    if subset is None:
        return
    if _is_int(subset):
        if subset <= 0:
            raise DataError(f"subset should be a positive number of images, found {subset}")
    elif _is_real(subset):
        if not 0.0 < subset <= 1.0:
            raise DataError(f"a float subset is a fraction of the training set and should be "
                            f"in (0, 1], found {subset}; pass an int for a number of images")
    else:
        raise DataError(f"subset should be None, an int (images) or a float in (0, 1], "
                        f"found {subset!r}")


def _check_validation_arg(validation):
    if not _is_real(validation) or not 0.0 <= validation < 1.0:
        raise DataError(f"validation should be a fraction in [0, 1), found {validation!r}")


def _check_test_subset_arg(test_subset):
    if test_subset is not None and (not _is_int(test_subset) or test_subset <= 0):
        raise DataError(f"test_subset should be None or a positive int, found {test_subset!r}")


# --------------------------------------------------------------------------------------------
# Subsets and the validation split (all index arithmetic on labels; images are untouched)
# --------------------------------------------------------------------------------------------

def _class_sizes(y, n_classes):
    return np.bincount(y, minlength=n_classes)                     # (C,)


def _balanced_counts(k, sizes, classes, what):
    """Images per class for ``k`` in all: equal counts, the remainder to the first classes."""
    n_classes = len(sizes)
    if k < n_classes:
        raise DataError(f"{what}={k} is fewer images than the {n_classes} classes; "
                        f"a class-balanced subset needs at least {n_classes}")
    if k > sizes.sum():
        raise DataError(f"{what}={k} is more images than the {sizes.sum()} available")
    counts = np.full(n_classes, k // n_classes)                    # (C,)
    counts[: k % n_classes] += 1
    short = np.flatnonzero(counts > sizes)
    if short.size:
        c = short[0]
        raise DataError(f"{what}={k} needs {counts[c]} images of class {classes[c]!r} to stay "
                        f"class-balanced, but only {sizes[c]} exist")
    return counts


def _fraction_counts(fraction, sizes, classes, what):
    """Images per class keeping ``fraction`` of each class (stratified), at least one each."""
    counts = np.floor(fraction * sizes + 0.5).astype(np.int64)     # (C,) round half up
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        c = empty[0]
        raise DataError(f"{what}={fraction} keeps no image of class {classes[c]!r} "
                        f"({sizes[c]} available); use a larger fraction")
    return counts


def _draw_per_class(y, counts, rng):
    """Indices of ``counts[c]`` randomly drawn images of each class c, in random order."""
    picked = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in enumerate(counts)]
    return rng.permutation(np.concatenate(picked))                 # (sum(counts),)


def _subset_indices(y, subset, classes, rng, what):
    """Indices into ``y`` for ``subset`` (None: all, in the original order)."""
    if subset is None:
        return np.arange(y.shape[0])
    sizes = _class_sizes(y, len(classes))
    if _is_int(subset):
        counts = _balanced_counts(int(subset), sizes, classes, what)
    else:
        counts = _fraction_counts(float(subset), sizes, classes, what)
    return _draw_per_class(y, counts, rng)


def _holdout_mask(y, fraction, classes, rng):
    """Boolean mask, True for the validation images: ``fraction`` of each class (rounded)."""
    sizes = _class_sizes(y, len(classes))
    n_val = np.floor(fraction * sizes + 0.5).astype(np.int64)      # (C,)
    if n_val.sum() == 0:
        raise DataError(f"validation={fraction} of {y.shape[0]} training images holds out "
                        f"none; use a larger fraction or a larger subset")
    left = np.flatnonzero((sizes > 0) & (n_val >= sizes))
    if left.size:
        c = left[0]
        raise DataError(f"validation={fraction} would leave no training image of class "
                        f"{classes[c]!r} ({sizes[c]} in all); use a smaller fraction")
    mask = np.zeros(y.shape[0], dtype=bool)
    for c, k in enumerate(n_val):
        mask[rng.permutation(np.flatnonzero(y == c))[:k]] = True
    return mask


def _to_split(x_u8, y_u8, index, max_value, dtype):
    """uint8 ``(N, H, W)`` images and labels, rows ``index`` -> a float NCHW :class:`Split`."""
    x = x_u8[index].astype(dtype)                                  # (n, H, W)
    x /= max_value                                                 # values in [0, 1]
    y = y_u8[index].astype(np.int64)                               # (n,)
    return Split(x[:, None, :, :], y)                              # x (n, 1, H, W)


def _train_and_test(name):
    """The raw uint8 (x_train, y_train, x_test, y_test) of dataset ``name``: its file's own
    split, or for digits the first :data:`DIGITS_N_TRAIN` images and the rest."""
    arrays = read_arrays(name)
    if name == "digits":
        x, y = arrays["x"], arrays["y"]
        return x[:DIGITS_N_TRAIN], y[:DIGITS_N_TRAIN], x[DIGITS_N_TRAIN:], y[DIGITS_N_TRAIN:]
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------

def load(name, *, subset=None, validation=0.0, seed=0, test_subset=None, dtype=np.float64):
    """Load a shipped dataset as float images in [0, 1], NCHW, with int64 labels.

    Parameters
    ----------
    name : str
        One of :func:`tinybnn.dataset_files.available`: ``"mnist"``, ``"fashion_mnist"``, ``"digits"``.
    subset : None, int or float
        None: the whole training set, in its original order. An int ``k``: ``k`` images drawn
        at random with equal counts per class (the remainder goes one each to the first
        classes), in random order. A float ``f`` in (0, 1]: the fraction ``f`` of each class
        (so the original class proportions are kept), in random order.
    validation : float in [0, 1)
        Fraction of each class of the (subsetted) training set held out as ``val``. 0 gives
        ``val=None``. Both parts keep the order of the training set they came from.
    seed : int
        Seeds ``numpy.random.default_rng``; separate streams are spawned for the training
        subset, the validation split and the test subset, so changing one leaves the others.
    test_subset : None or int
        A class-balanced random subset of the test set with that many images (as for an int
        ``subset``), for quick runs.
    dtype : numpy.float32 or numpy.float64
        The dtype of the images.

    Returns
    -------
    Dataset
        ``train``, ``val`` and ``test`` are :class:`Split` with ``x`` ``(n, 1, H, W)`` and
        ``y`` ``(n,)`` int64; ``classes`` holds the class names.

    Raises
    ------
    DataError
        Unknown name, file missing or corrupted, or an impossible subset or split.
    ConfigError
        A dtype other than float32/float64, or a bad seed.
    """
    src = source(name)
    dtype = check_dtype(dtype)
    seed = check_seed(seed)
    _check_subset_arg(subset)
    _check_validation_arg(validation)
    _check_test_subset_arg(test_subset)
    x_train, y_train, x_test, y_test = _train_and_test(name)
    subset_rng, val_rng, test_rng = (np.random.default_rng(s)
                                     for s in np.random.SeedSequence(seed).spawn(3))
    train_idx = _subset_indices(y_train, subset, src.classes, subset_rng, "subset")
    test_idx = _subset_indices(y_test, test_subset, src.classes, test_rng, "test_subset")

    val = None
    if validation > 0:
        held = _holdout_mask(y_train[train_idx], validation, src.classes, val_rng)
        val = _to_split(x_train, y_train, train_idx[held], src.max_value, dtype)
        train_idx = train_idx[~held]

    return Dataset(name=name,
                   train=_to_split(x_train, y_train, train_idx, src.max_value, dtype),
                   val=val,
                   test=_to_split(x_test, y_test, test_idx, src.max_value, dtype),
                   classes=src.classes)
