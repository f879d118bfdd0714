"""The builders: the paper's CNN pools before its ReLU and computes what the paper's order
computes; every builder names its layers and parameters as tinybnn.model's table says, draws
from its seed, refuses impossible sizes, and starts the last layer's variances where asked."""

import numpy as np
import pytest

from tinybnn.architectures import mlp, paper_cnn, small_cnn, start_last_layer_at
from tinybnn.errors import ConfigError
from tinybnn.functions import softplus
from tinybnn.gaussian import Point
from tinybnn.losses import Objective
from tinybnn.model import Sequential, loss_and_grads


def tiny_batch(rng, B, shape, K=4):
    return rng.random((B,) + shape), rng.integers(0, K, size=B)


@pytest.mark.parametrize("bayesian", [True, False])
def test_pooling_first_equals_relu_first(bayesian):
    """paper_cnn pools before the ReLU; the paper's order (ReLU first) gives the same loss,
    parameter gradients and input gradient, exactly, windows that are wholly <= 0 included."""
    rng = np.random.default_rng(8)
    x, y = tiny_batch(rng, 4, (1, 12, 12))
    x -= 0.6  # many negative conv outputs, so some 2 x 2 windows are all <= 0
    model = paper_cnn(4, bayesian=bayesian, input_shape=(1, 12, 12), kernel_size=3, n_classes=4,
                      seed=3, rho_range=(-3, -1))
    names = [n for n, _ in model.layers]
    assert names[:3] == ["conv", "pool", "relu"]
    layers = dict(model.layers)
    paper = Sequential([(n, layers[n]) for n in ["conv", "relu", "pool"] + names[3:]],
                       input_shape=(1, 12, 12))
    maps = layers["conv"].forward(Point(x)).mean  # (B, N, 10, 10)
    window_max = maps.reshape(4, 4, 5, 2, 5, 2).max(axis=(3, 5))
    assert (window_max <= 0).any() and (window_max > 0).any()
    results = []
    for net in (model, paper):
        parts, grads = loss_and_grads(net, x, y, Objective("authors2019"))
        grads = {k: g.copy() for k, g in grads.items()}
        out = net.forward(x, input_grad=True)
        dout = type(out)(*(np.ones_like(v) for v in vars(out).values()))
        results.append((parts.total, grads, net.backward(dout).mean))
    (l1, g1, dx1), (l2, g2, dx2) = results
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    np.testing.assert_array_equal(dx1, dx2)


def test_paper_cnn_names_and_shapes():
    model = paper_cnn(6, input_shape=(1, 12, 12), kernel_size=5, n_classes=3)
    assert [n for n, _ in model.layers] == ["conv", "pool", "relu", "flatten", "fc", "softmax"]
    shapes = {k: p.shape for k, p in model.params.items()}
    assert shapes == {"conv.M": (6, 1, 5, 5), "conv.rho": (6,), "fc.M": (6 * 16, 3),
                      "fc.rho": (3,), "fc.b": (3,)}  # 8 x 8 conv maps, pooled to 4 x 4
    vanilla = paper_cnn(6, bayesian=False, input_shape=(1, 12, 12), n_classes=3)
    assert set(vanilla.params) == {"conv.M", "fc.M", "fc.b"} and vanilla.layers[-1][0] == "fc"


@pytest.mark.parametrize("build", [lambda s: paper_cnn(3, input_shape=(1, 9, 9), seed=s),
                                   lambda s: mlp((5, 4, 3), seed=s),
                                   lambda s: small_cnn((2,), input_shape=(1, 6, 6), seed=s)])
def test_the_seed_decides_every_parameter(build):
    a, b, c = build(4), build(4), build(5)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    drawn = [k for k in a.params if a.params[k].std() > 0]  # not the zero biases
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in drawn)


def test_mlp_flattens_images_and_ends_by_task():
    assert [n for n, _ in mlp((12, 5, 2), input_shape=(1, 3, 4)).layers] == \
        ["flatten", "fc1", "relu1", "fc2", "softmax"]
    assert [n for n, _ in mlp((3, 2), task="regression").layers] == ["fc1"]
    assert [n for n, _ in mlp((3, 2), bayesian=False).layers] == ["fc1"]


def test_small_cnn_halves_the_map_per_block():
    model = small_cnn((2, 3), input_shape=(1, 7, 7))
    assert model.params["conv2.M"].shape == (3, 2, 3, 3)
    assert model.params["fc.M"].shape == (3 * 2 * 2, 10)  # 7 -> 4 -> 2 in ceil mode


@pytest.mark.parametrize("build,message", [
    (lambda: paper_cnn(0), "n_kernels must be >= 1, found 0"),
    (lambda: paper_cnn(2, input_shape=(1, 4, 4)), "a 5x5 kernel does not fit a 4x4 input"),
    (lambda: mlp((4,)), r"sizes must be at least \(inputs, outputs\), all >= 1; found \[4\]"),
    (lambda: mlp((6, 2), input_shape=(1, 2, 2)),
     r"input_shape \(1, 2, 2\) does not have 6 features"),
    (lambda: mlp((2, 2), last_variance=-1.0),
     "last_variance must be a positive variance, found -1.0"),
])
def test_impossible_builds_are_refused(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_start_last_layer_at_sets_only_the_last_weight_layer():
    model = paper_cnn(3, input_shape=(1, 9, 9), seed=1)
    conv_rho = model.params["conv.rho"].copy()
    assert start_last_layer_at(model, 0.5) is model
    np.testing.assert_allclose(softplus(model.params["fc.rho"]), 0.5, rtol=1e-12)
    np.testing.assert_array_equal(model.params["conv.rho"], conv_rho)
    before = model.params["fc.rho"].copy()
    start_last_layer_at(model, None)  # None: unchanged
    np.testing.assert_array_equal(model.params["fc.rho"], before)
    vanilla = paper_cnn(3, bayesian=False, input_shape=(1, 9, 9))
    assert start_last_layer_at(vanilla, 0.5) is vanilla  # no variances: nothing to set
