"""tinybnn.removal: the moments, calibration and OOD detection before and after removing
kernels whose mean is zero."""

import numpy as np
import pytest

from tinybnn import data
from tinybnn.architectures import paper_cnn
from tinybnn.prune import remove
from tinybnn.removal import covariance_error, removal_effect


def test_covariance_error():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(4, 3, 3))
    assert covariance_error(S, S) == 0.0
    assert covariance_error(2 * S, S) == pytest.approx(1.0)


def _network(scale):
    """A small paper CNN whose kernels 1 and 3 have means of size ``scale`` (0: exactly zero)
    and whose last layer reads nothing from them (their blocks of fc.M are zero), as in a
    trained network that switched them off."""
    net = paper_cnn(5, input_shape=(1, 8, 8), kernel_size=3, seed=2, rho_range=(-4, -3),
                    last_variance=1.0)
    M = net.params["conv.M"]
    M[[1, 3]] = scale * np.random.default_rng(3).normal(size=M[[1, 3]].shape)
    W = net.params["fc.M"].reshape(5, -1, 10)  # a view: block k reads kernel k
    W[[1, 3]] = 0.0
    return net


@pytest.mark.parametrize("scale", [0.0, 1e-6])
def test_removal_keeps_the_mean_and_moves_the_covariance_unless_exactly_zero(scale):
    """Removing kernels whose mean is exactly 0 changes nothing; removing kernels whose mean
    is 1e-6 keeps the mean but moves the propagated covariance: where the tiny mean is
    positive the first-order ReLU passes the kernel's variance, and the last layer's weight
    noise multiplies the trace of its input covariance. Every figure is there and finite."""
    ds = data.load("digits", test_subset=60, seed=0)
    full = _network(scale)
    pruned = remove(full, "conv", [1, 3])
    x_ood = np.random.default_rng(1).random(ds.test.x.shape)
    r = removal_effect(full, pruned, ds.test.x, ds.test.y, x_ood, n_samples=20)
    assert r["mean_change"] == 0.0
    if scale == 0.0:
        assert r["propagated_change"] < 1e-12
    else:
        assert r["propagated_change"] > 1e-3
    for net in ("full", "pruned"):
        assert set(r[net]) == {"accuracy", "ece", "auroc", "mc_vs_propagated", "mc_accuracy"}
        assert r[net]["accuracy"] == r["full"]["accuracy"]
    assert all(np.isfinite(v) for v in r["against_full_mc"].values())
    assert r["against_full_mc"]["full, Monte Carlo again"] > 0  # independent draws differ
