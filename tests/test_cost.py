"""Flops of one inference forward pass (tinybnn.cost): ``forward_flops`` of tiny networks, a
Bayesian and a vanilla paper CNN, an MLP and a two-conv CNN, against counts done by hand here
from the cost tables of tinybnn/cost.py and docs/COST.md (2 flops per multiply-add of the
matrix products; element-wise maps, pooling and reshapes count 0). Where the count differs
from the work the layers do, the count is wrong: three such tests found cost.py charging a
second conv as a first one and a Projected covariance as a dense one, since fixed."""

import numpy as np
import pytest

from tinybnn.architectures import mlp, paper_cnn, small_cnn
from tinybnn.cost import forward_flops

# paper_cnn(2) on 1 x 6 x 6 images, 3 x 3 kernels, 3 classes: P = 4 x 4 = 16 conv positions,
# d = 1 * 3 * 3 = 9, N = 2 kernels; the pool leaves L = 2 x 2 = 4 positions per kernel, so the
# linear layer has D = N L = 8 inputs and K = 3 units
P, d, N, L, D, K = 16, 9, 2, 4, 8, 3


def tiny_cnn(bayesian):
    return paper_cnn(N, bayesian=bayesian, input_shape=(1, 6, 6), kernel_size=3, n_classes=K,
                     seed=0)


def test_bayesian_paper_cnn_by_hand():
    conv = 2 * P * d * N  # Point input: the mean product only (576)
    fc = 2 * D * K + 2 * N * L * d * K + 2 * N * d * K**2  # FlatFactored input (48+432+324)
    softmax = 4 * K**3  # J S J (108)
    want = {"conv": conv, "pool": 0, "relu": 0, "flatten": 0, "fc": fc, "softmax": softmax,
            "total": conv + fc + softmax}
    assert want["total"] == 1488
    assert forward_flops(tiny_cnn(True)) == want


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vanilla_paper_cnn_by_hand(dtype):
    conv, fc = 2 * P * d * N, 2 * D * K  # means only; no ||x||^2 term, no softmax layer
    want = {"conv": conv, "pool": 0, "relu": 0, "flatten": 0, "fc": fc, "total": conv + fc}
    assert want["total"] == 624
    assert forward_flops(tiny_cnn(False).astype(dtype)) == want


def test_one_hidden_layer_mlp_by_hand():
    """4 -> 3 -> 2: fc1 takes a Point (2 D K + 2 D for ||x||^2), fc2 a Diagonal whose
    covariance the Softmax reads densely (2 D K + 2 D K^2), the Softmax 4 K^3."""
    fc1 = 2 * 4 * 3 + 2 * 4
    fc2 = 2 * 3 * 2 + 2 * 3 * 2**2
    softmax = 4 * 2**3
    assert (fc1, fc2, softmax) == (32, 36, 32)
    assert forward_flops(mlp((4, 3, 2))) == {"fc1": fc1, "relu1": 0, "fc2": fc2,
                                             "softmax": softmax, "total": 100}


def two_conv_cnn():
    """small_cnn((2, 3)) on 1 x 4 x 4 images ("same" padding, 3 x 3 kernels), 2 classes:
    conv1 P = 16, d = 9, N = 2; pool to 2 x 2; conv2 P = 4, d = 2 * 9 = 18, N = 3; pool to
    1 x 1; fc D = 3, K = 2."""
    return small_cnn((2, 3), input_shape=(1, 4, 4), kernel_size=3, n_classes=2, seed=0)


def test_two_conv_cnn_by_hand():
    flops = forward_flops(two_conv_cnn())
    assert flops["conv1"] == 2 * 16 * 9 * 2
    assert flops["fc"] == 2 * 3 * 2 + 2 * 3 * 2**2  # a Diagonal input (the conv path's)
    assert flops["softmax"] == 4 * 2**3
    assert all(flops[name] == 0 for name in ("relu1", "pool1", "relu2", "pool2", "flatten"))
    assert flops["total"] == sum(v for k, v in flops.items() if k != "total")


def test_a_conv_after_a_conv_counts_the_variance_product():
    assert forward_flops(two_conv_cnn())["conv2"] == 4 * 4 * 18 * 3


# 4 -> 3 -> 3 -> 2: fc2 takes a Diagonal and returns a Projected that fc3 reads by its factors
# (D0 = 3 inputs of fc2, D = 3, K = 2), so no K x K matrix of fc2 is ever formed

def test_a_projected_output_read_by_its_factors_costs_its_mean_only():
    assert forward_flops(mlp((4, 3, 3, 2)))["fc2"] == 2 * 3 * 3


def test_a_linear_on_a_projected_input_follows_the_cost_model():
    D0, D, K = 3, 3, 2
    want = 2 * D * K + 2 * D0 * D * K + 2 * D0 * D + 2 * D0 * K**2 + 2 * D * K**2
    assert want == 114
    assert forward_flops(mlp((4, 3, 3, 2)))["fc3"] == want
