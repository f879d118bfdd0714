"""Milliseconds per training step of ``tinybnn.train.fit`` itself: the paper's Bayesian CNN
(N = 32, float64, the authors' 2019 loss, or the regulariser named second: ``elbo``) on 2,000
steps of MNIST at a batch size B, after a short fit that compiles the loops. It prints one
line, ``<ms> ms/step``.

It compares versions of tinybnn as whole processes (nothing else here can hold two versions at
once): run it from outside the checkout, with PYTHONPATH naming each version's folder, in turn,
several times, e.g. for a worktree of commit 6e9b828 in /tmp/base::

    cd /tmp && for i in 1 2 3 4; do
      PYTHONPATH=/tmp/base python /path/to/benchmarks/fit_steps.py 1
      PYTHONPATH=/path/to/tinybnn-checkout python /path/to/benchmarks/fit_steps.py 1
    done
"""

import sys
import time

from tinybnn import data
from tinybnn.architectures import paper_cnn
from tinybnn.losses import Objective
from tinybnn.train import fit


def main(batch, loss="authors2019", steps=2000):
    ds = data.load("mnist", subset=steps * batch, validation=0.0, seed=0)
    net = paper_cnn(32, seed=0, rho_range=(-12, -2.2))
    objective = Objective(loss, n_train=55000)
    warm = data.load("mnist", subset=100, seed=1).train
    fit(net, warm, objective=objective, epochs=1, batch_size=batch, lr=1e-4, progress=False)
    t0 = time.perf_counter()
    fit(net, ds.train, objective=objective, epochs=1, batch_size=batch, lr=1e-4, progress=False)
    print(f"{1000 * (time.perf_counter() - t0) / (len(ds.train.y) // batch):.3f} ms/step")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1, *sys.argv[2:3])
