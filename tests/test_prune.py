"""Ranking, selection and structural removal of kernels and hidden units."""

import numpy as np
import pytest

from tinybnn.architectures import mlp, paper_cnn, small_cnn
from tinybnn.errors import ConfigError
from tinybnn.evaluate import predict
from tinybnn.prune import Ranking, compare, prunable_layers, rank, remove, select

RNG = np.random.default_rng(0)
X12 = RNG.random((20, 1, 12, 12))


def cnn(bayesian=True, n=6):
    return paper_cnn(n, bayesian=bayesian, input_shape=(1, 12, 12), seed=1, rho_range=(-4, -2))


def test_rank_criteria():
    model = cnn()
    U = model.params["conv.M"].reshape(6, -1)
    s = model["conv"].s
    np.testing.assert_allclose(rank(model, "conv", "norm").scores, np.linalg.norm(U, axis=1))
    np.testing.assert_allclose(rank(model, "conv", "snr").scores,
                               np.linalg.norm(U, axis=1) / np.sqrt(25 * s))
    np.testing.assert_allclose(rank(model, "conv", "variance").scores, 1 / s)
    r1 = rank(model, "conv", "random", rng=np.random.default_rng(3)).scores
    r2 = rank(model, "conv", "random", rng=np.random.default_rng(3)).scores
    np.testing.assert_array_equal(r1, r2)
    with pytest.raises(ConfigError, match="unknown criterion 'l0'"):
        rank(model, "conv", "l0")
    with pytest.raises(ConfigError, match="needs a Bayesian layer"):
        rank(cnn(bayesian=False), "conv", "snr")
    with pytest.raises(ConfigError, match="cannot be pruned"):
        rank(model, "fc")
    assert prunable_layers(mlp((5, 4, 3, 2))) == ["fc1", "fc2"]


def ranking(scores):
    return Ranking("conv", "norm", np.array(scores, dtype=float))


def test_selection_rules():
    r = ranking([0.5, 1e-5, 0.7, 2e-5, 0.6])
    assert select(r, "threshold", 1e-3).removed == [1, 3]
    assert select(r, "median_fraction", 0.1).removed == [1, 3]  # median 0.5 -> cut-off 0.05
    gap = select(r, "largest_gap", 10)
    assert gap.removed == [1, 3] and "factor" in gap.note
    assert select(ranking([0.5, 0.6, 0.7]), "largest_gap", 10).removed == []
    assert select(r, "count", 2).removed == [1, 3]
    sel = select(r, "threshold", 1e-3)
    assert sel.kept == [0, 2, 4] and sel.scores[1] == 1e-5
    with pytest.raises(ConfigError, match="selects all 5 kernels"):
        select(r, "threshold", 10.0)
    for rule, value in (("median_fraction", 2.0), ("largest_gap", 0.5), ("count", 5), ("nope", 1)):
        with pytest.raises(ConfigError):
            select(r, rule, value)


def test_removing_exactly_zero_kernels_changes_nothing():
    model = cnn()
    model.params["conv.M"][[1, 4]] = 0.0
    smaller = remove(model, "conv", [1, 4])
    assert smaller["conv"].n_kernels == 4 and smaller.params["fc.M"].shape == (4 * 16, 10)
    change = compare(model, smaller, X12)
    assert change.max_mean_change <= 1e-12
    assert change.max_cov_change <= 1e-12


def test_removal_equals_zeroing_the_kernel():
    """Removing kernel k is exactly the network with M_k = 0 (its ReLU mask is then 0)."""
    model = cnn()
    smaller = remove(model, "conv", [2])
    model.params["conv.M"][2] = 0.0
    m0, S0 = predict(model, X12)
    m1, S1 = predict(smaller, X12)
    np.testing.assert_allclose(m1, m0, rtol=0, atol=1e-13)
    np.testing.assert_allclose(S1, S0, rtol=0, atol=1e-13)


def test_removal_keeps_the_right_fc_rows():
    model = cnn(bayesian=False)
    smaller = remove(model, "conv", [0, 3])
    W, W2 = model.params["fc.M"], smaller.params["fc.M"]
    keep = [1, 2, 4, 5]
    np.testing.assert_array_equal(W2, np.concatenate([W[k * 16:(k + 1) * 16] for k in keep]))
    np.testing.assert_array_equal(smaller.params["conv.M"], model.params["conv.M"][keep])
    n0, n1 = model.n_parameters(), smaller.n_parameters()
    assert n0["means"] - n1["means"] == 2 * (25 + 16 * 10)


def test_mlp_unit_and_second_conv_channel_removal():
    net = mlp((6, 5, 4, 3), seed=2)
    net.params["fc1.M"][:, 2] = 0.0
    net.params["fc1.b"][2] = 0.0
    x = RNG.normal(size=(7, 6))
    change = compare(net, remove(net, "fc1", [2]), x)
    assert change.max_mean_change <= 1e-12 and change.max_cov_change <= 1e-12
    deep = small_cnn((3, 4), input_shape=(1, 8, 8), seed=3)
    smaller = remove(deep, "conv1", [1])
    assert smaller.params["conv2.M"].shape == (4, 2, 3, 3)
    deep.params["conv1.M"][1] = 0.0
    change = compare(deep, smaller, RNG.random((5, 1, 8, 8)))
    assert change.max_mean_change <= 1e-12 and change.max_cov_change <= 1e-12


def test_remove_rejects_bad_indices():
    with pytest.raises(ConfigError, match=r"indices must be in \[0, 6\)"):
        remove(cnn(), "conv", [6])
    with pytest.raises(ConfigError, match="cannot remove all 6"):
        remove(cnn(), "conv", range(6))
