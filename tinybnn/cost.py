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
Conv2d            Diagonal,      2 P d N (mean) + 2 P d N (variance; a Factored input is read
                  Factored       through its diagonal)
Linear            Point          2 D K  (+ 2 D for ||x||^2 if Bayesian)
Linear            Diagonal       2 D K  (a Projected output: the covariance kept as factors)
                                 + 2 D K^2 if a later layer reads it dense (M^T diag(v) M)
Linear            Projected      2 D K + 2 D0 D K + 2 D0 D + 2 D0 K^2 + 2 D K^2  (A = U diag(a)
                                 M, tr S, A^T diag(v) A, M^T diag(e) M; D0 the rows of U)
Linear            Full           2 D K + 2 D^2 K + 2 D K^2    (M^T S M)
Linear            FlatFactored   2 D K + 2 N L d K + 2 N d K^2 (A_k = F_k^T M_k, sum s_k A_k^T A_k)
Softmax           Full/Diagonal  4 K^3                        (J S J)
================  =============  ============================================================

A Projected is read through its factors by a ReLU (its scale) and by the next Linear; any other
layer reads it dense, and the 2 D K^2 of forming it is charged to the Linear that made it.
"""

import numpy as np

from .gaussian import Diagonal, Factored, FlatFactored, Full, Point, Projected
from .layers import Conv2d, Linear, ReLU, Softmax


def _layer_flops(layer, x, y):
    if isinstance(layer, Conv2d):
        B, N, Ho, Wo = y.mean.shape
        P, d = Ho * Wo, layer.c_in * layer.r**2
        return 2 * P * d * N * (2 if isinstance(x, (Diagonal, Factored)) else 1)
    if isinstance(layer, Linear):
        D, K = layer.d_in, layer.d_out
        if isinstance(x, Point):
            return 2 * D * K + (2 * D if layer.bayesian else 0)
        if isinstance(x, Diagonal):
            return 2 * D * K
        if isinstance(x, Projected):
            D0 = x.U.shape[0]
            return 2 * D * K + 2 * D0 * D * K + 2 * D0 * D + 2 * D0 * K * K + 2 * D * K * K
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
    per_layer, made_by = {}, None  # the layer whose Projected output flows, if one does
    for name, layer in model.layers:
        if isinstance(x, Projected) and not isinstance(layer, (Linear, ReLU)):
            per_layer[made_by] += 2 * x.U.shape[0] * x.mean.shape[1] ** 2  # read dense
        tracking, layer.input_grad = layer.input_grad, False  # nothing kept for a backward
        y = layer.forward(x)
        layer.input_grad = tracking
        per_layer[name] = int(_layer_flops(layer, x, y))
        if isinstance(y, Projected) and not isinstance(x, Projected):
            made_by = name
        x = y
    per_layer["total"] = sum(per_layer.values())
    return per_layer
