"""Exact ReLU moments: the error-function ufuncs against their twins, the closed forms against
Monte Carlo, the backward passes by central differences (the harness of test_layers.py),
the zero-variance limit, and an MLP built with them."""

import math

import numpy as np
import pytest

from tinybnn.architectures import mlp
from tinybnn.errors import ConfigError, StructureError
from tinybnn.gaussian import Diagonal, Full
from tinybnn.gradcheck import check_gradient
from tinybnn.layers import ReLU, ReLUExact
from tinybnn.layers.relu_exact import rectified_gaussian
from tinybnn.losses import Objective
from tinybnn.model import loss_and_grads
from tinybnn.special import (erf, erf_numpy, erfc, erfc_numpy, norm_cdf, norm_cdf_grad,
                             norm_pdf, norm_pdf_grad)
from vdp_helpers import (input_arrays, input_grad, probe, random_diagonal, random_factored,
                         random_full, random_point, spd)

# ---------------------------------------------------------------------------------------------
# special functions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pair", [(erf, erf_numpy), (erfc, erfc_numpy)], ids=["erf", "erfc"])
def test_erf_ufunc_equals_its_numpy_twin(pair, dtype):
    fast, twin = pair
    x = np.linspace(-9, 9, 4001).astype(dtype).reshape(4001, 1) * np.ones((1, 3), dtype)
    a, b = fast(x), twin(x)
    assert a.dtype == dtype and a.shape == x.shape
    if dtype == np.float64:
        assert np.array_equal(a, b)
    else:  # numba's float32 loop calls erff; the twin rounds math.erf's double to float32
        np.testing.assert_allclose(a, b, rtol=4e-7, atol=1e-38)


def test_normal_cdf_values_and_tails():
    assert norm_cdf(np.array(0.0)) == 0.5
    np.testing.assert_allclose(norm_cdf(np.array([1.0, -1.96])), [0.8413447460685429,
                                                                   0.024997895148220435])
    # the lower tail keeps its relative precision: Phi(-10) = 7.62e-24, not 0
    np.testing.assert_allclose(norm_cdf(np.array(-10.0)), 7.61985302416047e-24, rtol=1e-12)
    assert math.isclose(float(norm_pdf(np.array(0.0))), 1 / math.sqrt(2 * math.pi))


@pytest.mark.parametrize("pair", [(norm_pdf, norm_pdf_grad), (norm_cdf, norm_cdf_grad)],
                         ids=["pdf", "cdf"])
def test_normal_maps_beside_their_derivatives(pair):
    f, df = pair
    a = np.linspace(-4, 4, 17)
    numeric = (f(a + 1e-6) - f(a - 1e-6)) / 2e-6
    np.testing.assert_allclose(df(a), numeric, rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------


def test_rectified_gaussian_against_the_textbook_form_and_quadrature():
    mu = np.linspace(-3, 3, 13)
    v = np.full_like(mu, 0.7)
    m, var, _ = rectified_gaussian(mu, v)
    s = np.sqrt(v)
    a = mu / s
    Phi, phi = norm_cdf(a), norm_pdf(a)
    e2 = (mu**2 + v) * Phi + mu * s * phi
    np.testing.assert_allclose(m, mu * Phi + s * phi, rtol=1e-14)
    np.testing.assert_allclose(var, e2 - m**2, rtol=1e-12)
    # trapezoidal quadrature of relu(x) N(x; mu, v) on a fine grid
    x = np.linspace(-15, 15, 300001)[:, None]
    w = np.exp(-0.5 * (x - mu) ** 2 / v) / np.sqrt(2 * np.pi * v)
    r = np.maximum(x, 0)
    m_q = np.trapezoid(r * w, x, axis=0)
    var_q = np.trapezoid(r**2 * w, x, axis=0) - m_q**2
    np.testing.assert_allclose(m, m_q, rtol=1e-7, atol=1e-10)  # the kink at 0 limits
    np.testing.assert_allclose(var, var_q, rtol=1e-7, atol=1e-10)  # the quadrature


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rectified_variance_is_nonnegative_and_stable_in_the_tails(dtype):
    """The rewritten h(a) keeps var in [0, v] (var/v -> 1 for a >> 0, -> 0 for a << 0)."""
    a = np.concatenate([-np.logspace(-3, 3, 200), np.logspace(-3, 6, 200)]).astype(dtype)
    v = np.ones_like(a) * dtype(1e-2)
    m, var, _ = rectified_gaussian(a * np.sqrt(v), v)
    assert np.all(var >= 0) and np.all(var <= v * (1 + 1e-5))
    big = a > 50
    np.testing.assert_allclose(var[big], v[big], rtol=1e-5)
    assert np.all(np.isfinite(m))


def test_zero_variance_equals_the_deterministic_relu():
    mu = np.array([[-2.0, -1e-3, 0.0, 1e-3, 3.0]])
    for x in (Diagonal(mu, np.zeros_like(mu)), Full(mu, np.zeros((1, 5, 5)))):
        y = ReLUExact().forward(x)
        np.testing.assert_allclose(y.mean, np.maximum(mu, 0), atol=1e-15)
        var = y.var if isinstance(y, Diagonal) else np.diagonal(y.cov, axis1=1, axis2=2)
        assert np.all(var <= 1e-29)


# ---------------------------------------------------------------------------------------------
# gradients: every structure ReLUExact accepts (same harness as test_layers.py)
# ---------------------------------------------------------------------------------------------


def _full_with_spread_means(r):
    x = random_full(r, 3, 6)
    x.mean *= 1.5
    return x


CASES = {
    "relu-exact/point": lambda r: random_point(r, (3, 6)),
    "relu-exact/diagonal": lambda r: random_diagonal(r, (3, 6)),
    "relu-exact/diagonal-images": lambda r: random_diagonal(r, (2, 2, 3, 3)),
    "relu-exact/full": lambda r: random_full(r, 3, 6),
    "relu-exact/full-spread": _full_with_spread_means,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_relu_exact_gradients(case):
    rng = np.random.default_rng(100 + sorted(CASES).index(case))
    layer, x = ReLUExact(), CASES[case](rng)
    y = layer.forward(x)
    f, dy = probe(y, rng)
    dx = layer.backward(dy)

    def loss():
        return f(layer.forward(x))

    results = [check_gradient(loss, a, input_grad(dx, field), name=f"{case} d{field}",
                              symmetric=sym) for field, a, sym in input_arrays(x)]
    assert all(r.passed for r in results), "\n".join(str(r) for r in results)


def test_factored_input_is_refused_with_the_structures_it_takes():
    x = random_factored(np.random.default_rng(0))
    with pytest.raises(StructureError, match="ReLUExact takes Point, Diagonal, Full"):
        ReLUExact().forward(x)


# ---------------------------------------------------------------------------------------------
# Monte Carlo
# ---------------------------------------------------------------------------------------------

N_SAMPLES = 200000


def _mc(mu, S, rng):
    xs = rng.multivariate_normal(mu, S, size=N_SAMPLES)
    r = np.maximum(xs, 0)  # (n, K)
    m = r.mean(axis=0)
    c = r - m
    return m, c.T @ c / N_SAMPLES, r


def test_exact_moments_against_monte_carlo_diagonal():
    """Means and variances within 5 standard errors (the Diagonal rule is exact)."""
    rng = np.random.default_rng(7)
    mu, v = rng.normal(size=(1, 8)), rng.uniform(0.1, 2.0, size=(1, 8))
    y = ReLUExact().forward(Diagonal(mu, v))
    m, C, r = _mc(mu[0], np.diag(v[0]), rng)
    se_m = r.std(axis=0) / np.sqrt(N_SAMPLES)
    se_v = ((r - m) ** 2).std(axis=0) / np.sqrt(N_SAMPLES)
    assert np.all(np.abs(y.mean[0] - m) < 5 * se_m)
    assert np.all(np.abs(y.var[0] - np.diag(C)) < 5 * se_v)


def test_exact_moments_against_monte_carlo_full():
    """Full input: means and variances exact (5 standard errors); the whole covariance closer
    to Monte Carlo than the first-order rule's (one seeded instance, printed with -s)."""
    rng = np.random.default_rng(11)
    K = 6
    mu, S = rng.normal(size=(1, K)), spd(rng, 1, K)
    assert 0 < (mu > 0).sum() < K  # units on both sides of the kink
    x = Full(mu, S)
    exact, first = ReLUExact().forward(x), ReLU().forward(x)
    m, C, r = _mc(mu[0], S[0], rng)
    se_m = r.std(axis=0) / np.sqrt(N_SAMPLES)
    se_v = ((r - m) ** 2).std(axis=0) / np.sqrt(N_SAMPLES)
    assert np.all(np.abs(exact.mean[0] - m) < 5 * se_m)
    assert np.all(np.abs(np.diag(exact.cov[0]) - np.diag(C)) < 5 * se_v)
    err = {name: (np.linalg.norm(y.mean[0] - m) / np.linalg.norm(m),
                  np.linalg.norm(y.cov[0] - C) / np.linalg.norm(C))
           for name, y in (("exact", exact), ("first order", first))}
    print("relative (mean, covariance) error against Monte Carlo:", err)
    assert err["exact"][0] < err["first order"][0]
    assert err["exact"][1] < err["first order"][1]
    assert np.linalg.eigvalsh(exact.cov[0]).min() > -1e-12  # positive semi-definite


# ---------------------------------------------------------------------------------------------
# an MLP built with it
# ---------------------------------------------------------------------------------------------


def test_mlp_with_exact_relu_gradients():
    """End to end: Point -> Linear -> Diagonal -> ReLUExact -> Linear -> Full -> ReLUExact ->
    Linear -> Softmax, every parameter and the input by central differences."""
    rng = np.random.default_rng(9)
    model = mlp((5, 4, 4, 3), seed=3, rho_range=(-2, -1), relu="exact")
    assert [type(layer).__name__ for _, layer in model.layers].count("ReLUExact") == 2
    x, y = rng.normal(size=(3, 5)), rng.integers(0, 3, size=3)
    _, grads = loss_and_grads(model, x, y, Objective(n_train=50))
    grads = {k: g.copy() for k, g in grads.items()}

    def loss():
        return loss_and_grads(model, x, y, Objective(n_train=50))[0].total

    results = [check_gradient(loss, p, grads[k], name=k) for k, p in model.params.items()]
    assert all(r.passed for r in results), "\n".join(str(r) for r in results)


def test_mlp_relu_option():
    assert type(mlp((4, 3, 2)).layers[1][1]) is ReLU
    assert type(mlp((4, 3, 2), relu="exact").layers[1][1]) is ReLUExact
    with pytest.raises(ConfigError, match="relu must be one of first_order, exact"):
        mlp((4, 3, 2), relu="second_order")


def test_exact_mlp_survives_a_model_file(tmp_path):
    from tinybnn import io

    model = mlp((4, 3, 2), relu="exact", seed=1)
    io.save(tmp_path / "m.npz", model)
    loaded, _ = io.load(tmp_path / "m.npz")
    x = np.random.default_rng(0).normal(size=(2, 4))
    assert type(loaded.layers[1][1]) is ReLUExact
    np.testing.assert_array_equal(loaded.forward(x).mean, model.forward(x).mean)
