"""The uncertainty before and after removing the switched-off kernels, for the model files named
on the command line (the docs/SELF_COMPRESSION.md table "What removal does to the uncertainty").

    python docs/self_compression/removal.py [--samples S] MODEL.npz [MODEL.npz ...]

For each network: remove its kernels below 1e-3 (tinybnn.prune), then tinybnn.removal.removal_effect
on 1,000 MNIST test images and 1,000 Fashion-MNIST test images (out of distribution), with S
Monte Carlo weight samples; print one Markdown table row.
"""

import argparse
from pathlib import Path

from tinybnn import data, io
from tinybnn.prune import rank, remove, select
from tinybnn.removal import removal_effect
from tinybnn.units import NEAR_ZERO


def row(path, samples):
    net, _ = io.load(path)
    off = select(rank(net, "conv", "norm"), "threshold", NEAR_ZERO).removed
    pruned = remove(net, "conv", off)
    test = data.load("mnist", test_subset=1000, seed=0).test
    ood = data.load("fashion_mnist", test_subset=1000, seed=0).test.x
    r = removal_effect(net, pruned, test.x, test.y, ood, n_samples=samples)
    f, p, a = r["full"], r["pruned"], r["against_full_mc"]
    return (f"| {Path(path).parent.name} | {len(off)} | {r['mean_change']:.0e} "
            f"| {r['propagated_change']:.0%} | {100 * f['ece']:.2f} / {100 * p['ece']:.2f} "
            f"| {f['auroc']['entropy']:.3f} / {p['auroc']['entropy']:.3f} "
            f"| {f['auroc']['predicted_variance']:.3f} / {p['auroc']['predicted_variance']:.3f} "
            f"| {100 * f['mc_accuracy']:.1f} / {100 * p['mc_accuracy']:.1f} "
            f"| {a['pruned, Monte Carlo']:.3f} | {a['full, Monte Carlo again']:.3f} "
            f"| {a['full, propagated']:.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--samples", type=int, default=1000)
    args = ap.parse_args()
    print(f"| network | kernels removed | mean moved | propagated covariance moved | ECE % full "
          f"/ pruned | OOD AUROC, entropy | OOD AUROC, predicted variance | MC accuracy % "
          f"| pruned MC vs full MC | full MC vs full MC again (S = {args.samples}) "
          f"| propagated vs MC |\n" + "|---" * 11 + "|")
    for path in args.models:
        print(row(path, args.samples), flush=True)


if __name__ == "__main__":
    main()
