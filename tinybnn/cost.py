"""Floating-point operations of one forward pass (inference), per example.

Counts the multiply-adds of the matrix products that dominate each layer, as 2 flops each
(element-wise maps, max-pool and reshapes are left out). The structure a layer receives decides
its cost; ``forward_flops`` runs one example through the network to see which structures flow.
Notation as in docs/NOTATION.md (P positions, d patch length, N kernels, L pooled positions per
kernel, D inputs, K units); docs/COST.md has the full cost model with memory and measurements.

================  =============  ============================================================
layer             input          flops per example
================  =============  ============================================================
Conv2d            Point          2 P d N                      (mean; the covariance stays factored)
Conv2d            Diagonal       2 P d N (mean) + 2 P d N (variance)
Linear            Point          2 D K  (+ 2 D for ||x||^2 if Bayesian)
Linear            Diagonal       2 D K + 2 D K^2              (M^T diag(v) M)
Linear            Full           2 D K + 2 D^2 K + 2 D K^2    (M^T S M)
Linear            FlatFactored   2 D K + 2 N L d K + 2 N d K^2 (A_k = F_k^T M_k, sum s_k A_k^T A_k)
Softmax           Full/Diagonal  4 K^3                        (J S J)
================  =============  ============================================================
"""

import numpy as np

from .gaussian import Diagonal, FlatFactored, Full, Point
from .layers import Conv2d, Linear, Softmax


def _layer_flops(layer, x, y):
    if isinstance(layer, Conv2d):
        B, N, Ho, Wo = y.mean.shape
        P, d = Ho * Wo, layer.c_in * layer.r**2
        return 2 * P * d * N * (2 if isinstance(x, Diagonal) else 1)
    if isinstance(layer, Linear):
        D, K = layer.d_in, layer.d_out
        if isinstance(x, Point):
            return 2 * D * K + (2 * D if layer.bayesian else 0)
        if isinstance(x, Diagonal):
            return 2 * D * K + 2 * D * K * K
        if isinstance(x, Full):
            return 2 * D * K + 2 * D * D * K + 2 * D * K * K
        if isinstance(x, FlatFactored):
            _, N, L = x.rows.shape
            d = x.patches.shape[2]
            return 2 * D * K + 2 * N * L * d * K + 2 * N * d * K * K
    if isinstance(layer, Softmax) and not isinstance(x, Point):
        return 4 * y.mean.shape[1] ** 3
    return 0


def forward_flops(model):
    """{layer name: flops per example} and the total, for one inference forward pass."""
    x = Point(np.zeros((1,) + model.input_shape, dtype=model.dtype) + 0.5)
    per_layer = {}
    for name, layer in model.layers:
        layer.input_grad = False
        y = layer.forward(x)
        per_layer[name] = int(_layer_flops(layer, x, y))
        x = y
    per_layer["total"] = sum(per_layer.values())
    return per_layer
