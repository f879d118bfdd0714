"""Whole networks: end-to-end gradient checks for every preset, the zero-variance limit, the
factored path against an explicit P x P implementation, batch against per-example loops, and
``from_arrays`` (a network from your own arrays, checked)."""

import numpy as np
import pytest

from tinybnn.architectures import mlp, paper_cnn, small_cnn
from tinybnn.errors import ConfigError, ShapeError
from tinybnn.gaussian import Full
from tinybnn.gradcheck import check_gradient
from tinybnn.layers import Softmax
from tinybnn.losses import Objective, gaussian_nll, one_hot
from tinybnn.model import from_arrays, loss_and_grads
from vdp_helpers import assert_same_model

PRESETS = [Objective("elbo", n_train=50), Objective("authors2019"), Objective("authors_later")]


def tiny_batch(rng, B=3, shape=(1, 10, 10), K=4):
    return rng.random((B,) + shape), rng.integers(0, K, size=B)


def check_model(model, x, y, objective, n_entries=25):
    """Check every parameter's gradient (a sample of entries for big arrays).

    Biases are set to random values first: with zero biases a unit whose inputs are all ReLU
    zeros sits exactly on the ReLU kink, where central differences see the mean of two slopes.
    """
    brng = np.random.default_rng(99)
    for k, p in model.params.items():
        if k.endswith(".b"):
            p[...] = brng.normal(0, 0.5, size=p.shape)
    _, grads = loss_and_grads(model, x, y, objective)
    grads = {k: g.copy() for k, g in grads.items()}
    loss = lambda: loss_and_grads(model, x, y, objective)[0].total  # noqa: E731
    rng = np.random.default_rng(0)
    results = [check_gradient(loss, p, grads[k], name=k, rng=rng,
                              n_entries=None if p.size <= n_entries else n_entries)
               for k, p in model.params.items()]
    assert all(r.passed for r in results), "\n".join(map(str, results))
    return results


@pytest.mark.parametrize("objective", PRESETS, ids=lambda o: o.regulariser)
def test_paper_cnn_gradients(objective):
    rng = np.random.default_rng(1)
    model = paper_cnn(3, input_shape=(1, 10, 10), kernel_size=3, n_classes=4, seed=2,
                      rho_range=(-3, -1))
    x, y = tiny_batch(rng)
    check_model(model, x, y, objective)


def test_paper_cnn_input_gradient():
    """dl/dx through the mean and the factored covariance (used by FGSM)."""
    rng = np.random.default_rng(3)
    model = paper_cnn(3, input_shape=(1, 9, 9), kernel_size=3, n_classes=4, seed=4,
                      rho_range=(-2, -1))
    x, y = tiny_batch(rng, shape=(1, 9, 9))
    target = one_hot(y, 4, np.float64)

    def loss():
        return gaussian_nll(model.forward(x), target)[0]

    _, dout, _ = gaussian_nll(model.forward(x, input_grad=True), target)
    dx = model.backward(dout)
    r = check_gradient(loss, x, dx.mean, name="dx")
    assert r.passed, str(r)


def test_vanilla_cnn_gradients():
    rng = np.random.default_rng(5)
    model = paper_cnn(3, bayesian=False, input_shape=(1, 10, 10), kernel_size=3, n_classes=4)
    x, y = tiny_batch(rng)
    check_model(model, x, y, Objective())


@pytest.mark.parametrize("objective", PRESETS, ids=lambda o: o.regulariser)
def test_two_hidden_layer_mlp_gradients(objective):
    rng = np.random.default_rng(6)
    model = mlp((6, 5, 5, 3), seed=7, rho_range=(-3, -1))
    x, y = rng.normal(size=(4, 6)), rng.integers(0, 3, size=4)
    check_model(model, x, y, objective)


def test_a_flatten_first_mlp_skips_the_input_gradient_and_keeps_its_gradients():
    """Behind a Flatten (no parameters) the first Linear computes no input gradient unless
    forward is asked for one; the parameter gradients are the same either way (and checked by
    central differences), and forward(input_grad=True) still gives dl/dx."""
    rng = np.random.default_rng(10)
    model = mlp((16, 5, 3), input_shape=(1, 4, 4), seed=11, rho_range=(-3, -1))
    x, y = rng.random((4, 1, 4, 4)), rng.integers(0, 3, size=4)
    target = one_hot(y, 3, np.float64)
    model.forward(x)
    assert [layer.input_grad for _, layer in model.layers] == [False, False, True, True, True]
    _, dout, _ = gaussian_nll(model.forward(x), target)
    assert model.backward(dout) is None
    quiet = {k: g.copy() for k, g in model.grads.items()}
    _, dout, _ = gaussian_nll(model.forward(x, input_grad=True), target)
    dx = model.backward(dout)
    for k, g in model.grads.items():
        np.testing.assert_array_equal(g, quiet[k])
    r = check_gradient(lambda: gaussian_nll(model.forward(x), target)[0], x, dx.mean, name="dx")
    assert r.passed, str(r)
    check_model(model, x, y, Objective("authors2019"))


def test_regression_mlp_gradients():
    rng = np.random.default_rng(8)
    model = mlp((1, 6, 1), task="regression", seed=9, rho_range=(-3, -1))
    x, y = rng.normal(size=(5, 1)), rng.normal(size=(5, 1))
    check_model(model, x, y, Objective(jitter=0.05))


def test_two_conv_cnn_gradients():
    rng = np.random.default_rng(10)
    model = small_cnn((2, 3), input_shape=(1, 8, 8), n_classes=3, seed=11)
    x, y = tiny_batch(rng, shape=(1, 8, 8), K=3)
    check_model(model, x, y, Objective("elbo", n_train=10))


def test_zero_variance_limit_equals_vanilla():
    """With s -> 0 the Bayesian CNN's mean path is the vanilla CNN's, forward and backward."""
    rng = np.random.default_rng(12)
    bayes = paper_cnn(4, input_shape=(1, 12, 12), n_classes=5, seed=13)
    plain = paper_cnn(4, bayesian=False, input_shape=(1, 12, 12), n_classes=5, seed=13)
    for k, p in plain.params.items():
        bayes.params[k][...] = p
    bayes.params["conv.rho"][...] = -80.0  # s = 1.8e-35
    bayes.params["fc.rho"][...] = -80.0
    x = rng.random((3, 1, 12, 12))
    out = bayes.forward(x)
    softmax = Softmax()
    p = softmax.forward(plain.forward(x))
    np.testing.assert_allclose(out.mean, p.mean, rtol=0, atol=1e-14)
    assert np.abs(out.cov).max() < 1e-30
    R = rng.normal(size=p.mean.shape)
    bayes.backward(Full(R, np.zeros_like(out.cov)))
    plain.backward(softmax.backward(type(p)(R)))
    for k, g in plain.grads.items():
        np.testing.assert_allclose(bayes.grads[k], g, rtol=1e-12, atol=1e-14, err_msg=k)


def explicit_cnn_output(model, x):
    """The paper CNN's output moments with every P x P covariance formed (loops, no factors)."""
    M, s = model.params["conv.M"], model["conv"].s
    W, s_fc, b = model.params["fc.M"], model["fc"].s, model.params["fc.b"]
    N, C, r, _ = M.shape
    B, _, H, Wd = x.shape
    Ho, Wo = H - r + 1, Wd - r + 1
    means, covs = [], []
    for e in range(B):
        X = np.array([x[e, :, i:i + r, j:j + r].ravel() for i in range(Ho) for j in range(Wo)])
        mu_parts, blocks = [], []
        for k in range(N):
            m = X @ M[k].ravel()  # (P,)
            S = s[k] * X @ X.T  # (P, P)
            d = (m > 0).astype(float)
            m, S = m * d, S * np.outer(d, d)
            grid = m.reshape(Ho, Wo)
            idx = []
            for i in range(0, Ho, 2):
                for j in range(0, Wo, 2):
                    win = [(i + a) * Wo + (j + c) for a in range(2) for c in range(2)
                           if i + a < Ho and j + c < Wo]
                    idx.append(win[int(np.argmax(grid.ravel()[win]))])
            mu_parts.append(m[idx])
            blocks.append(S[np.ix_(idx, idx)])
        mu = np.concatenate(mu_parts)
        D = mu.size
        S = np.zeros((D, D))
        L = D // N
        for k in range(N):
            S[k * L:(k + 1) * L, k * L:(k + 1) * L] = blocks[k]
        mean = mu @ W + b
        cov = W.T @ S @ W + np.diag(s_fc * (np.trace(S) + mu @ mu))
        p = np.exp(mean - mean.max())
        p /= p.sum()
        J = np.diag(p) - np.outer(p, p)
        means.append(p)
        covs.append(J @ cov @ J)
    return np.array(means), np.array(covs)


@pytest.mark.parametrize("shape", [(1, 10, 10), (2, 9, 11)])
def test_factored_path_equals_explicit(shape):
    rng = np.random.default_rng(14)
    model = paper_cnn(3, input_shape=shape, kernel_size=3, n_classes=4, seed=15, rho_range=(-3, -1))
    x = rng.random((2,) + shape)
    out = model.forward(x)
    mean, cov = explicit_cnn_output(model, x)
    np.testing.assert_allclose(out.mean, mean, rtol=1e-12, atol=1e-15)
    scale = np.abs(cov).max()
    np.testing.assert_allclose(out.cov, cov, rtol=1e-10, atol=1e-12 * scale)


@pytest.mark.parametrize("build", [
    lambda: paper_cnn(3, input_shape=(1, 10, 10), kernel_size=3, n_classes=4, seed=16),
    lambda: mlp((100, 8, 8, 4), input_shape=(1, 10, 10), seed=17),
    lambda: small_cnn((2, 3), input_shape=(1, 10, 10), n_classes=4, seed=18),
], ids=["paper_cnn", "mlp", "small_cnn"])
def test_batch_equals_per_example_loop(build):
    rng = np.random.default_rng(19)
    model = build()
    x, y = rng.random((4, 1, 10, 10)), rng.integers(0, 4, size=4)
    target = one_hot(y, 4, np.float64)
    out = model.forward(x)
    loss, dout, per = gaussian_nll(out, target)
    model.backward(dout)
    batch = {k: g.copy() for k, g in model.grads.items()}
    summed = {k: np.zeros_like(g) for k, g in batch.items()}
    for e in range(4):
        o = model.forward(x[e:e + 1])
        np.testing.assert_allclose(o.mean[0], out.mean[e], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(o.cov[0], out.cov[e], rtol=1e-11, atol=1e-14)
        l_e, d_e, _ = gaussian_nll(o, target[e:e + 1])
        assert l_e == pytest.approx(per[e], rel=1e-12)
        model.backward(d_e)
        for k, g in model.grads.items():
            summed[k] += g / 4
    for k in batch:
        np.testing.assert_allclose(batch[k], summed[k], rtol=1e-10, atol=1e-13, err_msg=k)


# --- from_arrays: a network from your own arrays, checked -----------------------------------------

N = 3  # kernels of the network the from_arrays tests start from


@pytest.fixture
def original():
    model = paper_cnn(N, seed=1)
    model.params["fc.b"][...] = np.linspace(-0.5, 0.5, 10)      # a bias that is not zero
    return model


def params_of(model):
    return {k: v.copy() for k, v in model.params.items()}


def test_from_arrays_builds_a_copy_and_changes_nothing(original):
    arrays = params_of(original)
    before = params_of(original)
    model = from_arrays(original, arrays)
    assert_same_model(model, original)
    model.params["conv.M"][...] = 0                        # the model owns its arrays
    for k in before:
        np.testing.assert_array_equal(arrays[k], before[k])
        np.testing.assert_array_equal(original.params[k], before[k])
    assert_same_model(from_arrays(original.spec(), arrays), original)


def test_from_arrays_takes_the_arrays_dtype():
    template = paper_cnn(2, input_shape=(1, 8, 8), kernel_size=3)
    arrays = {k: v.astype(np.float32) for k, v in template.params.items()}
    model = from_arrays(template, arrays)
    assert model.dtype == np.float32 and template.dtype == np.float64


def test_from_arrays_names_missing_and_unexpected(original):
    arrays = params_of(original)
    del arrays["fc.rho"]
    arrays["fc.bias"] = arrays["fc.b"]
    with pytest.raises(ConfigError, match=r"missing \['fc.rho'\], unexpected \['fc.bias'\]"):
        from_arrays(original, arrays)


def test_from_arrays_names_an_extra_array(original):
    arrays = dict(params_of(original), **{"fc.b_rho": np.zeros(10)})
    with pytest.raises(ConfigError, match=r"missing none, unexpected \['fc.b_rho'\]"):
        from_arrays(original, arrays)


def test_from_arrays_names_every_wrong_shape(original):
    arrays = params_of(original)
    arrays["conv.M"] = arrays["conv.M"].transpose(2, 3, 1, 0)   # HWIO, not converted
    arrays["fc.rho"] = np.zeros(11)
    with pytest.raises(ShapeError, match=rf"conv.M expected \({N}, 1, 5, 5\), found "
                                         rf"\(5, 5, 1, {N}\); fc.rho expected \(10,\), "
                                         rf"found \(11,\)"):
        from_arrays(original, arrays)


def test_from_arrays_refuses_mixed_and_non_float_dtypes(original):
    arrays = params_of(original)
    arrays["fc.b"] = arrays["fc.b"].astype(np.float32)
    with pytest.raises(ShapeError, match="all be float32 or all float64, found .*fc.b float32"):
        from_arrays(original, arrays)
    arrays = {k: v.astype(np.float16) for k, v in params_of(original).items()}
    with pytest.raises(ShapeError, match="all be float32 or all float64"):
        from_arrays(original, arrays)


def test_from_arrays_refuses_nan_and_non_arrays(original):
    arrays = params_of(original)
    arrays["conv.rho"][2] = np.nan
    with pytest.raises(ShapeError, match=r"conv.rho must be finite, found nan at index \(2,\)"):
        from_arrays(original, arrays)
    arrays = dict(params_of(original), **{"fc.b": [0.0] * 10})
    with pytest.raises(ShapeError, match="fc.b must be a numpy array, found list"):
        from_arrays(original, arrays)


def test_from_arrays_refuses_what_is_not_a_network(original):
    with pytest.raises(ConfigError, match="expected a Sequential or its spec"):
        from_arrays("paper_cnn", params_of(original))
    with pytest.raises(ConfigError, match="must be a dict"):
        from_arrays(original, list(params_of(original).values()))


def test_from_arrays_takes_a_mapping_and_names_a_bad_spec(original, tmp_path):
    np.savez(tmp_path / "p.npz", **original.params)
    with np.load(tmp_path / "p.npz") as arrays:
        assert_same_model(from_arrays(original, arrays), original)
    with pytest.raises(ConfigError, match="cannot build a network from this spec: KeyError"):
        from_arrays({"layers": []}, {})
