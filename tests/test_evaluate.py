"""Predictions and metrics (tinybnn.evaluate): ``predict`` gives the predictive mean and, for a
Bayesian network, the covariance, the same in any batch size (checked against one linear
layer's moments and a vanilla network's softmax written out here); ``classification_metrics``
matches accuracy, log loss, per-class accuracy, the Gaussian NLL and the mean predictive
variance computed by hand on a tiny example; ``evaluate`` agrees with ``predict`` on the
digits and gives a regression network's RMSE, NLL and variance."""

import json

import numpy as np
import pytest

from tinybnn import data
from tinybnn.architectures import mlp
from tinybnn.errors import ShapeError
from tinybnn.evaluate import classification_metrics, evaluate, predict

from vdp_helpers import digits_cnn


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", validation=0.1, seed=0)


def test_evaluate_metrics_agree_with_predict(digits):
    model = digits_cnn()
    mean, cov = predict(model, digits.test.x, batch_size=100)
    m = evaluate(model, digits.test)
    assert m["accuracy"] == pytest.approx((mean.argmax(1) == digits.test.y).mean())
    assert m["mean_predictive_variance"] == pytest.approx(
        np.trace(cov, axis1=1, axis2=2).mean() / 10)
    assert len(m["per_class_accuracy"]) == 10
    json.dumps(m)  # JSON-able


# --- classification_metrics, predict and evaluate against values computed here -------------

# 4 examples, 3 classes: predicted 0, 1, 0, 2 for labels 0, 2, 0, 2 (three right)
MEAN = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
LABELS = np.array([0, 2, 0, 2])


def test_classification_metrics_by_hand_without_a_covariance():
    m = classification_metrics(MEAN, None, LABELS)
    assert m["n"] == 4
    assert m["accuracy"] == 0.75
    assert m["per_class_accuracy"] == [1.0, None, 0.5]  # class 1 has no example
    log_loss = -(np.log(0.7) + np.log(0.3) + np.log(0.5) + np.log(0.6)) / 4
    assert m["log_loss"] == pytest.approx(log_loss, rel=1e-14)
    assert m["nll"] == m["log_loss"]  # a vanilla network's NLL is its cross-entropy
    assert m["mean_predictive_variance"] is None


def test_classification_metrics_by_hand_with_a_covariance():
    var = np.array([[0.1, 0.2, 0.3], [0.05, 0.05, 0.05], [0.4, 0.1, 0.1], [0.2, 0.3, 0.1]])
    cov = np.stack([np.diag(v) for v in var])
    jitter = 0.01
    m = classification_metrics(MEAN, cov, LABELS, jitter=jitter)
    r = MEAN - np.eye(3)[LABELS]  # mean minus the one-hot label
    a = var + jitter  # A = diag(var) + jitter I: its inverse and log-determinant by hand
    nll = np.mean([0.5 * sum(r[b, k] ** 2 / a[b, k] + np.log(a[b, k]) for k in range(3))
                   for b in range(4)])
    assert m["nll"] == pytest.approx(nll, rel=1e-12)
    assert m["mean_predictive_variance"] == pytest.approx(var.sum() / 4 / 3, rel=1e-14)
    assert m["accuracy"] == 0.75 and m["per_class_accuracy"] == [1.0, None, 0.5]


def test_predict_of_one_bayesian_linear_layer_by_hand():
    """One Bayesian Linear on a point input: mean x M + b, covariance diag(s ||x||^2), with
    s = softplus(rho); predict returns it as (n, K, K) matrices, in any batch size."""
    model = mlp((4, 2), task="regression", seed=5)
    x = np.random.default_rng(0).normal(size=(5, 4))
    M, rho, b = (model.params[f"fc1.{k}"] for k in ("M", "rho", "b"))
    s = np.log1p(np.exp(rho))
    for batch_size in (1, 2, 500):
        mean, cov = predict(model, x, batch_size=batch_size)
        np.testing.assert_allclose(mean, x @ M + b, rtol=1e-12, atol=1e-15)
        want = np.zeros((5, 2, 2))
        for e in range(5):
            want[e] = np.diag(s * (x[e] @ x[e]))
        np.testing.assert_allclose(cov, want, rtol=1e-12, atol=0)


def test_predict_of_a_vanilla_classifier_is_the_softmax_of_its_logits():
    model = mlp((4, 3), bayesian=False, seed=6)
    x = np.random.default_rng(1).normal(size=(6, 4))
    logits = x @ model.params["fc1.M"] + model.params["fc1.b"]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    mean, cov = predict(model, x, batch_size=4)
    assert cov is None
    np.testing.assert_allclose(mean, p, rtol=1e-12)


def test_predict_refuses_a_batch_size_below_one_and_no_examples():
    model = mlp((4, 3), seed=0)
    with pytest.raises(ShapeError, match="batch_size must be >= 1, found 0"):
        predict(model, np.zeros((2, 4)), batch_size=0)
    with pytest.raises(ShapeError, match="predict needs at least one example, found 0"):
        predict(model, np.zeros((0, 4)))


def test_evaluate_a_regression_network_by_hand():
    rng = np.random.default_rng(2)
    split = data.Split(rng.normal(size=(6, 4)), rng.normal(size=(6, 2)))
    model = mlp((4, 2), task="regression", seed=7)
    M, rho, b = (model.params[f"fc1.{k}"] for k in ("M", "rho", "b"))
    mean = split.x @ M + b
    var = np.log1p(np.exp(rho)) * (split.x**2).sum(axis=1, keepdims=True)  # (6, 2)
    r, a = mean - split.y, var + 1e-3  # the default jitter
    m = evaluate(model, split, batch_size=4)
    assert m["n"] == 6
    assert m["rmse"] == pytest.approx(np.sqrt((r**2).sum() / 12), rel=1e-12)
    assert m["nll"] == pytest.approx((0.5 * (r**2 / a + np.log(a))).sum() / 6, rel=1e-12)
    assert m["mean_predictive_variance"] == pytest.approx(var.sum() / 6 / 2, rel=1e-12)
    vanilla = mlp((4, 2), task="regression", bayesian=False, seed=7)
    err = split.x @ vanilla.params["fc1.M"] + vanilla.params["fc1.b"] - split.y
    assert evaluate(vanilla, split) == {"n": 6, "rmse": pytest.approx(np.sqrt((err**2).mean()))}
