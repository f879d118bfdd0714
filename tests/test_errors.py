"""Bad input to layers, networks and optimisers raises a clear error naming expected and found."""

import numpy as np
import pytest

from tinybnn.architectures import mlp, paper_cnn
from tinybnn.errors import ConfigError, ShapeError, StructureError
from tinybnn.gaussian import Diagonal, Full, Point
from tinybnn.layers import Conv2d, Flatten, Linear, MaxPool2d, Softmax
from tinybnn.model import loss_and_grads
from tinybnn.optim import SGD, Adam, ExponentialDecay

RNG = np.random.default_rng(0)


def test_wrong_shapes_name_expected_and_found():
    with pytest.raises(ShapeError, match=r"expected input mean of shape \(B, 5\), found \(2, 4\)"):
        Linear(5, 3, rng=RNG).forward(Point(np.zeros((2, 4))))
    with pytest.raises(ShapeError, match=r"\(B, 2, H, W\), found \(2, 3, 5, 5\)"):
        Conv2d(2, 3, 3, rng=RNG).forward(Point(np.zeros((2, 3, 5, 5))))
    with pytest.raises(ShapeError, match="smaller than the 3x3 kernel"):
        Conv2d(1, 3, 3, rng=RNG).forward(Point(np.zeros((2, 1, 2, 5))))
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        MaxPool2d().forward(Point(np.zeros((2, 5))))
    with pytest.raises(ShapeError, match=r"\(B, C, H, W\)"):
        Flatten().forward(Point(np.zeros((2, 5))))


def test_structures_a_layer_cannot_take():
    with pytest.raises(StructureError, match="MaxPool2d takes Point, Diagonal, Factored; found Full"):
        MaxPool2d().forward(Full(np.zeros((1, 4)), np.eye(4)[None]))
    with pytest.raises(StructureError, match="Linear takes Point; found Diagonal"):
        Linear(4, 2, rng=RNG, bayesian=False).forward(Diagonal(np.zeros((1, 4)), np.ones((1, 4))))
    with pytest.raises(StructureError, match="Softmax takes Point, Diagonal, Full; found Factored"):
        Softmax().forward(_factored())
    layer = Linear(4, 2, rng=RNG)
    layer.forward(Point(np.zeros((1, 4))))
    with pytest.raises(StructureError, match="expected a Diagonal"):
        layer.backward(Full(np.zeros((1, 2)), np.zeros((1, 2, 2))))


def _factored():
    conv = Conv2d(1, 2, 3, rng=RNG)
    return conv.forward(Point(np.zeros((1, 1, 4, 4))))


def test_network_input_validation():
    model = paper_cnn(2, input_shape=(1, 8, 8), n_classes=3)
    with pytest.raises(ShapeError, match=r"input must have shape \(B, 1, 8, 8\), found \(2, 8, 8\)"):
        model.forward(np.zeros((2, 8, 8)))
    with pytest.raises(ShapeError, match="must be float64 .* found uint8"):
        model.forward(np.zeros((2, 1, 8, 8), dtype=np.uint8))
    x = np.zeros((2, 1, 8, 8))
    x[1, 0, 3, 4] = np.nan
    with pytest.raises(ShapeError, match=r"input must be finite, found nan at index \(1, 0, 3, 4\)"):
        model.forward(x)
    with pytest.raises(ShapeError, match="labels must lie in"):
        loss_and_grads(model, np.zeros((2, 1, 8, 8)), np.array([0, 3]))
    with pytest.raises(ShapeError, match="same batch size"):
        loss_and_grads(model, np.zeros((2, 1, 8, 8)), np.array([0, 1, 2]))


@pytest.mark.parametrize("build", [
    lambda: paper_cnn(0), lambda: paper_cnn(3, kernel_size=30), lambda: mlp((5,)),
    lambda: mlp((5, 0, 2)), lambda: mlp((6, 2), input_shape=(1, 2, 2)),
    lambda: Adam(lr=-1e-3), lambda: Adam(lr=float("nan")), lambda: Adam(beta1=1.0),
    lambda: SGD(momentum=-0.1), lambda: ExponentialDecay(1e-3, 0, 10),
    lambda: paper_cnn(2).astype(np.int32),
])
def test_impossible_hyperparameters(build):
    with pytest.raises(ConfigError):
        build()


def test_float32_model_runs_and_rejects_float64_input():
    model = paper_cnn(2, input_shape=(1, 8, 8), n_classes=3).astype(np.float32)
    x = np.random.default_rng(1).random((2, 1, 8, 8)).astype(np.float32)
    parts, grads = loss_and_grads(model, x, np.array([0, 2]))
    assert np.isfinite(parts.total)
    assert all(g.dtype == np.float32 for g in grads.values())
    with pytest.raises(ShapeError, match="float32"):
        model.forward(x.astype(np.float64))
