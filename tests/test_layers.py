"""Every layer, every structure it accepts: parameter and input gradients by central differences.

Each case builds a layer and a random input structure, probes the output with a random linear
functional (tests/vdp_helpers.py), and checks the backward pass against central differences in
float64 for every parameter and every input moment (mean, var, cov in symmetric pairs, and the
factors' patches and s; a Projected input's var, extra and U). A Projected output is probed
through its factors, and (cases ending in "-dense") through its dense covariance."""

import numpy as np
import pytest

from tinybnn.gradcheck import check_gradient
from tinybnn.gaussian import Full
from tinybnn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Softmax
from vdp_helpers import (input_arrays, input_grad, probe, random_diagonal, random_factored,
                         random_full, random_point, random_projected)

CASES = {
    # name: (layer factory, input factory)
    "linear/point": (lambda r: Linear(5, 4, rng=r), lambda r: random_point(r, (3, 5))),
    "linear/diagonal": (lambda r: Linear(5, 4, rng=r), lambda r: random_diagonal(r, (3, 5))),
    "linear/diagonal-dense": (lambda r: Linear(5, 4, rng=r),
                              lambda r: random_diagonal(r, (3, 5))),
    "linear/projected": (lambda r: Linear(4, 3, rng=r), lambda r: random_projected(r, K=4)),
    "linear/full": (lambda r: Linear(5, 4, rng=r), lambda r: random_full(r, 3, 5)),
    "linear/flatfactored": (lambda r: Linear(27, 4, rng=r),
                            lambda r: random_factored(r, B=2, N=3, H=3, W=3, flat=True)),
    "linear/nobias": (lambda r: Linear(5, 4, rng=r, bias=False), lambda r: random_full(r, 3, 5)),
    "linear-vanilla/point": (lambda r: Linear(5, 4, rng=r, bayesian=False),
                             lambda r: random_point(r, (3, 5))),
    "conv/point-valid": (lambda r: Conv2d(2, 3, 3, rng=r), lambda r: random_point(r, (2, 2, 6, 5))),
    "conv/point-same": (lambda r: Conv2d(2, 3, 3, padding="same", rng=r),
                        lambda r: random_point(r, (2, 2, 5, 5))),
    "conv/diagonal": (lambda r: Conv2d(2, 3, 3, rng=r), lambda r: random_diagonal(r, (2, 2, 5, 6))),
    "conv/diagonal-same": (lambda r: Conv2d(2, 3, 3, padding="same", rng=r),
                           lambda r: random_diagonal(r, (2, 2, 4, 4))),
    "conv/factored": (lambda r: Conv2d(3, 2, 2, rng=r),
                      lambda r: random_factored(r, B=2, N=3, H=4, W=4)),
    "conv-vanilla/point": (lambda r: Conv2d(2, 3, 3, rng=r, bayesian=False),
                           lambda r: random_point(r, (2, 2, 6, 5))),
    "relu/point": (lambda r: ReLU(), lambda r: random_point(r, (3, 6))),
    "relu/diagonal": (lambda r: ReLU(), lambda r: random_diagonal(r, (3, 6))),
    "relu/full": (lambda r: ReLU(), lambda r: random_full(r, 3, 6)),
    "relu/projected": (lambda r: ReLU(), lambda r: random_projected(r)),
    "relu/projected-dense": (lambda r: ReLU(), lambda r: random_projected(r)),
    "relu/factored": (lambda r: ReLU(), lambda r: random_factored(r)),
    "relu/flatfactored": (lambda r: ReLU(), lambda r: random_factored(r, flat=True)),
    "maxpool/point": (lambda r: MaxPool2d(), lambda r: random_point(r, (2, 2, 4, 6))),
    "maxpool/point-odd": (lambda r: MaxPool2d(), lambda r: random_point(r, (2, 2, 5, 3))),
    "maxpool/diagonal": (lambda r: MaxPool2d(), lambda r: random_diagonal(r, (2, 2, 5, 4))),
    "maxpool/factored": (lambda r: MaxPool2d(), lambda r: random_factored(r, H=4, W=5)),
    "flatten/point": (lambda r: Flatten(), lambda r: random_point(r, (2, 3, 2, 2))),
    "flatten/diagonal": (lambda r: Flatten(), lambda r: random_diagonal(r, (2, 3, 2, 2))),
    "flatten/factored": (lambda r: Flatten(), lambda r: random_factored(r)),
    "softmax/point": (lambda r: Softmax(), lambda r: random_point(r, (3, 4))),
    "softmax/diagonal": (lambda r: Softmax(), lambda r: random_diagonal(r, (3, 4))),
    "softmax/full": (lambda r: Softmax(), lambda r: random_full(r, 3, 4)),
    "softmax/projected": (lambda r: Softmax(), lambda r: random_projected(r, K=4)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_gradients(case):
    rng = np.random.default_rng(sorted(CASES).index(case))
    make_layer, make_input = CASES[case]
    layer, x = make_layer(rng), make_input(rng)
    y = layer.forward(x)
    f, dy = probe(y, rng, dense=case.endswith("-dense"))
    dx = layer.backward(dy)
    analytic = {k: g.copy() for k, g in layer.grads.items()}

    def loss():
        return f(layer.forward(x))

    results = [check_gradient(loss, p, analytic[k], name=f"{case} d{k}")
               for k, p in layer.params.items()]
    results += [check_gradient(loss, a, input_grad(dx, field, x), name=f"{case} d{field}",
                               symmetric=sym) for field, a, sym in input_arrays(x)]
    report = "\n".join(str(r) for r in results)
    assert all(r.passed for r in results), report
    assert len(results) >= 1


@pytest.mark.parametrize("case", ["linear/point", "conv/point-valid", "linear-vanilla/point"])
def test_first_layer_skips_input_gradient(case):
    rng = np.random.default_rng(1)
    make_layer, make_input = CASES[case]
    layer, x = make_layer(rng), make_input(rng)
    layer.input_grad = False
    y = layer.forward(x)
    _, dy = probe(y, rng)
    assert layer.backward(dy) is None
    assert all(np.all(np.isfinite(g)) for g in layer.grads.values())


def test_projected_path_equals_dense_full():
    """Linear -> ReLU -> Linear on a Diagonal input: the Projected path (factors, never K x K)
    gives the same moments and the same gradients as feeding each layer the dense Full."""
    rng = np.random.default_rng(11)
    fc1, relu, fc2 = Linear(6, 5, rng=rng), ReLU(), Linear(5, 3, rng=rng)
    x = random_diagonal(rng, (4, 6))
    h = fc1.forward(x)
    assert type(h).__name__ == "Projected"
    a = relu.forward(h)
    y = fc2.forward(a)
    R = rng.normal(size=(4, 3, 3))
    dy = Full(rng.normal(size=(4, 3)), R + R.transpose(0, 2, 1))
    dx = fc1.backward(relu.backward(fc2.backward(dy)))
    grads = [{k: g.copy() for k, g in layer.grads.items()} for layer in (fc1, fc2)]

    h_dense = Full(h.mean, h.cov)  # the same moments, as a dense structure
    a_dense = relu.forward(h_dense)
    y_dense = fc2.forward(a_dense)
    np.testing.assert_allclose(a.cov, a_dense.cov, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y.mean, y_dense.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y.cov, y_dense.cov, rtol=1e-12, atol=1e-14)
    dh = relu.backward(fc2.backward(dy))  # Full: the dense path's gradient
    fc1.forward(x)
    dx_dense = fc1.backward(dh)
    for got, want in zip(grads, [fc1.grads, fc2.grads]):
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(dx.mean, dx_dense.mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx.var, dx_dense.var, rtol=1e-10, atol=1e-12)
