"""What removing switched-off kernels does to the uncertainty.

A kernel whose mean is ~1e-5 adds nothing to the predictive *mean*, so removing it leaves the
prediction unchanged. Its *variance* s_k is not small, though (the authors' released run: conv
variances 0.003 to 0.05), and it still reaches the output in two ways:

- in the propagated moments, the first-order ReLU passes the kernel's variance
  ``s_k X X^T`` wherever its tiny mean happens to be positive, and the last layer's weight
  noise multiplies the trace of its input covariance (``s_j (tr S + ||mu||^2)``), to which the
  kernel's variance adds;
- in the true predictive distribution of the network (Monte Carlo over its weights), a weight
  draw ``W_k ~ N(~0, s_k I)`` gives the kernel a random map of size ``sqrt(s_k) ||x||``, half of
  which passes the ReLU, and the last layer's weight noise (variance ~1) amplifies it.

So removal changes the covariance, and the question is which covariance is right. The truth of
the trained network is its Monte Carlo predictive; :func:`removal_effect` compares with it the
propagated moments of the full and of the pruned network, the Monte Carlo predictive of the
pruned network, and their calibration and out-of-distribution detection.

Shapes: n images, K classes; S Monte Carlo samples.
"""

import numpy as np

from .evaluate import predict
from .monte_carlo import mc_predictive
from .robustness import ood_detection
from .uncertainty import calibration, summaries


def covariance_error(cov, reference):
    """Median over images of ||cov - reference||_F / ||reference||_F; (n, K, K) each."""
    diff = np.linalg.norm(cov - reference, axis=(1, 2))
    return float(np.median(diff / np.maximum(np.linalg.norm(reference, axis=(1, 2)), 1e-300)))


def removal_effect(full, pruned, x, y, x_ood, *, n_samples=200, seed=0):
    """Moments, calibration and out-of-distribution detection before and after removal.

    full, pruned : the Bayesian network and the network without its switched-off kernels;
    x, y : images and labels; x_ood : foreign images. Returns a JSON-able dict::

        mean_change          max |p_pruned - p_full| of the propagated means
        propagated_change    covariance_error(propagated pruned, propagated full)
        <net>                for "full" and "pruned": accuracy, ece, auroc (per summary),
                             mc_vs_propagated (its own MC against its propagated covariance)
        against_full_mc      covariance_error against the full network's Monte Carlo
                             covariance of: "full, propagated", "pruned, propagated",
                             "pruned, Monte Carlo", and "full, Monte Carlo again" (an
                             independent second Monte Carlo run: the noise floor)
    """
    out, mc = {}, {}
    prop = {name: predict(net, x) for name, net in (("full", full), ("pruned", pruned))}
    for name, net in (("full", full), ("pruned", pruned)):
        mean, cov = prop[name]
        mc[name] = mc_predictive(net, x, n_samples, np.random.default_rng(seed))[n_samples]
        ood = ood_detection(net, x, x_ood)
        out[name] = {"accuracy": float((summaries(mean, cov)["predicted"] == y).mean()),
                     "ece": calibration(mean, y)["ece"], "auroc": ood["auroc"],
                     "mc_vs_propagated": covariance_error(cov, mc[name][1]),
                     "mc_accuracy": float((mc[name][0].argmax(axis=1) == y).mean())}
    again = mc_predictive(full, x, n_samples, np.random.default_rng(seed + 1))[n_samples]
    ref = mc["full"][1]
    out["mean_change"] = float(np.abs(prop["pruned"][0] - prop["full"][0]).max())
    out["propagated_change"] = covariance_error(prop["pruned"][1], prop["full"][1])
    out["against_full_mc"] = {
        "full, propagated": covariance_error(prop["full"][1], ref),
        "pruned, propagated": covariance_error(prop["pruned"][1], ref),
        "pruned, Monte Carlo": covariance_error(mc["pruned"][1], ref),
        "full, Monte Carlo again": covariance_error(again[1], ref)}
    out["n_images"], out["n_samples"] = int(len(x)), int(n_samples)
    return out
