"""The Monte Carlo predictive distribution with sampled weights (tinybnn.monte_carlo): one
weight draw per sample has the posterior moments (the logits of a Bayesian Linear layer, within
5 standard errors over 4000 draws), mc_predictive is seeded by its rng, keeps its checkpoints
and reaches the propagated moments when every variance is ~0, where mc_agreement reports full
agreement; and a vanilla network is refused."""

import numpy as np
import pytest

from tinybnn.architectures import paper_cnn
from tinybnn.errors import ConfigError
from tinybnn.evaluate import predict
from tinybnn.layers import Linear
from tinybnn.model import Sequential
from tinybnn.monte_carlo import mc_agreement, mc_predictive, point_twin, sample_weights


def test_sampled_weights_have_the_posterior_moments():
    """Logits of the point twin of Linear(Point): mean M^T x + b, variance s_j ||x||^2
    (exact), within 5 standard errors over 4000 weight draws."""
    rng = np.random.default_rng(0)
    model = Sequential([("fc", Linear(5, 3, rng=rng, rho_range=(-1, 0)))], input_shape=(5,))
    model["fc"].params["b"][...] = rng.normal(size=3)
    x = rng.normal(size=(1, 5))
    y = model.forward(x)
    twin = point_twin(model)
    draws = []
    for _ in range(4000):
        sample_weights(model, twin, rng)
        draws.append(twin.forward(x).mean[0])
    draws = np.array(draws)  # (S, K)
    se = draws.std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - y.mean[0]) < 5 * se)
    se_var = ((draws - draws.mean(0)) ** 2).std(axis=0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.var(axis=0) - y.var[0]) < 5 * se_var)


def test_mc_predictive_is_seeded_and_reaches_the_zero_variance_limit():
    rng = np.random.default_rng(1)
    model = paper_cnn(2, input_shape=(1, 8, 8), kernel_size=3, n_classes=3, seed=0)
    x = rng.random((4, 1, 8, 8))
    a = mc_predictive(model, x, 5, np.random.default_rng(3), checkpoints=[1, 2, 9])
    b = mc_predictive(model, x, 5, np.random.default_rng(3))
    assert sorted(a) == [1, 2, 5]
    np.testing.assert_array_equal(a[5][0], b[5][0])
    mean, cov = a[5]
    assert mean.shape == (4, 3) and cov.shape == (4, 3, 3)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0)
    assert np.linalg.eigvalsh(cov).min() > -1e-12
    # variances ~1e-20: every draw is the mean network, so MC = propagated = the point net
    for layer in model.bayesian_layers:
        layer.params["rho"][...] = -46.0
    mc = mc_predictive(model, x, 3, np.random.default_rng(0))
    vdp = predict(model, x)
    np.testing.assert_allclose(mc[3][0], vdp[0], atol=1e-9)
    agree = mc_agreement(vdp, mc)
    assert agree["rows"][0]["class_agreement"] == 1.0
    assert agree["samples_to_agree"]["predicted"] == 3
    assert agree["samples_to_agree"]["confidence"] == 3


def test_mc_predictive_refuses_a_vanilla_network():
    with pytest.raises(ConfigError, match="Bayesian classifier"):
        mc_predictive(paper_cnn(2, bayesian=False, input_shape=(1, 8, 8), kernel_size=3),
                      np.zeros((1, 1, 8, 8)), 2, np.random.default_rng(0))
