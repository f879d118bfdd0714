"""First-order against exact ReLU moments against Monte Carlo, on trained networks' real
activations, and what training an MLP with exact moments changes. The figures quoted in
docs/UNCERTAINTY.md come from this script.

    python benchmarks/relu_moments.py --cnn runs/bayes_n32/model.npz --out runs/relu_moments

Part A (``--cnn``, a Bayesian paper CNN): the conv layer's pre-activations of test images. With a
point input each is exactly Gaussian, ``N(X m_k, s_k ||x_p||^2)``, so the exact rectified
moments are the truth there; Monte Carlo over the kernel weights confirms it, and the first-order
error is measured against both.

Part B (``--mlp-epochs`` > 0): two Bayesian MLPs 784-H-H-10 trained on MNIST with the same
seed and schedule (``--regulariser``, ``--batch-size``, ``--lr`` -> ``--final-lr``,
``--rho-init``), one with the first-order ReLU and one with ReLUExact; their test accuracy,
training time and near-zero hidden units (``||M[:, j]|| < threshold``). Then, on each trained
MLP, the moments after each ReLU and at the softmax output, propagated with either rule (the
same weights), against Monte Carlo over every weight: ReLU 1 sees a Diagonal (exactly
Gaussian) input, ReLU 2 a Full one (only approximately Gaussian), the output everything.

Part C (always): the seconds of one forward and backward pass of each ReLU on a batch of 100
examples with 100 units, Diagonal and Full input.

Everything is seeded. Writes OUT/relu_moments.json and OUT/relu_moments.png.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinybnn import data, io, plots, plots_uncertainty  # noqa: E402
from tinybnn.architectures import mlp  # noqa: E402
from tinybnn.functions import relu, relu_grad, softmax  # noqa: E402
from tinybnn.gaussian import Diagonal, Full, Point  # noqa: E402
from tinybnn.layers import ReLU, ReLUExact  # noqa: E402
from tinybnn.layers.relu_exact import rectified_gaussian  # noqa: E402
from tinybnn.losses import Objective  # noqa: E402
from tinybnn.monte_carlo import point_twin, sample_weights  # noqa: E402
from tinybnn.train import fit  # noqa: E402


def errors(m, v, m_ref, v_ref, floor):
    """Relative mean error ||m - m_ref|| / ||m_ref||, the same for the variances, and the
    ratio v / v_ref (median, 5 %, 95 %) over units whose reference variance exceeds ``floor``;
    and the fraction of those units the rule gives zero variance."""
    big = v_ref > floor
    ratio = v[big] / v_ref[big]
    return {"mean_rel_error": float(np.linalg.norm(m - m_ref) / np.linalg.norm(m_ref)),
            "var_rel_error": float(np.linalg.norm(v - v_ref) / np.linalg.norm(v_ref)),
            "var_ratio_median": float(np.median(ratio)),
            "var_ratio_p05": float(np.quantile(ratio, 0.05)),
            "var_ratio_p95": float(np.quantile(ratio, 0.95)),
            "zero_var_fraction": float((v[big] == 0).mean()), "n_units": int(big.sum())}


def part_cnn(path, x, S, rng):
    model, _ = io.load(path)
    conv = model["conv"]
    t0 = time.perf_counter()
    pre = conv.forward(Point(x.astype(model.dtype))).diagonal()  # exact marginals (B, N, H, W)
    mu, v = pre.mean.astype(float), pre.var.astype(float)
    t_pre = time.perf_counter() - t0
    t0 = time.perf_counter()
    m1, v1 = relu(mu), v * relu_grad(mu)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    me, ve, _ = rectified_gaussian(mu, v)
    t_exact = time.perf_counter() - t0
    # Monte Carlo over the kernel weights (exactly the distribution of the pre-activations)
    X = conv._patches(x.astype(float))[0]  # (B, P, d)
    M, s = conv.params["M"].reshape(conv.n_kernels, -1).astype(float), conv.s.astype(float)
    B, N = mu.shape[:2]
    acc, acc2 = np.zeros(mu.shape), np.zeros(mu.shape)
    t0 = time.perf_counter()
    for _ in range(S):
        W = M + np.sqrt(s)[:, None] * rng.standard_normal(M.shape)  # (N, d)
        r = relu(X @ W.T).transpose(0, 2, 1).reshape(mu.shape)  # (B, N, H, W)
        acc += r
        acc2 += r * r
    t_mc = time.perf_counter() - t0
    m_mc = acc / S
    v_mc = acc2 / S - m_mc**2
    floor = 1e-8 * v_mc.max()
    return {"images": int(B), "units": int(mu.size), "mc_samples": S,
            "input_variance_median": float(np.median(v)),
            "fraction_negative_mean": float((mu < 0).mean()),
            "first_order_vs_mc": errors(m1, v1, m_mc, v_mc, floor),
            "exact_vs_mc": errors(me, ve, m_mc, v_mc, floor),
            "first_order_vs_exact": errors(m1, v1, me, ve, 1e-8 * ve.max()),
            "seconds": {"pre_activations": t_pre, "first_order": t_first, "exact": t_exact,
                        "monte_carlo": t_mc}}, (v1, ve, v_mc)


def near_zero_units(model, threshold):
    out = {}
    for name, layer in model.layers[:-2]:
        if "M" in layer.params:
            norms = np.linalg.norm(layer.params["M"], axis=0)  # incoming weights of each unit
            out[name] = {"near_zero": int((norms < threshold).sum()), "units": int(norms.size),
                         "smallest_norms": np.sort(norms)[:5].round(6).tolist()}
    return out


def with_relu(model, cls):
    """The same layers (and weights) with every ReLU replaced by ``cls``."""
    for i, (name, layer) in enumerate(model.layers):
        if isinstance(layer, (ReLU, ReLUExact)):
            model.layers[i] = (name, cls())
    return model


def propagate(model, x):
    """{layer name: output structure} of the relu layers and the output, and the seconds."""
    out, h = {}, Point(x)
    t0 = time.perf_counter()
    for name, layer in model.layers:
        h = layer.forward(h)
        if name.startswith("relu") or name == "softmax":
            out[name] = h
    return out, time.perf_counter() - t0


def moments(h):
    if isinstance(h, Full):
        return h.mean, np.diagonal(h.cov, axis1=1, axis2=2), h.cov
    return h.mean, h.var, None


def mc_layers(model, x, S, rng):
    """Monte Carlo means, variances and covariances after each ReLU and at the softmax."""
    twin = point_twin(model)
    stats = {}
    t0 = time.perf_counter()
    for _ in range(S):
        sample_weights(model, twin, rng)
        h = x
        for name, layer in twin.layers:
            h = layer.forward(Point(h)).mean
            if name.startswith("relu"):
                stats.setdefault(name, []).append(h)
        stats.setdefault("softmax", []).append(softmax(h))
    seconds = time.perf_counter() - t0
    out = {}
    for name, draws in stats.items():
        d = np.array(draws)  # (S, n, K)
        m = d.mean(axis=0)
        c = d - m
        out[name] = (m, (c**2).mean(axis=0), np.einsum("snk,snl->nkl", c, c) / S)
    return out, seconds


def part_mlp(o, rng):
    ds = data.load("mnist", validation=0.0, seed=o.seed)
    tr, te = ds.train, ds.test
    sizes = (784, o.hidden, o.hidden, 10)
    rho = tuple(float(v) for v in o.rho_init.split(","))
    result, trained = {"sizes": sizes, "preset_regulariser": o.regulariser,
                       "epochs": o.mlp_epochs, "batch_size": o.batch_size,
                       "lr": [o.lr, o.final_lr], "rho_init": rho,
                       "seed": o.seed, "near_zero_threshold": o.threshold}, {}
    for rule in ("first_order", "exact"):
        model = mlp(sizes, input_shape=(1, 28, 28), seed=o.seed, relu=rule, rho_range=rho)
        t0 = time.perf_counter()
        fit(model, tr, objective=Objective(o.regulariser, n_train=len(tr.y)),
            epochs=o.mlp_epochs, batch_size=o.batch_size, lr=o.lr, final_lr=o.final_lr,
            seed=o.seed, progress=False)
        seconds = time.perf_counter() - t0
        mean = np.concatenate([model.forward(te.x[i:i + 500]).mean
                               for i in range(0, len(te.y), 500)])
        result[f"trained_{rule}"] = {"test_accuracy": float((mean.argmax(1) == te.y).mean()),
                                     "train_seconds": seconds,
                                     "units": near_zero_units(model, o.threshold)}
        trained[rule] = model
        print(rule, result[f"trained_{rule}"], flush=True)
    pick = rng.choice(len(te.y), size=o.mlp_images, replace=False)
    x = te.x[pick]
    cmp = {}
    for trained_with, model in trained.items():
        mc, t_mc = mc_layers(model, x, o.samples, rng)
        row = {"mc_seconds": t_mc}
        for rule, cls in (("first_order", ReLU), ("exact", ReLUExact)):
            out, secs = propagate(with_relu(model, cls), x)
            row[f"{rule}_seconds"] = secs
            for name, h in out.items():
                m, v, C = moments(h)
                m_mc, v_mc, C_mc = mc[name]
                e = errors(m, v, m_mc, v_mc, 1e-12 * v_mc.max())
                if C is not None:
                    e["cov_rel_error"] = float(np.linalg.norm(C - C_mc) / np.linalg.norm(C_mc))
                row[f"{rule}/{name}"] = e
        with_relu(model, ReLUExact if trained_with == "exact" else ReLU)
        cmp[f"trained_{trained_with}"] = row
    result["moments_vs_mc"] = cmp
    result["mc_samples"], result["images"] = o.samples, int(o.mlp_images)
    return result


def layer_cost(repeats=20, seed=0):
    """Seconds per forward + backward of ReLU and ReLUExact on a batch of 100 examples with
    100 units, Diagonal and Full input (median of ``repeats``)."""
    rng = np.random.default_rng(seed)
    B, K = 100, 100
    A = rng.normal(size=(B, K, K)) / np.sqrt(K)
    inputs = {"diagonal": Diagonal(rng.normal(size=(B, K)), rng.uniform(0.1, 1, (B, K))),
              "full": Full(rng.normal(size=(B, K)), A @ A.transpose(0, 2, 1))}
    out = {}
    for kind, x in inputs.items():
        for name, cls in (("first_order", ReLU), ("exact", ReLUExact)):
            layer, times = cls(), []
            for _ in range(repeats):
                t0 = time.perf_counter()
                y = layer.forward(x)
                layer.backward(type(y)(*(np.ones_like(v) for v in vars(y).values())))
                times.append(time.perf_counter() - t0)
            out[f"{kind}/{name}"] = float(np.median(times))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cnn", help="a Bayesian paper CNN model file (part A)")
    p.add_argument("--cnn-images", type=int, default=100)
    p.add_argument("--mlp-epochs", type=int, default=5, help="0 skips part B")
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--regulariser", default="elbo", help="elbo, authors2019 or authors_later")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--final-lr", type=float, default=1e-4)
    p.add_argument("--rho-init", default="-12,-2.2", help="rho ~ U[low, high], 'low,high'")
    p.add_argument("--mlp-images", type=int, default=200)
    p.add_argument("--samples", type=int, default=2000, help="Monte Carlo weight samples")
    p.add_argument("--threshold", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/relu_moments")
    o = p.parse_args(argv)
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(o.seed)
    result = {"command": " ".join(sys.argv)}
    scatter = None
    if o.cnn:
        test = data.load("mnist", seed=o.seed, test_subset=o.cnn_images).test
        result["cnn"], scatter = part_cnn(o.cnn, test.x, o.samples, rng)
        print(json.dumps(result["cnn"], indent=1), flush=True)
    if o.mlp_epochs > 0:
        result["mlp"] = part_mlp(o, rng)
    result["layer_seconds_B100_K100"] = layer_cost()
    (out / "relu_moments.json").write_text(json.dumps(result, indent=2) + "\n")
    if scatter is not None:
        plots.save(plots_uncertainty.relu_variances(*scatter), out / "relu_moments.png")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
