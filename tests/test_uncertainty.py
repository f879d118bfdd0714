"""Uncertainty summaries, AUROC and ECE on hand-computed cases, the input gradient by central
differences, and the robustness / out-of-distribution / calibration functions on a tiny network
trained on the 8x8 digits. The Monte Carlo predictive is checked in test_monte_carlo.py."""

import numpy as np
import pytest

from tinybnn import data
from tinybnn.architectures import mlp, paper_cnn
from tinybnn.errors import ConfigError, ShapeError
from tinybnn.evaluate import predict
from tinybnn.gradcheck import check_gradient
from tinybnn.losses import Objective
from tinybnn.model import data_term
from tinybnn.robustness import (attack_targets, check_levels, fgsm, noise_robustness,
                                ood_detection)
from tinybnn.train import fit
from tinybnn.uncertainty import (auroc, average_ranks, calibration, entropy, loss_input_gradient,
                                 scores, summaries, summary_table)

# ---------------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------------


def test_summaries_on_hand_made_moments():
    mean = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
    cov = np.zeros((3, 3, 3))
    cov[0] = np.diag([0.01, 0.02, 0.03])
    cov[1] = [[0.1, -0.05, 0.0], [-0.05, 0.2, 0.0], [0.0, 0.0, 0.3]]
    s = summaries(mean, cov)
    np.testing.assert_array_equal(s["predicted"], [0, 2, 0])
    np.testing.assert_allclose(s["confidence"], [0.7, 0.8, 1.0])
    np.testing.assert_allclose(s["predicted_variance"], [0.01, 0.3, 0.0])
    np.testing.assert_allclose(s["trace"], [0.06, 0.6, 0.0])
    h0 = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))
    h1 = -(0.2 * np.log(0.1) + 0.8 * np.log(0.8))
    np.testing.assert_allclose(s["entropy"], [h0, h1, 0.0])  # 0 log 0 = 0
    sc = scores(s)
    np.testing.assert_allclose(sc["confidence"], [0.3, 0.2, 0.0])
    assert set(sc) == {"confidence", "predicted_variance", "trace", "entropy"}


def test_summaries_of_a_vanilla_prediction_have_no_covariance_terms():
    mean = np.full((2, 4), 0.25)
    s = summaries(mean, None)
    assert s["predicted_variance"] is None and s["trace"] is None
    np.testing.assert_allclose(s["entropy"], np.log(4))
    assert set(scores(s)) == {"confidence", "entropy"}
    assert entropy(np.array([0.5, 0.5, 0.0])) == pytest.approx(np.log(2))


def test_summary_table_groups_correct_and_wrong():
    mean = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    cov = np.stack([np.eye(2) * v for v in (0.01, 0.03, 0.05)])
    t = summary_table(mean, cov, np.array([0, 1, 1]))
    assert t["accuracy"] == pytest.approx(2 / 3) and (t["n_correct"], t["n_wrong"]) == (2, 1)
    assert t["confidence"] == pytest.approx({"all": 2.2 / 3, "correct": 0.8, "wrong": 0.6})
    assert t["trace"]["wrong"] == pytest.approx(0.06)
    t = summary_table(mean, None, np.array([0, 0, 1]))
    assert t["trace"] == {"all": None, "correct": None, "wrong": None}
    assert t["confidence"]["wrong"] is None  # no wrong predictions


def test_summaries_refuse_bad_shapes():
    with pytest.raises(ShapeError, match=r"covariance must have shape \(n, K, K\)"):
        summaries(np.ones((2, 3)) / 3, np.zeros((2, 3)))
    with pytest.raises(ShapeError, match="must be finite"):
        summaries(np.array([[np.nan, 1.0]]), None)


# ---------------------------------------------------------------------------------------------
# AUROC and ECE, hand-computed
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("neg, pos, expected", [
    ([1, 2, 3], [4, 5], 1.0),          # perfect separation
    ([4, 5], [1, 2, 3], 0.0),          # perfectly reversed
    ([1, 2], [2, 3], 0.875),           # (1 + 1/2 + 1 + 1) / 4: one tie counts 1/2
    ([0.1, 0.4], [0.35, 0.8], 0.75),   # the classic four-point example
    ([7, 7, 7], [7, 7], 0.5),          # all tied
])
def test_auroc_hand_computed(neg, pos, expected):
    assert auroc(neg, pos) == pytest.approx(expected, abs=1e-15)


def test_auroc_equals_the_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 6, size=40), rng.integers(2, 8, size=30)
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert auroc(neg, pos) == pytest.approx(pairs.mean(), abs=1e-14)
    np.testing.assert_allclose(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])


def test_auroc_refuses_empty_and_nan():
    with pytest.raises(ShapeError, match="at least one score of each kind"):
        auroc([], [1.0])
    with pytest.raises(ShapeError, match="must be finite"):
        auroc([np.nan], [1.0])


def test_ece_hand_computed():
    # confidences 0.92, 0.62, 0.78, 0.57 (predictions 0, 0, 1, 0); labels 0, 1, 1, 0
    mean = np.array([[0.92, 0.08], [0.62, 0.38], [0.22, 0.78], [0.57, 0.43]])
    y = np.array([0, 1, 1, 0])
    c = calibration(mean, y, n_bins=10)  # each image alone in its bin
    assert c["ece"] == pytest.approx((0.08 + 0.62 + 0.22 + 0.43) / 4)
    assert c["count"] == [0, 0, 0, 0, 0, 1, 1, 1, 0, 1]
    assert c["accuracy"][6] == 0.0 and c["confidence"][6] == pytest.approx(0.62)
    assert c["accuracy"][0] is None
    c2 = calibration(mean, y, n_bins=2)  # all four in (0.5, 1]: |3/4 - 2.89/4|
    assert c2["ece"] == pytest.approx(abs(0.75 - 2.89 / 4))
    assert len(c2["edges"]) == 3 and sum(c2["count"]) == 4


def test_ece_of_a_calibrated_and_an_overconfident_predictor():
    mean = np.array([[0.75, 0.25]] * 4)
    assert calibration(mean, np.array([0, 0, 0, 1]))["ece"] == pytest.approx(0.0)
    assert calibration(mean, np.array([1, 1, 0, 1]))["ece"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="n_bins"):
        calibration(mean, np.zeros(4, int), n_bins=0)


# ---------------------------------------------------------------------------------------------
# dl/dx by the layers' backward passes, against central differences (float64)
# ---------------------------------------------------------------------------------------------

GRAD_MODELS = {
    "bayesian-paper-cnn": lambda: paper_cnn(3, input_shape=(1, 9, 9), kernel_size=3,
                                            n_classes=4, seed=4, rho_range=(-2, -1)),
    "vanilla-paper-cnn": lambda: paper_cnn(3, bayesian=False, input_shape=(1, 9, 9),
                                           kernel_size=3, n_classes=4, seed=4),
    "bayesian-mlp": lambda: mlp((6, 5, 5, 4), seed=7, rho_range=(-3, -1)),
    "bayesian-mlp-exact-relu": lambda: mlp((6, 5, 5, 4), seed=7, rho_range=(-3, -1),
                                           relu="exact"),
}


@pytest.mark.parametrize("name", sorted(GRAD_MODELS))
def test_loss_input_gradient_by_central_differences(name):
    rng = np.random.default_rng(sorted(GRAD_MODELS).index(name))
    model = GRAD_MODELS[name]()
    x = rng.random((3,) + model.input_shape)
    y = rng.integers(0, 4, size=3)
    objective = Objective()
    per, g = loss_input_gradient(model, x, y, objective)
    assert per.shape == (3,) and g.shape == x.shape

    def total():  # the sum of the per-example losses: its gradient is dl_i/dx_i stacked
        return data_term(model, model.forward(x), y, objective.jitter)[2].sum()

    r = check_gradient(total, x, g, name=f"{name} dl/dx")
    assert r.passed and r.error <= 1e-6, str(r)


# ---------------------------------------------------------------------------------------------
# robustness, out-of-distribution and calibration on a tiny trained digits network
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_pair():
    """A Bayesian and a vanilla MLP 64-32-10 trained on the digits for 5 epochs (~1 s each)."""
    ds = data.load("digits", validation=0.0, seed=0)
    models = {}
    for bayesian in (True, False):
        m = mlp((64, 32, 10), bayesian=bayesian, input_shape=(1, 8, 8), seed=0)
        fit(m, ds.train, objective=Objective("elbo", n_train=len(ds.train.y)), epochs=5,
            batch_size=50, lr=1e-2, seed=0, progress=False)
        models["bayes" if bayesian else "vanilla"] = m
    return models, ds.test.x[:200], ds.test.y[:200]


def test_tiny_models_learned_something(digits_pair):
    models, x, y = digits_pair
    for m in models.values():
        assert (predict(m, x)[0].argmax(axis=1) == y).mean() > 0.8


def test_noise_robustness_shapes_and_sanity(digits_pair):
    models, x, y = digits_pair
    stds = (0.0, 0.3, 1.0)
    for kind, m in models.items():
        r = noise_robustness(m, x, y, stds, seed=0)
        clean = (predict(m, x)[0].argmax(axis=1) == y).mean()
        assert r["std"] == [0.0, 0.3, 1.0] and len(r["accuracy"]) == 3
        assert r["accuracy"][0] == pytest.approx(clean)
        assert r["accuracy"][2] < r["accuracy"][0]
        assert all(0 <= a <= 1 for a in r["accuracy"])
        if kind == "bayes":
            assert all(v > 0 for v in r["mean_predictive_variance"])
        else:
            assert r["mean_predictive_variance"] == [None] * 3
    # the same seed gives the same noise
    assert noise_robustness(models["bayes"], x, y, stds, seed=1) == \
        noise_robustness(models["bayes"], x, y, stds, seed=1)


def test_fgsm_untargeted_and_targeted(digits_pair):
    models, x, y = digits_pair
    eps = (0.0, 0.1, 0.5)
    for m in models.values():
        clean = (predict(m, x)[0].argmax(axis=1) == y).mean()
        u = fgsm(m, x, y, eps)
        assert u["accuracy"][0] == pytest.approx(clean)
        assert u["accuracy"][2] < u["accuracy"][0] and "success_rate" not in u
        t = fgsm(m, x, y, eps, targeted=True)
        assert t["accuracy"][0] == pytest.approx(clean) and t["target"] == "next"
        assert t["success_rate"][2] > t["success_rate"][0]
        ll = fgsm(m, x, y, eps, targeted=True, target="least_likely")
        assert len(ll["success_rate"]) == 3
    np.testing.assert_array_equal(attack_targets(None, x, np.array([0, 9]), "next", 10), [1, 0])


def test_ood_detection_and_calibration(digits_pair):
    models, x, y = digits_pair
    foreign = np.random.default_rng(0).random(x.shape)  # uniform noise images
    for kind, m in models.items():
        r = ood_detection(m, x, foreign)
        expected = {"confidence", "entropy"} | ({"predicted_variance", "trace"}
                                                if kind == "bayes" else set())
        assert set(r["auroc"]) == expected
        assert all(0 <= v <= 1 for v in r["auroc"].values())
        assert r["auroc"]["entropy"] > 0.5  # noise images look less certain than digits
        assert r["scores_in"]["entropy"].shape == (len(x),)
        c = calibration(predict(m, x)[0], y)
        assert 0 <= c["ece"] <= 1 and sum(c["count"]) == len(y) and c["n_bins"] == 15


def test_levels_are_checked():
    assert check_levels(["0", 0.5], "noise stds", 1.0) == [0.0, 0.5]
    for bad, match in (([], "at least one"), ([0.1, -0.2], "must lie in"),
                       ([0.0, 2.0], "must lie in"), ([0.2, 0.1], "increasing"),
                       ([float("nan")], "must lie in"), (["a"], "must be numbers")):
        with pytest.raises(ConfigError, match=match):
            check_levels(bad, "noise stds", 1.0)
