"""The Gaussian NLL, cross-entropy and regularisers: values against direct formulas, gradients
against central differences, and bad input."""

import numpy as np
import pytest

from tinybnn.errors import ConfigError, DivergenceError, ShapeError
from tinybnn.gaussian import Diagonal, Full, Point
from tinybnn.gradcheck import check_gradient
from tinybnn.layers import Conv2d, Linear
from tinybnn.losses import (Objective, cross_entropy, gaussian_nll, kl_elbo, one_hot,
                            reg_authors2019, reg_authors_later)
from vdp_helpers import spd


def test_nll_value_matches_direct_formula():
    rng = np.random.default_rng(0)
    out = Full(rng.random((4, 5)), spd(rng, 4, 5))
    y = one_hot(np.array([0, 1, 2, 4]), 5, np.float64)
    loss, _, per = gaussian_nll(out, y, jitter=1e-3)
    for b in range(4):
        A = out.cov[b] + 1e-3 * np.eye(5)
        r = out.mean[b] - y[b]
        expected = 0.5 * r @ np.linalg.solve(A, r) + 0.5 * np.linalg.slogdet(A)[1]
        assert per[b] == pytest.approx(expected, rel=1e-12)
    assert loss == pytest.approx(per.mean(), rel=1e-14)


@pytest.mark.parametrize("jitter", [1e-3, 0.1])
def test_nll_gradients(jitter):
    rng = np.random.default_rng(1)
    out = Full(rng.random((3, 4)), spd(rng, 3, 4))
    y = one_hot(np.array([0, 3, 1]), 4, np.float64)
    _, g, _ = gaussian_nll(out, y, jitter)
    f = lambda: gaussian_nll(out, y, jitter)[0]  # noqa: E731
    for r in (check_gradient(f, out.mean, g.mean, name="dmu"),
              check_gradient(f, out.cov, g.cov, name="dS", symmetric=True)):
        assert r.passed, str(r)


def test_nll_diagonal_matches_full():
    rng = np.random.default_rng(2)
    mean, var = rng.random((3, 4)), rng.uniform(0.1, 1, (3, 4))
    y = rng.normal(size=(3, 4))
    ld, gd, _ = gaussian_nll(Diagonal(mean, var), y, 0.01)
    lf, gf, _ = gaussian_nll(Full(mean, np.einsum("bk,kl->bkl", var, np.eye(4))), y, 0.01)
    assert ld == pytest.approx(lf, rel=1e-12)
    np.testing.assert_allclose(gd.mean, gf.mean, rtol=1e-12)
    np.testing.assert_allclose(gd.var, np.diagonal(gf.cov, axis1=1, axis2=2), rtol=1e-12)
    f = lambda: gaussian_nll(Diagonal(mean, var), y, 0.01)[0]  # noqa: E731
    assert check_gradient(f, var, gd.var, name="dvar").passed


def test_nll_rejects_non_positive_definite_and_nan():
    out = Full(np.zeros((1, 2)), np.array([[[1.0, 0.0], [0.0, -1.0]]]))
    with pytest.raises(DivergenceError, match="not positive definite"):
        gaussian_nll(out, np.zeros((1, 2)))
    out = Full(np.array([[np.nan, 0.0]]), np.eye(2)[None])
    with pytest.raises(DivergenceError, match="finite"):
        gaussian_nll(out, np.zeros((1, 2)))
    with pytest.raises(ShapeError, match="shape"):
        gaussian_nll(Full(np.zeros((1, 2)), np.eye(2)[None]), np.zeros((1, 3)))
    with pytest.raises(ConfigError, match="jitter"):
        gaussian_nll(Full(np.zeros((1, 2)), np.eye(2)[None]), np.zeros((1, 2)), jitter=-1)
    with pytest.raises(ConfigError, match="beta"):
        gaussian_nll(Full(np.zeros((1, 2)), np.eye(2)[None]), np.zeros((1, 2)), beta=1.5)
    with pytest.raises(ConfigError, match="nll_beta"):
        Objective(nll_beta=-0.1)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_beta_nll_weights_each_example_by_its_variance(beta):
    """beta-NLL = sum_b w_b NLL_b with w_b = v_b^beta / sum v^beta held constant: its value
    and gradient are those weights applied to the plain per-example NLLs and gradients (the
    plain ones are checked against central differences above)."""
    rng = np.random.default_rng(3)
    B, K, jitter = 5, 4, 1e-3
    out = Full(rng.random((B, K)), spd(rng, B, K) * rng.uniform(0.01, 3, (B, 1, 1)))
    y = one_hot(np.array([0, 3, 1, 2, 2]), K, np.float64)
    loss, g, per = gaussian_nll(out, y, jitter, beta=beta)
    _, g0, per0 = gaussian_nll(out, y, jitter)
    v = np.array([np.trace(out.cov[b]) + K * jitter for b in range(B)])
    w = v**beta / (v**beta).sum()
    np.testing.assert_array_equal(per, per0)  # the reported per-example NLL stays plain
    assert loss == pytest.approx(w @ per0, rel=1e-12)
    assert not np.isclose(loss, per0.mean())  # the weights do change the loss
    np.testing.assert_allclose(g.mean, B * w[:, None] * g0.mean, rtol=1e-12)
    np.testing.assert_allclose(g.cov, B * w[:, None, None] * g0.cov, rtol=1e-12)
    # Diagonal: the weights are per output, a_bk^beta normalised over the whole batch
    var = rng.uniform(0.01, 2, (B, K))
    ld, gd, _ = gaussian_nll(Diagonal(out.mean, var), y, jitter, beta=beta)
    a = var + jitter
    wd = a**beta / (a**beta).sum() * K
    terms = 0.5 * ((out.mean - y) ** 2 / a + np.log(a))
    assert ld == pytest.approx((wd * terms).sum(), rel=1e-12)
    np.testing.assert_allclose(gd.mean, wd * (out.mean - y) / a, rtol=1e-12)


def test_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(3)
    logits = Point(rng.normal(size=(4, 3)) * 5)
    y = np.array([0, 2, 1, 2])
    loss, g, per = cross_entropy(logits, y)
    p = np.exp(logits.mean) / np.exp(logits.mean).sum(1, keepdims=True)
    np.testing.assert_allclose(per, -np.log(p[np.arange(4), y]), rtol=1e-12)
    assert check_gradient(lambda: cross_entropy(logits, y)[0], logits.mean, g.mean).passed


@pytest.mark.parametrize("labels", [np.array([0, 5]), np.array([-1, 0]), np.array([0.0, 1.0]),
                                    np.array([[0, 1]])])
def test_bad_labels(labels):
    with pytest.raises(ShapeError, match="labels"):
        one_hot(labels, 5, np.float64)


@pytest.mark.parametrize("reg", [lambda ls: kl_elbo(ls, n_train=7, prior_var=0.5),
                                 reg_authors2019, reg_authors_later],
                         ids=["elbo", "authors2019", "authors_later"])
def test_regulariser_gradients(reg):
    rng = np.random.default_rng(4)
    layers = [Conv2d(2, 3, 3, rng=rng, rho_range=(-3, 1)), Linear(5, 4, rng=rng, rho_range=(-3, 1))]
    _, grads = reg(layers)
    for i, layer in enumerate(layers):
        for k in ("M", "rho"):
            r = check_gradient(lambda: reg(layers)[0], layer.params[k], grads[i][k], name=k)
            assert r.passed, str(r)
    named = reg({"conv": layers[0], "fc": layers[1]})[1]    # keyed like the layers given
    assert set(named) == {"conv", "fc"}
    assert all(np.array_equal(named["fc"][k], grads[1][k]) for k in ("M", "rho"))


def test_elbo_kl_is_the_gaussian_kl():
    """KL(N(m, s I) || N(0, sp I)) summed over units, divided by n_train."""
    rng = np.random.default_rng(5)
    layer = Linear(3, 2, rng=rng)
    value, _ = kl_elbo([layer], n_train=1, prior_var=2.0)
    expected = 0.0
    for j in range(2):
        m, s = layer.params["M"][:, j], layer.s[j]
        expected += 0.5 * (3 * s / 2 + m @ m / 2 - 3 + 3 * np.log(2 / s))
    assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kwargs", [dict(regulariser="l3"), dict(jitter=-1), dict(n_train=0),
                                    dict(prior_var=0)])
def test_objective_rejects_impossible_values(kwargs):
    with pytest.raises(ConfigError):
        Objective(**kwargs)
