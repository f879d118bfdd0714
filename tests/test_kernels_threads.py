"""BLAS runs on one thread inside a CNN's passes (tinybnn.kernels.threads), and only there."""

import numpy as np
from threadpoolctl import threadpool_info

from tinybnn.architectures import mlp, paper_cnn
from tinybnn.kernels import threads


def blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_cnn_limits_blas_mlp_does_not():
    assert paper_cnn(2).blas_threads == 1
    assert mlp([16, 8, 3], input_shape=(16,)).blas_threads is None


def test_limit_holds_inside_and_is_restored_after():
    before = blas_threads()
    with threads.blas_limit(1):
        inside = blas_threads()
    assert all(n == 1 for n in inside)
    assert blas_threads() == before
    with threads.blas_limit(None):
        assert blas_threads() == before


def test_limit_changes_no_number():
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    net = paper_cnn(3, seed=1)
    limited = net.forward(x)
    net.blas_threads = None
    free = net.forward(x)
    np.testing.assert_allclose(limited.mean, free.mean, rtol=1e-12, atol=0)
    np.testing.assert_allclose(limited.cov, free.cov, rtol=1e-12, atol=1e-18)
