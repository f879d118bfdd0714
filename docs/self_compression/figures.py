"""Draw the figures and the tables of docs/SELF_COMPRESSION.md from the run folders it names.

    .venv/bin/python docs/self_compression/figures.py RUNS_DIR

RUNS_DIR holds the folders written by the commands of docs/SELF_COMPRESSION.md: ``tinybnn train
--out RUNS_DIR/<group>/<name>`` folders, each with a metrics.json with the history of every
epoch (the kernel norms, the norms of the FC blocks that read them, the kernel variances), and
``tinybnn compress --out RUNS_DIR/compress/<name>`` folders with their report.json. For each
train folder this writes ``<group>_<name>.png`` here (the three trajectories against epoch) and
prints one Markdown table row: what switched off when, the smallest norms at the end, the test
accuracy and the CPU time; then one row per compress folder: the kernels and test accuracy at
every accepted stage, against the vanilla twin pruned like it (and a copy of its
self_compression.png here as ``compress_<name>.png``). Nothing is trained or computed beyond
reading the files.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from tinybnn import plots
from tinybnn.units import NEAR_ZERO, switch_off_counts, trajectory

HERE = Path(__file__).resolve().parent


def row(folder):
    """The table row of one run folder, and its figure drawn beside this script."""
    m = json.loads((folder / "metrics.json").read_text())
    h = m["history"]
    layer = next(iter(h[0]["units"]))
    n = len(h[0]["units"][layer]["norms"])
    stage = [{"kernel_ids": list(range(n)), "history": h}]
    if "start_units" in m:  # before training (written since commit bb89892)
        stage[0]["start_units"] = m["start_units"]
    epochs, norms = trajectory(stage, layer)
    outgoing = trajectory(stage, layer, "outgoing_norms")[1]
    variances = (trajectory(stage, layer, "variances")[1]
                 if h[0]["units"][layer]["variances"] is not None else None)
    name = f"{folder.parent.name}_{folder.name}"
    o = m["options"]
    title = (f"{name}: {o['dataset']}, N = {n}, preset {o['preset']}, batch {o['batch_size']}, "
             f"lr {o['lr']:g}{'' if o['final_lr'] is None else ' -> %g' % o['final_lr']}, "
             f"seed {o['seed']}")
    plots.save(plots.unit_history(epochs, norms, outgoing, variances, NEAR_ZERO, title),
               HERE / f"{name}.png")
    final = np.sort(norms[-1])
    counts = switch_off_counts(h, layer)
    cpu = sum(r.get("cpu_seconds", r["seconds"]) for r in h)
    return (f"| {name} | {h[-1]['steps']} | {','.join(map(str, counts))} | "
            f"{', '.join(f'{v:.1e}' for v in final[:5])} | {100 * m['test_accuracy']:.2f} % | "
            f"{cpu:.0f} s |")


def compress_row(folder):
    """The table row of one ``tinybnn compress`` folder: the kernels and test accuracy of every
    accepted stage, Bayesian and its vanilla twin pruned and retrained like it."""
    r = json.loads((folder / "report.json").read_text())
    shutil.copyfile(folder / "self_compression.png", HERE / f"compress_{folder.name}.png")
    kept = [s for s in r["stages"] if s["accepted"]]
    bayes = " -> ".join(f"{s['kernels']} ({100 * s['test_accuracy']:.2f})" for s in kept)
    vanilla = " -> ".join(f"{s['vanilla']['kernels']} ({100 * s['vanilla']['test_accuracy']:.2f})"
                          for s in kept if "vanilla" in s)
    moved = max((s["change_on_removal"]["max_mean_change"] for s in kept[1:]), default=None)
    o = r["options"]
    final = kept[-1]["kernels"]
    untrained = " / ".join(_accuracy_at(r["baselines"].get(f"{kind}, pruned by norm, no retraining"),
                                        final) for kind in ("Bayesian", "vanilla"))
    return (f"| {folder.name} | {o['dataset']} | {r['start_kernels']} | {o['retrain']} | {bayes} "
            f"| {'-' if moved is None else f'{moved:.0e}'} | {vanilla or '-'} | {untrained} "
            f"| {len(r['stages']) - 1} | {r['seconds']:.0f} s |")


def _accuracy_at(curve, kernels):
    """The test accuracy (%) of a baseline curve [[kernels, accuracy], ...] at ``kernels``."""
    hit = [a for k, a in (curve or []) if k == kernels]
    return f"{100 * hit[0]:.2f}" if hit else "-"


def main(runs):
    print("| run | updates | below 1e-3 after each epoch | five smallest norms at the end "
          "| test | CPU time |\n|---|---|---|---|---|---|")
    for metrics in sorted(Path(runs).glob("*/*/metrics.json")):
        print(row(metrics.parent))
    print("\n| run | data | N0 | retraining | Bayesian: kernels (test %) at each accepted stage "
          "| largest mean change on removal | vanilla twin pruned like it "
          "| at the final size without retraining: Bayesian / vanilla (test %) | stages run "
          "| time |\n|---|---|---|---|---|---|---|---|---|---|")
    for report in sorted(Path(runs).glob("compress/*/report.json")):
        print(compress_row(report.parent))


if __name__ == "__main__":
    main(sys.argv[1])
