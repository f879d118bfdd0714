"""tinybnn.data: the shipped datasets as loaded, their subsets, splits and every argument error
(their files and checksums: test_dataset_files.py)."""

import numpy as np
import pytest

from tinybnn import data, dataset_files
from tinybnn.errors import ConfigError, DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]    # all 1797 images


@pytest.fixture(scope="module")
def mnist():
    return data.load("mnist", dtype=np.float32)


# --- the datasets as shipped ---------------------------------------------------------------

def test_available():
    assert dataset_files.available() == ("mnist", "fashion_mnist", "digits")


def test_mnist_matches_the_original(mnist):
    assert mnist.train.x.shape == (60000, 1, 28, 28)
    assert mnist.test.x.shape == (10000, 1, 28, 28)
    assert mnist.train.x.dtype == np.float32
    assert mnist.train.y.dtype == np.int64 and mnist.train.y.shape == (60000,)
    assert np.bincount(mnist.train.y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.test.y).tolist() == MNIST_TEST_COUNTS
    assert mnist.train.y[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.train.x.min() == 0.0 and mnist.train.x.max() == 1.0
    assert mnist.val is None
    assert mnist.classes == tuple("0123456789")


def test_fashion_mnist_matches_the_original():
    ds = data.load("fashion_mnist", dtype=np.float32)
    assert ds.train.x.shape == (60000, 1, 28, 28) and ds.test.x.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.train.y).tolist() == [6000] * 10
    assert np.bincount(ds.test.y).tolist() == [1000] * 10
    assert ds.train.y[:5].tolist() == [9, 0, 0, 3, 0]
    assert 0.0 <= ds.train.x.min() and ds.train.x.max() <= 1.0
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


def test_digits_fixed_split():
    ds = data.load("digits")
    assert ds.train.x.shape == (1347, 1, 8, 8) and ds.test.x.shape == (450, 1, 8, 8)
    assert ds.train.x.dtype == np.float64
    all_y = np.concatenate([ds.train.y, ds.test.y])
    assert np.bincount(all_y).tolist() == DIGITS_COUNTS
    x = np.concatenate([ds.train.x, ds.test.x])
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.all(np.isin(x * 16, np.arange(17)))      # 0..16 scaled by 1/16, nothing else


# --- subsets and the validation split --------------------------------------------------------

def test_int_subset_is_balanced_shuffled_and_seeded():
    a = data.load("digits", subset=103, seed=5)
    b = data.load("digits", subset=103, seed=5)
    c = data.load("digits", subset=103, seed=6)
    assert np.bincount(a.train.y).tolist() == [11, 11, 11] + [10] * 7   # remainder first
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.train.y, b.train.y)
    assert not np.array_equal(a.train.y, c.train.y)
    assert not np.all(np.diff(a.train.y) >= 0)          # random order, not grouped by class
    assert len(a.test) == 450                           # the test set is untouched


def test_fraction_subset_keeps_each_class_fraction():
    ds = data.load("digits", subset=0.5, seed=1)
    full = np.bincount(data.load("digits").train.y)
    assert np.bincount(ds.train.y).tolist() == np.floor(full * 0.5 + 0.5).astype(int).tolist()
    assert len(data.load("digits", subset=1.0).train) == 1347


def test_subset_images_are_images_of_the_full_set():
    full = data.load("digits")
    sub = data.load("digits", subset=50, seed=2)
    rows = {x.tobytes(): y for x, y in zip(full.train.x, full.train.y)}
    for x, y in zip(sub.train.x, sub.train.y):
        assert rows[x.tobytes()] == y


def test_validation_is_stratified_disjoint_and_seeded():
    ds = data.load("digits", subset=500, validation=0.2, seed=3)
    again = data.load("digits", subset=500, validation=0.2, seed=3)
    assert len(ds.train) + len(ds.val) == 500
    assert np.bincount(ds.val.y).tolist() == [10] * 10
    assert np.bincount(ds.train.y).tolist() == [40] * 10
    np.testing.assert_array_equal(ds.val.x, again.val.x)
    train_rows = {x.tobytes() for x in ds.train.x}
    assert not any(x.tobytes() in train_rows for x in ds.val.x)   # digits has no duplicates


def test_validation_without_subset_uses_the_whole_training_set():
    ds = data.load("digits", validation=0.1)
    assert len(ds.train) + len(ds.val) == 1347
    assert len(ds.val) == int(np.floor(np.bincount(data.load("digits").train.y) * 0.1
                                       + 0.5).sum())


def test_test_subset_is_balanced_and_independent_of_the_training_subset():
    a = data.load("digits", subset=100, test_subset=50, seed=0)
    b = data.load("digits", subset=100, test_subset=30, seed=0)
    assert np.bincount(a.test.y).tolist() == [5] * 10
    np.testing.assert_array_equal(a.train.y, b.train.y)   # separate random streams


def test_mnist_quick_run(mnist):
    ds = data.load("mnist", subset=1000, validation=0.1, test_subset=200, seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (900, 100, 200)
    assert ds.train.x.shape[1:] == (1, 28, 28) and ds.train.x.dtype == np.float64


def test_float32_and_float64_agree():
    a = data.load("digits", dtype=np.float32)
    b = data.load("digits", dtype="float64")
    assert a.train.x.dtype == np.float32 and b.train.x.dtype == np.float64
    np.testing.assert_allclose(a.train.x, b.train.x, rtol=1e-7)


# --- bad arguments ---------------------------------------------------------------------------

def test_unknown_name_lists_the_available_ones():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'; available: mnist, "
                                        "fashion_mnist, digits"):
        data.load("cifar10")


@pytest.mark.parametrize("subset, message", [
    (0, "positive number"),
    (-5, "positive number"),
    (9, "fewer images than the 10 classes"),
    (1348, "more images than the 1347 available"),
    (1340, "needs 134 images of class '4'"),        # class '4' has only 133 training images
    (0.0, r"in \(0, 1\]"),
    (1.5, r"in \(0, 1\]"),
    (1000.0, "pass an int"),
    (0.001, "keeps no image of class"),
    (True, "should be None, an int"),
    ("100", "should be None, an int"),
])
def test_impossible_subsets(subset, message):
    with pytest.raises(DataError, match=message):
        data.load("digits", subset=subset)


@pytest.mark.parametrize("validation, message", [
    (-0.1, r"in \[0, 1\)"), (1.0, r"in \[0, 1\)"), (float("nan"), r"in \[0, 1\)"),
    (None, r"in \[0, 1\)"),
])
def test_impossible_validation_fractions(validation, message):
    with pytest.raises(DataError, match=message):
        data.load("digits", validation=validation)


def test_validation_too_small_or_too_large_for_the_subset():
    with pytest.raises(DataError, match="holds out none"):
        data.load("digits", subset=20, validation=0.1)      # 2 per class, 0.2 rounds to 0
    with pytest.raises(DataError, match="leave no training image of class"):
        data.load("digits", subset=10, validation=0.6)      # 1 per class, 0.6 rounds to 1


@pytest.mark.parametrize("test_subset", [0, -1, 2.5, 5, 451])
def test_impossible_test_subsets(test_subset):
    with pytest.raises(DataError, match="test_subset"):
        data.load("digits", test_subset=test_subset)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, "complex128", "no such type"])
def test_other_dtypes_are_refused(dtype):
    with pytest.raises(ConfigError, match="float32 or float64"):
        data.load("digits", dtype=dtype)


@pytest.mark.parametrize("seed", [-1, 1.5, None])
def test_bad_seeds_are_refused(seed):
    with pytest.raises(ConfigError, match="seed"):
        data.load("digits", seed=seed)
