"""tinybnn.toy: the synthetic sets are seeded, shaped as documented, and follow their formulas."""

import numpy as np
import pytest

from tinybnn import toy
from tinybnn.data import Dataset
from tinybnn.errors import ConfigError


def test_regression_gap_shapes_and_gap():
    ds = toy.regression_gap(n_train=101, n_test=50, seed=0)
    assert isinstance(ds, Dataset) and ds.val is None and ds.classes == ()
    assert ds.train.x.shape == (101, 1) and ds.train.y.shape == (101, 1)
    assert ds.test.x.shape == (50, 1) and ds.test.y.shape == (50, 1)
    assert ds.train.x.dtype == np.float64 and ds.train.y.dtype == np.float64
    x = ds.train.x[:, 0]
    (a0, a1), (b0, b1) = toy.GAP_INTERVALS
    assert np.all(((a0 <= x) & (x <= a1)) | ((b0 <= x) & (x <= b1)))   # nothing in the gap
    assert np.sum(x < 0) == 50 and np.sum(x > 0) == 51
    lo, hi = toy.GAP_TEST_RANGE
    np.testing.assert_array_equal(ds.test.x[:, 0], np.linspace(lo, hi, 50))


def test_regression_gap_follows_its_formula():
    noise = 0.1
    ds = toy.regression_gap(n_train=4000, noise=noise, seed=1)
    residual = ds.train.y - toy.gap_function(ds.train.x)
    assert abs(residual.mean()) < 4 * noise / np.sqrt(4000)
    assert residual.std() == pytest.approx(noise, rel=0.05)
    exact = toy.regression_gap(noise=0.0, seed=1)
    np.testing.assert_array_equal(exact.train.y, np.sin(3 * exact.train.x))


def test_two_moons_shapes_and_formula():
    ds = toy.two_moons(n=301, noise=0.0, n_test=40, seed=2, dtype=np.float32)
    assert ds.train.x.shape == (301, 2) and ds.train.y.shape == (301,)
    assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int64
    assert ds.test.x.shape == (40, 2) and ds.classes == ("upper", "lower")
    assert np.bincount(ds.train.y).tolist() == [150, 151]
    x, y = ds.train.x.astype(np.float64), ds.train.y
    upper, lower = x[y == 0], x[y == 1]
    # noise 0: class 0 lies on the unit upper half circle, class 1 on the shifted lower one
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0, atol=1e-6)
    assert np.all(upper[:, 1] >= -1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0, atol=1e-6)
    assert np.all(lower[:, 1] <= 0.5 + 1e-6)


@pytest.mark.parametrize("make", [toy.regression_gap, toy.two_moons])
def test_same_seed_same_arrays(make):
    a, b, c = make(seed=7), make(seed=7), make(seed=8)
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(a, split).x, getattr(b, split).x)
        np.testing.assert_array_equal(getattr(a, split).y, getattr(b, split).y)
    assert not np.array_equal(a.train.x, c.train.x)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_train": 1}, "n_train should be an int >= 2"),
    ({"n_test": 0}, "n_test should be an int >= 1"),
    ({"noise": -0.1}, "noise should be a finite float >= 0"),
    ({"noise": float("inf")}, "noise should be a finite float >= 0"),
    ({"seed": -3}, "seed should be a non-negative int"),
    ({"dtype": np.int32}, "float32 or float64"),
])
def test_regression_gap_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        toy.regression_gap(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 1}, "n should be an int >= 2"),
    ({"n": 10.0}, "n should be an int >= 2"),
    ({"noise": "0.1"}, "noise should be a finite float >= 0"),
    ({"dtype": "float16"}, "float32 or float64"),
])
def test_two_moons_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        toy.two_moons(**kwargs)
