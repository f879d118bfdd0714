"""Optimisers and schedules against hand-computed updates."""

import numpy as np
import pytest

from tinybnn.errors import ConfigError
from tinybnn.optim import SGD, Adam, Constant, ExponentialDecay, PolynomialDecay


def test_adam_first_steps_match_the_formula():
    p = {"w": np.array([1.0, -2.0])}
    opt = Adam(lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8)
    g1, g2 = np.array([0.5, -1.0]), np.array([1.0, 2.0])
    opt.step(p, {"w": g1})
    # step 1: m_hat = g, v_hat = g^2 -> update lr * sign(g)
    np.testing.assert_allclose(p["w"], [1.0 - 0.1, -2.0 + 0.1], rtol=1e-7)
    after1 = p["w"].copy()
    opt.step(p, {"w": g2})
    m = 0.9 * 0.1 * g1 + 0.1 * g2
    v = 0.99 * 0.01 * g1**2 + 0.01 * g2**2
    upd = 0.1 * (m / (1 - 0.81)) / (np.sqrt(v / (1 - 0.99**2)) + 1e-8)
    np.testing.assert_allclose(p["w"], after1 - upd, rtol=1e-12)


def test_sgd_momentum():
    p = {"w": np.array([1.0])}
    opt = SGD(lr=0.5, momentum=0.5)
    opt.step(p, {"w": np.array([2.0])})  # u = 2, w = 0
    opt.step(p, {"w": np.array([2.0])})  # u = 3, w = -1.5
    np.testing.assert_allclose(p["w"], [-1.5])


def test_schedules():
    assert Constant(0.1)(100) == 0.1
    e = ExponentialDecay(1e-3, 1e-4, 10)
    assert e(0) == pytest.approx(1e-3) and e(10) == pytest.approx(1e-4) and e(20) == pytest.approx(1e-4)
    assert e(5) == pytest.approx(np.sqrt(1e-7))
    q = PolynomialDecay(1.0, 0.1, 4, power=2)
    assert q(0) == 1.0 and q(2) == pytest.approx(0.1 + 0.9 * 0.25) and q(9) == pytest.approx(0.1)


def test_optimiser_minimises_a_quadratic():
    rng = np.random.default_rng(0)
    target = rng.normal(size=5)
    for opt in (Adam(lr=ExponentialDecay(0.1, 1e-3, 500)), SGD(lr=0.1, momentum=0.9)):
        p = {"w": np.zeros(5)}
        for _ in range(500):
            opt.step(p, {"w": p["w"] - target})
        np.testing.assert_allclose(p["w"], target, atol=1e-3)


def test_mismatched_gradients():
    with pytest.raises(ConfigError, match="gradients must match"):
        Adam().step({"a": np.zeros(1)}, {"b": np.zeros(1)})


def test_rate_scale_by_name_suffix():
    p = {"conv.M": np.array([1.0]), "conv.rho": np.array([1.0])}
    g = {"conv.M": np.array([1.0]), "conv.rho": np.array([1.0])}
    SGD(lr=0.1, momentum=0.0, rate_scale={"rho": 10}).step(p, g)
    np.testing.assert_allclose([p["conv.M"][0], p["conv.rho"][0]], [0.9, 0.0])
    p = {"conv.M": np.array([1.0]), "conv.rho": np.array([1.0])}
    Adam(lr=0.1, rate_scale={"rho": 10}).step(p, g)  # Adam's first step moves by lr * scale
    np.testing.assert_allclose([p["conv.M"][0], p["conv.rho"][0]], [0.9, 0.0], atol=1e-6)
    with pytest.raises(ConfigError, match="rate_scale"):
        Adam(rate_scale={"rho": -1})
