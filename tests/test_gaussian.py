"""The covariance structures (tinybnn.gaussian): ``check_fields`` refuses a Diagonal or a Full
whose fields do not fit each other, naming what it expected and what it found; ``check_finite``
names the array, the first bad index and its value; a Factored's ``diagonal`` is the diagonal
of the explicit per-channel covariances of tests/vdp_helpers.py and ``diagonal_backward`` its
adjoint, written out with loops; a Projected's ``cov`` is its formula, formed anew from the
factors at every read, and ``row_outer_products`` turns U^T diag(v) U and diag(U G U^T) into
one matrix product for a batch; and the structures hold the numbers the module's memory table
says."""

import numpy as np
import pytest

from tinybnn.architectures import paper_cnn
from tinybnn.errors import DivergenceError, ShapeError
from tinybnn.gaussian import (GRAD_TYPE, STRUCTURES, Diagonal, Factored, FactoredGrad,
                              FlatFactored, Full, Point, Projected, ProjectedGrad, check_fields,
                              check_finite, describe, row_outer_products)
from tinybnn.layers import Linear

from vdp_helpers import (dense_blocks, factor_rows, random_factored, random_full,
                         random_projected)


@pytest.mark.parametrize("mean,var", [((2, 3), (2, 4)), ((2, 3), (3, 3)), ((2, 1, 4, 4),
                                                                          (2, 1, 4))])
def test_check_fields_refuses_a_diagonal_whose_var_does_not_fit_its_mean(mean, var):
    with pytest.raises(ShapeError) as err:
        check_fields(Diagonal(np.zeros(mean), np.ones(var)))
    assert str(err.value) == (f"a Diagonal needs var of its mean's shape {mean}, found var of "
                              f"shape {var}")


@pytest.mark.parametrize("mean,cov", [((2, 3), (2, 3, 4)), ((2, 3), (2, 4, 4)),
                                      ((2, 3), (3, 3, 3)), ((2, 3), (2, 3)), ((3,), (3, 3)),
                                      ((2, 1, 3), (2, 3, 3))])
def test_check_fields_refuses_a_full_whose_cov_does_not_fit_its_mean(mean, cov):
    with pytest.raises(ShapeError) as err:
        check_fields(Full(np.zeros(mean), np.zeros(cov)))
    assert str(err.value) == (f"a Full needs mean (B, K) and cov (B, K, K), found mean {mean} "
                              f"and cov {cov}")


def test_check_fields_takes_structures_whose_fields_fit():
    rng = np.random.default_rng(0)
    for x in (Point(np.zeros((2, 5))), Diagonal(np.zeros((2, 1, 4, 4)), np.ones((2, 1, 4, 4))),
              random_full(rng, 2, 3), random_projected(rng), random_factored(rng)):
        assert check_fields(x) is None


def test_check_finite_names_the_array_and_the_first_bad_entry():
    a = np.zeros((2, 3, 2))
    a[1, 2, 0], a[1, 0, 1] = np.inf, np.nan  # the first in row-major order is the nan
    with pytest.raises(ShapeError, match=r"^the weights must be finite, found nan at index "
                                         r"\(1, 0, 1\)$"):
        check_finite("the weights", a)
    a[1, 0, 1] = 0.0
    with pytest.raises(DivergenceError, match=r"found inf at index \(1, 2, 0\)"):
        check_finite("x", a, DivergenceError)
    a[1, 2, 0] = -1e308
    assert check_finite("x", a) is None


def test_describe_and_batch_size():
    rng = np.random.default_rng(1)
    cases = [(Point(np.zeros((4, 1, 5, 5))), "Point with mean of shape (4, 1, 5, 5)"),
             (Diagonal(np.zeros((3, 7)), np.ones((3, 7))), "Diagonal with mean of shape (3, 7)"),
             (random_full(rng, 5, 2), "Full with mean of shape (5, 2)"),
             (random_projected(rng, B=3, D0=6, K=4), "Projected with mean of shape (3, 4)"),
             (random_factored(rng, B=2), "Factored with mean of shape (2, 3, 3, 3)"),
             (random_factored(rng, B=2, flat=True), "FlatFactored with mean of shape (2, 27)")]
    for x, text in cases:
        assert describe(x) == text
        assert x.batch_size == x.mean.shape[0]


def test_every_structure_has_its_gradient_classes():
    assert set(GRAD_TYPE) == set(STRUCTURES)
    assert GRAD_TYPE[Projected] == (ProjectedGrad, Full)
    assert GRAD_TYPE[Factored] == GRAD_TYPE[FlatFactored] == (FactoredGrad,)
    assert all(GRAD_TYPE[t] == (t,) for t in (Point, Diagonal, Full))


@pytest.mark.parametrize("binary_scale", [False, True])
def test_factored_diagonal_is_the_diagonal_of_the_explicit_covariance(binary_scale):
    x = random_factored(np.random.default_rng(2), binary_scale=binary_scale)
    B, N, H, W = x.mean.shape
    blocks = dense_blocks(x)  # s_k F_k F_k^T (B, N, L, L), by explicit loops
    d = x.diagonal()
    assert type(d) is Diagonal and d.mean is x.mean
    np.testing.assert_allclose(d.var.reshape(B, N, H * W),
                               np.diagonal(blocks, axis1=2, axis2=3), rtol=1e-13, atol=0)
    np.testing.assert_allclose(x.row_norms2(), (factor_rows(x) ** 2).sum(axis=3)
                               .reshape(B, N, H, W), rtol=1e-13, atol=0)


def test_factored_diagonal_backward_is_the_adjoint_of_diagonal():
    """For l = sum dvar * var(x): ds_bk = sum_p dvar_bkp ||F_bkp||^2 and dpatches[b, r] = sum
    over the positions p reading row r of 2 s_k scale_bkp^2 dvar_bkp X_br (loops)."""
    rng = np.random.default_rng(3)
    x = random_factored(rng, B=2, N=3, H=2, W=3, P=7, d=4)
    grad = Diagonal(rng.normal(size=x.mean.shape), rng.normal(size=x.mean.shape))
    g = x.diagonal_backward(grad)
    assert type(g) is FactoredGrad and g.mean is grad.mean
    B, N, H, W = x.mean.shape
    ds, dpatches = np.zeros((B, N)), np.zeros_like(x.patches)
    for b in range(B):
        for k in range(N):
            for i in range(H):
                for j in range(W):
                    r, a, dv = x.rows[b, k, i, j], x.scale[b, k, i, j], grad.var[b, k, i, j]
                    ds[b, k] += dv * a**2 * (x.patches[b, r] ** 2).sum()
                    dpatches[b, r] += 2 * x.s[k] * a**2 * dv * x.patches[b, r]
    np.testing.assert_allclose(g.s, ds, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.patches, dpatches, rtol=1e-12, atol=1e-14)
    x.track_patches = False
    assert x.diagonal_backward(grad).patches is None


def test_projected_cov_is_its_formula_and_follows_the_factors():
    rng = np.random.default_rng(4)
    x = random_projected(rng, B=3, D0=5, K=4)
    for _ in range(2):  # the second time after a change of the factors: cov is not cached
        want = np.stack([np.diag(x.scale[b]) @ (x.U.T @ np.diag(x.var[b]) @ x.U
                                                + np.diag(x.extra[b])) @ np.diag(x.scale[b])
                         for b in range(3)])
        np.testing.assert_allclose(x.cov, want, rtol=1e-12, atol=1e-15)
        x.scale[1, 2] = 0.0
        x.var[0] *= 2.0
    assert isinstance(x, Full) and x.batch_size == 3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_outer_products_give_the_batch_of_projections_and_their_adjoint(dtype):
    rng = np.random.default_rng(7)
    U, v = rng.standard_normal((6, 3)).astype(dtype), rng.random((4, 6)).astype(dtype)
    G = rng.standard_normal((4, 3, 3)).astype(dtype)  # not symmetric: the adjoint needs no symmetry
    W = row_outer_products(U)
    assert W.shape == (6, 9) and W.dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose((v @ W).reshape(4, 3, 3),
                               [U.T @ np.diag(v[b]) @ U for b in range(4)], **tol)
    np.testing.assert_allclose(G.reshape(4, 9) @ W.T,
                               [np.diag(U @ G[b] @ U.T) for b in range(4)], **tol)


def test_the_structures_hold_the_numbers_of_the_memory_table():
    """The paper's CNN on one MNIST-sized image: right after the conv a Factored holds its mean
    (B N H W) and patches (B P d), rows and scale being broadcast views; after pool, ReLU and
    Flatten a FlatFactored holds 3 x 4608 + 576 x 25 numbers (a Full would hold 4608^2).
    A Projected (Linear D -> K on a Diagonal) holds 3 B K + B D + D K."""
    model = paper_cnn(32, input_shape=(1, 28, 28), kernel_size=5)
    x = model["conv"].forward(Point(np.random.default_rng(5).random((1, 1, 28, 28))))
    assert type(x) is Factored
    assert x.mean.size == 32 * 24 * 24 and x.patches.shape == (1, 576, 25)
    assert x.scale.strides == (0, 0, 0, 0) and x.rows.strides[:2] == (0, 0)
    for name in ("pool", "relu", "flatten"):
        x = model[name].forward(x)
    assert type(x) is FlatFactored
    assert (x.mean.size, x.rows.size, x.scale.size, x.patches.size) == (4608, 4608, 4608,
                                                                        576 * 25)
    B, D, K = 2, 5, 3
    rng = np.random.default_rng(6)
    y = Linear(D, K, rng=rng).forward(Diagonal(rng.normal(size=(B, D)), np.ones((B, D))))
    assert type(y) is Projected
    assert sum(a.size for a in (y.mean, y.U, y.var, y.extra, y.scale)) == 3 * B * K + B * D + D * K
