"""Prove benchmarks/torch_reference.py right on its own, then time its training step.

    python benchmarks/check_torch_reference.py [--no-timing] [--repeats 10] [--warmup 3]

Checks (float64 unless said otherwise), each printed with its measured error and tolerance:
  1. the factored CNN equals an explicit NumPy implementation that forms every kernel's P x P
     covariance s_k X X^T, masks it, gathers the pooled rows/columns, builds the block-diagonal
     flattened covariance and applies M^T S M + diag(s (tr S + |mu|^2)); likewise the MLPs
     against full-covariance NumPy, and every preset's loss against NumPy formulas;
  2. the zero-variance limit (rho = -60) of the Bayesian CNN is the vanilla CNN;
  3. Monte Carlo with a fixed seed for the exact layers (first Linear on a point input, first conv
     on a point input, Linear on a Gaussian input with full covariance): every propagated mean and
     covariance entry lies within 4 standard errors of the sample moment (standard errors
     estimated from the samples themselves, since outputs of random-input layers are not Gaussian);
  4. autograd gradients equal central differences (fourth-order stencil) for every preset;
  5. float32 gives the float64 loss to 1e-4 relative.
Exit status 1 if any check fails. Timing uses torch.set_num_threads(2) and reports the median
over --repeats steps after --warmup steps.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402

THREADS = 2
ROWS = []  # (check, measured, tolerance, passed)


def record(name, measured, tol):
    """Add one row to the table; a NaN measurement fails."""
    ROWS.append((name, measured, tol, bool(measured <= tol)))


def rel_err(a, b):
    """max |a - b| / max |b| (b the trusted side)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ============================================================================ explicit NumPy
def np_softplus(rho):
    return np.logaddexp(rho, 0.0)


def np_im2col(x, r):
    """One image (C, H, W) -> patch rows X (P, C r r), row-major positions, (c, i, j) order."""
    C, H, W = x.shape
    Ho, Wo = H - r + 1, W - r + 1
    X = np.empty((Ho * Wo, C * r * r))
    for h in range(Ho):
        for w in range(Wo):
            X[h * Wo + w] = x[:, h:h + r, w:w + r].ravel()
    return X


def np_pool_argmax(m, Ho, Wo):
    """2x2 stride-2 ceil-mode windows over a map m (Ho Wo,): flat index of the first maximum."""
    idx = []
    for ph in range(-(-Ho // 2)):
        for pw in range(-(-Wo // 2)):
            best = None
            for i in range(2):
                for j in range(2):
                    h, w = 2 * ph + i, 2 * pw + j
                    if h < Ho and w < Wo and (best is None or m[h * Wo + w] > m[best]):
                        best = h * Wo + w
            idx.append(best)
    return np.array(idx)


def np_block_diag(blocks):
    n = sum(b.shape[0] for b in blocks)
    out, i = np.zeros((n, n)), 0
    for blk in blocks:
        out[i:i + len(blk), i:i + len(blk)] = blk
        i += len(blk)
    return out


def np_fc_random(m, S, W, s, b):
    """Exact FC on a random input: m W + b, W^T S W + diag(s (tr S + |m|^2))."""
    return m @ W + b, W.T @ S @ W + np.diag(s * (np.trace(S) + m @ m))


def np_cnn_moments(p, x):
    """Explicit path, one image at a time, P x P covariances: logits mean (B, K), cov (B, K, K)."""
    M, W, b = p["conv.M"], p["fc.M"], p["fc.b"]
    s_conv, s_fc = np_softplus(p["conv.rho"]), np_softplus(p["fc.rho"])
    N, _, r, _ = M.shape
    Ho, Wo = x.shape[2] - r + 1, x.shape[3] - r + 1
    means, covs = [], []
    for xb in x:
        X = np_im2col(xb, r)                       # (P, d)
        mu = X @ M.reshape(N, -1).T                # (P, N)
        m_f, blocks = [], []
        for k in range(N):
            S_k = s_conv[k] * X @ X.T              # (P, P)
            d = (mu[:, k] > 0).astype(float)
            h = np.maximum(mu[:, k], 0.0)
            S_k = S_k * np.outer(d, d)
            idx = np_pool_argmax(h, Ho, Wo)
            m_f.append(h[idx])
            blocks.append(S_k[np.ix_(idx, idx)])
        m, S = np_fc_random(np.concatenate(m_f), np_block_diag(blocks), W, s_fc, b)
        means.append(m)
        covs.append(S)
    return np.array(means), np.array(covs)


def np_mlp_moments(p, x):
    """Explicit MLP with full covariance matrices everywhere (point input = zero covariance)."""
    L = ref.mlp_depth(p)
    means, covs = [], []
    for xb in x.reshape(len(x), -1):
        m, S = xb, np.zeros((len(xb), len(xb)))
        for i in range(1, L + 1):
            if i > 1:
                d = (m > 0).astype(float)
                m, S = np.maximum(m, 0.0), S * np.outer(d, d)
            m, S = np_fc_random(m, S, p[f"fc{i}.M"], np_softplus(p[f"fc{i}.rho"]), p[f"fc{i}.b"])
        means.append(m)
        covs.append(S)
    return np.array(means), np.array(covs)


def np_nll(m, S, y, eps=1e-3):
    """Batch mean of 1/2 r^T A^-1 r + 1/2 log det A after the first-order softmax."""
    total = 0.0
    for mb, Sb, yb in zip(m, S, y):
        p = np.exp(mb - mb.max())
        p /= p.sum()
        J = np.diag(p) - np.outer(p, p)
        A = J @ Sb @ J
        A = 0.5 * (A + A.T) + eps * np.eye(len(p))
        r = p - np.eye(len(p))[yb]
        total += 0.5 * r @ np.linalg.solve(A, r) + 0.5 * np.linalg.slogdet(A)[1]
    return total / len(y)


def np_units(model, p):
    if model == "cnn":
        return [(p["conv.M"].reshape(len(p["conv.M"]), -1), np_softplus(p["conv.rho"])),
                (p["fc.M"].T, np_softplus(p["fc.rho"]))]
    return [(p[f"fc{i}.M"].T, np_softplus(p[f"fc{i}.rho"]))
            for i in range(1, ref.mlp_depth(p) + 1)]


def np_loss(nll, units, preset, n_train, sp):
    if preset == "elbo":
        kl = 0.0
        for Mk, s in units:
            n, d = Mk.shape
            for k in range(n):
                kl += 0.5 * (d * s[k] / sp + Mk[k] @ Mk[k] / sp - d + d * np.log(sp / s[k]))
        return nll + kl / n_train
    if preset == "authors2019":
        return nll + 0.002 * sum(0.5 * (np.abs(Mk).sum() + np.mean(Mk.shape[1] * (s - np.log(s) - 1)))
                                 for Mk, s in units)
    return 0.5 * (nll + 0.01 * sum((Mk ** 2).sum() + Mk.shape[1] * np.mean(s - np.log(s) - 1)
                                   for Mk, s in units))


# ============================================================================ check 1
SMALL_CNN = dict(n_kernels=4, in_shape=(2, 10, 10), kernel_size=3, n_classes=5)
PRESET_ARGS = {"elbo": dict(n_train=50, prior_var=0.5), "authors2019": {}, "authors_later": {}}


def small_data(rng, in_shape, B, K):
    return rng.uniform(-1.0, 1.0, (B, *in_shape)), rng.integers(0, K, B)


def check_explicit(rng):
    """1. Factored CNN and MLPs against explicit NumPy; losses of every preset."""
    x, y = small_data(rng, SMALL_CNN["in_shape"], 3, 5)
    p = ref.init_params("cnn", seed=1, **SMALL_CNN)
    p["conv.rho"] = rng.uniform(-3, 0, 4)
    p["fc.rho"] = rng.uniform(-3, 0, 5)
    m0, S0 = np_cnn_moments(p, x)
    m1, S1 = ref.cnn_moments(ref.to_torch(p), torch.tensor(x))
    record("1 cnn factored vs explicit PxP: mean", rel_err(m1, m0), 1e-10)
    record("1 cnn factored vs explicit PxP: covariance", rel_err(S1, S0), 1e-10)
    nll = np_nll(m0, S0, y)
    for preset, kw in PRESET_ARGS.items():
        l_ref, _ = ref.loss_and_grads("cnn", p, x, y, preset=preset, **kw)
        l_np = np_loss(nll, np_units("cnn", p), preset, kw.get("n_train", 60000),
                       kw.get("prior_var", 1.0))
        record(f"1 cnn loss vs NumPy [{preset}]", rel_err(l_ref, l_np), 1e-10)

    for hidden in [(6,), (6, 5)]:
        pm = ref.init_params("mlp", hidden=hidden, seed=2, in_shape=(1, 3, 4), n_classes=4)
        for k in pm:
            if k.endswith(".rho"):
                pm[k] = rng.uniform(-3, 0, pm[k].shape)
        xm, ym = small_data(rng, (12,), 3, 4)
        m0, S0 = np_mlp_moments(pm, xm)
        m1, S1 = ref.mlp_moments(ref.to_torch(pm), torch.tensor(xm))
        tag = "-".join(map(str, (12, *hidden, 4)))
        record(f"1 mlp {tag} vs explicit: mean", rel_err(m1, m0), 1e-10)
        record(f"1 mlp {tag} vs explicit: covariance", rel_err(S1, S0), 1e-10)
        nll = np_nll(m0, S0, ym)
        for preset, kw in PRESET_ARGS.items():
            l_ref, _ = ref.loss_and_grads("mlp", pm, xm, ym, preset=preset, **kw)
            l_np = np_loss(nll, np_units("mlp", pm), preset, kw.get("n_train", 60000),
                           kw.get("prior_var", 1.0))
            record(f"1 mlp {tag} loss vs NumPy [{preset}]", rel_err(l_ref, l_np), 1e-10)

    # torch's max-pool tie rule (first maximum in row-major window order), on a tie-heavy map
    t = torch.tensor(rng.integers(0, 2, (2, 3, 9, 9)), dtype=torch.float64)
    _, idx = torch.nn.functional.max_pool2d(t, 2, 2, ceil_mode=True, return_indices=True)
    want = np.array([[np_pool_argmax(t[b, c].reshape(-1).numpy(), 9, 9) for c in range(3)]
                     for b in range(2)])
    record("1 max-pool ties: first max, ceil mode (mismatches)",
           float((idx.reshape(2, 3, -1).numpy() != want).sum()), 0)


# ============================================================================ check 2
def check_zero_variance(rng):
    """2. rho = -60: Bayesian CNN mean = vanilla CNN softmax; covariance ~ 0; NLL at A = eps I."""
    x, y = small_data(rng, SMALL_CNN["in_shape"], 3, 5)
    p = ref.init_params("cnn", seed=3, **SMALL_CNN)
    p["conv.rho"][:] = -60.0
    p["fc.rho"][:] = -60.0
    pt, xt = ref.to_torch(p), torch.tensor(x)
    prob, S_y = ref.softmax_moments(*ref.cnn_moments(pt, xt))
    van = torch.softmax(ref.cnn_vanilla_logits(pt, xt), 1)
    record("2 rho=-60: cnn mean vs vanilla softmax", rel_err(prob, van), 1e-12)
    record("2 rho=-60: max |S_y|", float(S_y.abs().max()), 1e-20)
    r = van.numpy() - np.eye(5)[y]
    nll0 = np.mean(0.5 * (r * r).sum(1) / 1e-3 + 0.5 * 5 * np.log(1e-3))
    nll = ref.gaussian_nll(prob, S_y, torch.tensor(y)).item()
    record("2 rho=-60: NLL vs |r|^2/(2 eps) + K/2 log eps", rel_err(nll, nll0), 1e-12)


# ============================================================================ check 3
def mc_z(samples, mean, cov):
    """Largest |sample moment - propagated| / standard error, for the means and covariances.

    samples (n, K). SE of a mean: std / sqrt(n); SE of a covariance entry: std of the centred
    products (y_i - ybar_i)(y_j - ybar_j) / sqrt(n) (no Gaussian assumption).
    """
    n, K = samples.shape
    ybar = samples.mean(0)
    c = samples - ybar
    z_mean = np.abs(ybar - mean) / (c.std(0) / np.sqrt(n))
    z_cov = np.zeros((K, K))
    for i in range(K):
        prod = c[:, i:i + 1] * c                       # (n, K)
        z_cov[i] = np.abs(prod.mean(0) - cov[i]) / (prod.std(0) / np.sqrt(n))
    rel_cov = np.abs(c.T @ c / n - cov).max() / np.abs(cov).max()
    return z_mean.max(), z_cov[np.triu_indices(K)].max(), rel_cov


def mc_rows(name, samples, mean, cov):
    zm, zc, rc = mc_z(samples, np.asarray(mean), np.asarray(cov))
    n, K = samples.shape
    record(f"3 MC {name}: max z mean ({K} entries, n={n})", zm, 4.0)
    record(f"3 MC {name}: max z cov ({K * (K + 1) // 2} entries; rel err {rc:.1e})", zc, 4.0)


def check_monte_carlo(rng):
    """3. Sample weights (and inputs); compare with the propagated moments."""
    n = 200_000
    # (a) first Linear, point input
    D, K = 20, 5
    x = rng.uniform(-1, 1, D)
    W, b, rho = rng.normal(0, 0.3, (D, K)), rng.normal(0, 0.1, K), rng.uniform(-3, 0, K)
    m, v = ref.linear_point(*(torch.tensor(a) for a in (x[None], W, np_softplus(rho), b)))
    Ws = W + np.sqrt(np_softplus(rho)) * rng.standard_normal((n, D, K))
    mc_rows("linear, point input", np.einsum("d,ndk->nk", x, Ws) + b, m[0], np.diag(v[0]))

    # (b) first conv, point input: outputs of all kernels and positions, cross-kernel zeros
    C, H, r, N = 2, 6, 3, 2
    x = rng.uniform(-1, 1, (1, C, H, H))
    M, rho = rng.normal(0, 0.3, (N, C, r, r)), rng.uniform(-3, 0, N)
    s = np_softplus(rho)
    mu, X = ref.conv_point(torch.tensor(x), torch.tensor(M))
    X = X[0].numpy()                                              # (P, d)
    cov = np_block_diag([s[k] * X @ X.T for k in range(N)])
    samples = []
    for _ in range(4):                                            # 4 chunks of n/4 kernels
        Ms = M.reshape(N, -1) + np.sqrt(s)[:, None] * rng.standard_normal((n // 4, N, C * r * r))
        samples.append(np.einsum("pd,snd->snp", X, Ms).reshape(n // 4, -1))
    mc_rows("conv, point input", np.concatenate(samples), mu[0].reshape(-1), cov)

    # (c) Linear on a Gaussian input with full covariance
    D, K = 6, 4
    mu_in = rng.normal(0, 1, D)
    G = rng.normal(0, 0.5, (D, D))
    S_in = G @ G.T + 0.1 * np.eye(D)
    W, b, rho = rng.normal(0, 0.5, (D, K)), rng.normal(0, 0.1, K), rng.uniform(-2, 0, K)
    m, S = ref.linear_full(*(torch.tensor(a) for a in (mu_in[None], S_in[None], W,
                                                         np_softplus(rho), b)))
    xs = mu_in + rng.standard_normal((n, D)) @ np.linalg.cholesky(S_in).T
    Ws = W + np.sqrt(np_softplus(rho)) * rng.standard_normal((n, D, K))
    mc_rows("linear, full-cov input", np.einsum("nd,ndk->nk", xs, Ws) + b, m[0], S[0])

    # diagonal-input Linear is the full one on diag(v) (algebra used by the MLP)
    v = rng.uniform(0.1, 1, (2, D))
    args = [torch.tensor(a) for a in (W, np_softplus(rho), b)]
    md, Sd = ref.linear_diag(torch.tensor(mu_in[None].repeat(2, 0)), torch.tensor(v), *args)
    mf, Sf = ref.linear_full(torch.tensor(mu_in[None].repeat(2, 0)),
                             torch.diag_embed(torch.tensor(v)), *args)
    record("3 linear_diag == linear_full(diag v)", rel_err(Sd, Sf), 1e-13)


# ============================================================================ check 4
def fd_step(model, p, key):
    """Step h of the differences in p[key].

    The loss is smooth in a variance parameter (means never depend on rho, so no ReLU mask or
    max-pool argmax moves) and in the last layer's means and bias (no mask downstream): there
    h = 1e-3 is safe and accurate. Means feeding a ReLU or max-pool move masks and argmaxes,
    where the first-order covariance jumps; there h = 1e-4 keeps +-2h clear of them.
    """
    last = "fc" if model.startswith("cnn") else f"fc{ref.mlp_depth(p)}"
    return 1e-3 if key.endswith(".rho") or key.split(".")[0] == last else 1e-4


def fd_grad(f, p, key, i, h):
    """Fourth-order central difference of f(p) in p[key].flat[i], step h."""
    vals = []
    for step in (-2, -1, 1, 2):
        q = {k: v.copy() for k, v in p.items()}
        q[key].flat[i] += step * h
        vals.append(f(q))
    return (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * h)


def gradcheck(name, model, p, x, y, preset, kw, rng, n_entries=5):
    """Worst relative error over n_entries random entries of every parameter.

    error = |autograd - fd| / max(|autograd|, |fd|, 1e-3 g_max), g_max the largest |gradient|
    entry of the model. The differences carry an absolute error of up to ~1e-10 (the loss's own
    rounding, ~1e-14, over h), so an entry far below the gradient's scale (exactly 0 for a dead
    ReLU unit's bias) is compared on that scale: 1e-3 g_max.
    """
    def f(q):
        return ref.loss_and_grads(model, q, x, y, preset=preset, **kw)[0]

    _, g = ref.loss_and_grads(model, p, x, y, preset=preset, **kw)
    worst, where = 0.0, ""
    floor = 1e-3 * max(np.abs(v).max() for v in g.values())
    for key in p:
        for i in rng.choice(p[key].size, min(n_entries, p[key].size), replace=False):
            ad, fd = g[key].flat[i], fd_grad(f, p, key, i, fd_step(model, p, key))
            err = abs(ad - fd) / max(abs(ad), abs(fd), floor, 1e-300)
            if err >= worst:
                worst, where = err, f"{key}[{i}]"
    record(f"4 grad {name} [{preset}] (worst {where})", worst, 1e-6)


def check_gradients(rng):
    """4. Autograd against differences, every model and preset, on small networks."""
    x, y = small_data(rng, SMALL_CNN["in_shape"], 3, 5)
    p = ref.init_params("cnn", seed=4, **SMALL_CNN)
    p["conv.rho"] = rng.uniform(-3, 0, 4)      # sigmoid(rho) not tiny: differences resolve it
    p["fc.rho"] = rng.uniform(-3, 0, 5)
    for preset, kw in PRESET_ARGS.items():
        gradcheck("cnn N=4", "cnn", p, x, y, preset, kw, rng)
    pv = {k: v for k, v in p.items() if not k.endswith("rho")}
    gradcheck("cnn_vanilla N=4", "cnn_vanilla", pv, x, y, "cross-entropy", {}, rng)
    for hidden in [(6,), (6, 5)]:
        pm = ref.init_params("mlp", hidden=hidden, seed=5, in_shape=(1, 3, 4), n_classes=4)
        for k in pm:
            if k.endswith(".rho"):
                pm[k] = rng.uniform(-3, 0, pm[k].shape)
            if k.endswith(".b"):
                pm[k] = rng.normal(0, 0.1, pm[k].shape)
        xm, ym = small_data(rng, (12,), 3, 4)
        tag = "-".join(map(str, (12, *hidden, 4)))
        for preset, kw in PRESET_ARGS.items():
            gradcheck(f"mlp {tag}", "mlp", pm, xm, ym, preset, kw, rng)


# ============================================================================ check 5
def mnist_batch(B=100):
    """First B MNIST training images in [0, 1] if the repo has datasets/mnist.npz, else noise."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets", "mnist.npz")
    if os.path.exists(path):
        d = np.load(path)
        return d["x_train"][:B, None] / 255.0, d["y_train"][:B].astype(np.int64), "MNIST"
    rng = np.random.default_rng(7)
    return rng.uniform(0, 1, (B, 1, 28, 28)), rng.integers(0, 10, B), "uniform noise"


def check_float32(rng):
    """5. float32 losses against float64 at full size (the first MNIST batch)."""
    x, y, _ = mnist_batch()
    cases = [("cnn N=32", "cnn", dict(n_kernels=32)), ("mlp 784-400-10", "mlp", dict(hidden=(400,))),
             ("mlp 784-400-400-10", "mlp", dict(hidden=(400, 400)))]
    for name, model, kw in cases:
        p = ref.init_params(model, seed=6, **kw)
        for preset in ref.PRESETS:
            l64, _ = ref.loss_and_grads(model, p, x, y, preset=preset)
            l32, _ = ref.loss_and_grads(model, p, x.astype(np.float32), y, preset=preset,
                                        dtype="float32")
            record(f"5 float32 vs float64 loss: {name} [{preset}]", rel_err(l32, l64), 1e-4)
    p = ref.init_params("cnn_vanilla", seed=6, n_kernels=32)
    l64, _ = ref.loss_and_grads("cnn_vanilla", p, x, y)
    l32, _ = ref.loss_and_grads("cnn_vanilla", p, x.astype(np.float32), y, dtype="float32")
    record("5 float32 vs float64 loss: cnn_vanilla N=32", rel_err(l32, l64), 1e-4)


# ============================================================================ timing
def time_steps(warmup, repeats):
    x, y, source = mnist_batch()
    print(f"\nTrainStep.step timing: batch 100 ({source}), preset elbo, Adam lr 1e-3, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {repeats} "
          f"after {warmup} warm-up steps")
    print(f"{'model':<24}{'dtype':<10}{'ms/step':>10}{'images/s':>10}")
    cases = [("cnn N=32", "cnn", dict(n_kernels=32)), ("cnn N=100", "cnn", dict(n_kernels=100)),
             ("cnn_vanilla N=32", "cnn_vanilla", dict(n_kernels=32)),
             ("cnn_vanilla N=100", "cnn_vanilla", dict(n_kernels=100)),
             ("mlp 784-400-10", "mlp", dict(hidden=(400,))),
             ("mlp 784-400-400-10", "mlp", dict(hidden=(400, 400)))]
    for name, model, kw in cases:
        for dtype in ("float64", "float32"):
            step = ref.TrainStep(model, ref.init_params(model, dtype=dtype, **kw), preset="elbo",
                                 dtype=dtype)
            xs = x.astype(dtype)
            for _ in range(warmup):
                step.step(xs, y)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                step.step(xs, y)
                times.append(time.perf_counter() - t0)
            ms = 1e3 * float(np.median(times))
            print(f"{name:<24}{dtype:<10}{ms:>10.1f}{100 / ms * 1e3:>10.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-timing", action="store_true", help="run the checks only")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(20240601)
    for check in (check_explicit, check_zero_variance, check_monte_carlo, check_gradients,
                  check_float32):
        check(rng)

    width = max(len(r[0]) for r in ROWS)
    print(f"{'check':<{width}}  {'measured':>9}  {'tolerance':>9}  result")
    for name, measured, tol, ok in ROWS:
        print(f"{name:<{width}}  {measured:>9.2e}  {tol:>9.1e}  {'ok' if ok else 'FAIL'}")
    failed = [r for r in ROWS if not r[3]]
    print(f"{len(ROWS) - len(failed)}/{len(ROWS)} checks passed")
    if not args.no_timing:
        time_steps(args.warmup, args.repeats)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
