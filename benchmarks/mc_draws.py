"""Why the Monte Carlo predictive of a VDP network disagrees with its propagated moments: the
logit moments against Monte Carlo, and how good single weight draws are as classifiers.

    python benchmarks/mc_draws.py runs/bayes_n32/model.npz

On 200 MNIST test images (``test_subset=200, seed=1``), 200 weight draws (seed 0): the learned
variances (quantiles), the median propagated logit standard deviation and gap between the two
largest logit means, the accuracy of each single draw (quantiles), the Monte Carlo logit
variance and mean against the propagated ones, and the Monte Carlo against propagated accuracy.
Quoted in docs/UNCERTAINTY.md.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinybnn import data, io  # noqa: E402
from tinybnn.functions import softmax  # noqa: E402
from tinybnn.gaussian import Point  # noqa: E402
from tinybnn.monte_carlo import point_twin, sample_weights  # noqa: E402


def main(path, n_draws=200):
    m, _ = io.load(path)
    print("conv s quantiles (0, .5, 1)", np.round(np.quantile(m["conv"].s, [0, .5, 1]), 4),
          "fc s", np.round(np.quantile(m["fc"].s, [0, .5, 1]), 4))
    test = data.load("mnist", test_subset=200, seed=1, dtype=m.dtype.type).test
    z = Point(test.x)
    for name, layer in m.layers:
        z = layer.forward(z)
        if name == "fc":
            logit = z  # Full: the logits' propagated mean and covariance
    lv = np.diagonal(logit.cov, axis1=1, axis2=2)  # (n, K)
    top = np.sort(logit.mean, axis=1)
    print("median logit sd", np.median(np.sqrt(lv)), "median gap of the two largest logit means",
          np.median(top[:, -1] - top[:, -2]))
    twin, rng = point_twin(m), np.random.default_rng(0)
    draws = []
    for _ in range(n_draws):
        sample_weights(m, twin, rng)
        draws.append(twin.forward(test.x).mean)
    draws = np.array(draws)  # (S, n, K)
    acc = (draws.argmax(axis=2) == test.y).mean(axis=1)
    print("single-draw accuracy quantiles (0, .1, .5, .9, 1)",
          np.round(np.quantile(acc, [0, .1, .5, .9, 1]), 3))
    print("median MC / propagated logit variance", np.median(draws.var(axis=0) / lv),
          "relative error of the propagated logit mean",
          np.linalg.norm(draws.mean(axis=0) - logit.mean) / np.linalg.norm(logit.mean))
    print("MC accuracy", (softmax(draws).mean(axis=0).argmax(1) == test.y).mean(),
          "propagated accuracy", (softmax(logit.mean).argmax(1) == test.y).mean())


if __name__ == "__main__":
    main(sys.argv[1])
