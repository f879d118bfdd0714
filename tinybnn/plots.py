"""Figures. Each function draws from arrays, histories or reports and returns a matplotlib
``Figure``; nothing here computes what training needs, and training never imports this module.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``), not pyplot, so
drawing works without a display and does not change a notebook's backend; a Figure displays
itself in Jupyter. :func:`save` writes a PNG atomically.
"""

from matplotlib.figure import Figure

from .io import atomic_write

BAYES, VANILLA = "tab:blue", "tab:orange"


def save(fig, path, dpi=110):
    """Write ``fig`` as a PNG to ``path`` atomically; returns the path."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    return path


def learning_curves(history, title="Learning curves"):
    """Accuracy, data term and regulariser against epoch, from ``train.fit``'s history."""
    fig = Figure(figsize=(11, 3.4))
    ax_acc, ax_nll, ax_reg = fig.subplots(1, 3)
    epochs = [h["epoch"] for h in history]
    if "train_accuracy" in history[0]:
        ax_acc.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="train (running)")
    if "val_accuracy" in history[0]:
        ax_acc.plot(epochs, [h["val_accuracy"] for h in history], "s-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    ax_acc.legend()
    ax_nll.plot(epochs, [h["train_nll"] for h in history], "o-", label="train (running)")
    if "val_nll" in history[0]:
        ax_nll.plot(epochs, [h["val_nll"] for h in history], "s-", label="validation")
    ax_nll.set(xlabel="epoch", ylabel="data term per example",
               title="NLL (Bayesian) or cross-entropy (vanilla)")
    ax_nll.legend()
    ax_reg.plot(epochs, [h["train_reg"] for h in history], "o-", color="tab:green")
    ax_reg.set(xlabel="epoch", ylabel="regulariser (as added to the loss)",
               title="KL / regulariser")
    for ax in (ax_acc, ax_nll, ax_reg):
        ax.grid(alpha=0.3)
        ax.set_xticks(epochs if len(epochs) <= 12 else ax.get_xticks())
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def kernel_norms(bayes, vanilla=None, cutoff=None, removed=(), title="Kernel norms"):
    """Sorted kernel scores on a log axis, the Bayesian net's and the vanilla net's, with the
    cut-off of the selection rule drawn; removed Bayesian kernels are marked."""
    import numpy as np

    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    order = np.argsort(bayes)
    ranks = np.arange(1, len(bayes) + 1)
    ax.semilogy(ranks, np.asarray(bayes)[order], "o-", color=BAYES, ms=4, label="Bayesian (VDP)")
    gone = [i for i, k in enumerate(order) if k in set(removed)]
    if gone:
        ax.semilogy(ranks[gone], np.asarray(bayes)[order][gone], "x", color="red", ms=10,
                    mew=2, label=f"selected for removal ({len(gone)})")
    if vanilla is not None:
        ax.semilogy(np.arange(1, len(vanilla) + 1), np.sort(vanilla), "s-", color=VANILLA,
                    ms=4, label="vanilla (cross-entropy)")
    if cutoff is not None and np.isfinite(cutoff) and cutoff > 0:
        ax.axhline(cutoff, color="red", ls="--", lw=1, label=f"cut-off {cutoff:.2g}")
    ax.set(xlabel="kernel rank (sorted by norm)", ylabel="||M_k||_F (log scale)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def kernel_grid(images, removed=(), ids=None, title="Kernel means", limit=None, norms=None):
    """Each kernel mean (an image (n, h, w)) with its id and norm above it; removed kernels
    framed in red. ``ids`` labels kernels by their index in the original network; with
    ``limit``, only the ``limit`` lowest-norm kernels are drawn (``norms`` sets the order)."""
    import numpy as np

    norms = np.linalg.norm(images.reshape(len(images), -1), axis=1) if norms is None else norms
    show = np.argsort(norms, kind="stable")[:limit] if limit and len(images) > limit \
        else np.arange(len(images))
    N = len(show)
    cols = min(N, 10)
    rows = int(np.ceil(N / cols))
    fig = Figure(figsize=(1.1 * cols, 1.25 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    vmax = np.abs(images).max() or 1.0
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= N:
            ax.axis("off")
            continue
        k = show[i]
        ax.imshow(images[k], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        label = ids[k] if ids is not None else k
        ax.set_title(f"#{label} {norms[k]:.2g}", fontsize=7)
        if k in set(removed):
            for side in ax.spines.values():
                side.set_color("red")
                side.set_linewidth(2.5)
    shown = f"the {N} lowest-norm of {len(images)}; " if N < len(images) else ""
    fig.suptitle(f"{title}\n({shown}color: weight mean, shared scale; title: id and ||M_k||; "
                 f"red frame: removed)", fontsize=9)
    fig.tight_layout()
    return fig


def variance_histogram(s, title="Kernel variances"):
    """Histogram of log10 of the kernel variances s_k = softplus(rho_k)."""
    import numpy as np

    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    ax.hist(np.log10(s), bins=min(30, max(5, len(s) // 2)), color=BAYES, edgecolor="white")
    ax.set(xlabel="log10 s_k (kernel variance)", ylabel="number of kernels", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def stages(stage_rows, title="Self-compression, stage by stage"):
    """Test accuracy and parameter count against stage (stage 0 = the trained network)."""
    fig = Figure(figsize=(6.4, 4))
    ax = fig.subplots()
    x = [r["stage"] for r in stage_rows]
    ax.plot(x, [100 * r["test_accuracy"] for r in stage_rows], "o-", color=BAYES)
    ax.set(xlabel="stage", ylabel="test accuracy (%)", title=title)
    ax.set_xticks(x)
    ax2 = ax.twinx()
    ax2.plot(x, [r["n_parameters"]["total"] for r in stage_rows], "s--", color="tab:green")
    ax2.set_ylabel("parameters (means + variances + biases)", color="tab:green")
    for r in stage_rows:
        ax.annotate(f"{r['kernels']} k", (r["stage"], 100 * r["test_accuracy"]), fontsize=8,
                    textcoords="offset points", xytext=(4, 6))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def accuracy_vs_kernels(curves, title="Test accuracy against kernels kept"):
    """``curves``: {label: [(kernels, accuracy), ...]} drawn as lines with markers."""
    fig = Figure(figsize=(6.8, 4.4))
    ax = fig.subplots()
    styles = {"Bayesian, self-compression": ("o-", BAYES),
              "Bayesian, pruned by norm, no retraining": ("o:", "tab:cyan"),
              "vanilla, pruned by weight norm, no retraining": ("s:", VANILLA),
              "vanilla, retrained at each size": ("s-", "tab:red")}
    for label, points in curves.items():
        if not points:
            continue
        pts = sorted(points)
        style, color = styles.get(label, (".-", None))
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, color=color, label=label)
    ax.set(xlabel="conv kernels kept", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _by_setting(rows, value):
    """{(dataset, preset, bayesian): {N: [values over seeds]}}."""
    groups = {}
    for r in rows:
        key = (r["dataset"], r["preset"], r["bayesian"])
        groups.setdefault(key, {}).setdefault(r["kernels"], []).append(value(r))
    return groups


def _errorbars(ax, groups, scale=1.0):
    import numpy as np

    for (dataset, preset, bayesian), by_n in sorted(groups.items()):
        ns = sorted(by_n)
        mean = [scale * np.mean(by_n[n]) for n in ns]
        std = [scale * np.std(by_n[n]) for n in ns]
        ax.errorbar(ns, mean, yerr=std, marker="o" if bayesian else "s", capsize=3,
                    ls="-" if bayesian else "--",
                    label=f"{dataset}, {'Bayesian' if bayesian else 'vanilla'}, {preset}")


def sweep_accuracy(rows, title="Test accuracy against the number of kernels"):
    """Mean test accuracy over seeds (error bars: standard deviation) against N."""
    fig = Figure(figsize=(7, 4.4))
    ax = fig.subplots()
    _errorbars(ax, _by_setting(rows, lambda r: r["test_accuracy"]), scale=100)
    ax.set(xlabel="conv kernels N", ylabel="test accuracy (%)", title=title)
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sweep_zeros(rows, threshold, title="Near-zero kernels against the number of kernels"):
    """Mean number of kernels with ||M_k|| < threshold (error bars over seeds) against N."""
    fig = Figure(figsize=(7, 4.4))
    ax = fig.subplots()
    _errorbars(ax, _by_setting(rows, lambda r: r["near_zero_kernels"]))
    ax.set(xlabel="conv kernels N", ylabel=f"kernels with ||M_k|| < {threshold:g}",
           title=title)
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Uncertainty (tinybnn uncertainty): Bayesian against vanilla on the same axes
# ---------------------------------------------------------------------------------------------

_SUMMARY_LABELS = {"confidence": "1 - confidence (1 - max p)",
                   "predicted_variance": "log10 variance of the predicted class",
                   "trace": "log10 trace of the covariance", "entropy": "entropy of the mean"}


def _pair(results):
    """[(label, color, marker, result)] for the Bayesian and vanilla entries present."""
    out = []
    for key, label, color, marker in (("bayes", "Bayesian (VDP)", BAYES, "o"),
                                      ("vanilla", "vanilla", VANILLA, "s")):
        if results.get(key) is not None:
            out.append((label, color, marker, results[key]))
    return out


def noise_robustness(results, reference=None, title="Additive Gaussian noise"):
    """Accuracy and mean predictive variance against the noise std.

    results : {"bayes": r, "vanilla": r} from :func:`tinybnn.robustness.noise_robustness`;
    reference : optional {label: (stds, accuracies)} drawn as grey dashed lines (e.g. the
    accuracies the authors reported).
    """
    fig = Figure(figsize=(10.5, 3.9))
    ax_acc, ax_var = fig.subplots(1, 2)
    for label, color, marker, r in _pair(results):
        ax_acc.plot(r["std"], [100 * a for a in r["accuracy"]], marker + "-", color=color,
                    label=label)
        if r["mean_predictive_variance"][0] is not None:
            ax_var.plot(r["std"], r["mean_predictive_variance"], marker + "-", color=color,
                        label=label)
    for (label, (xs, ys)), style in zip((reference or {}).items(), ("^--", "v:")):
        ax_acc.plot(xs, ys, style, color="grey", lw=1, ms=5, label=label)
    clip = next((r.get("clip") for *_, r in _pair(results)), None)
    ax_acc.set(xlabel="noise standard deviation", ylabel="test accuracy (%)",
               title="Accuracy" + (" (inputs clipped to [0, 1])" if clip else ""))
    ax_var.set(xlabel="noise standard deviation", ylabel="mean of tr(S) / K",
               title="Mean predictive variance (Bayesian)")
    ax_var.set_yscale("log")
    for ax in (ax_acc, ax_var):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fgsm_robustness(results, reference=None, title="FGSM adversarial examples"):
    """Accuracy (untargeted: solid, targeted: dashed) and the targeted success rate against
    the step size eps, and the Bayesian network's mean predictive variance.

    results : {"untargeted": {"bayes": r, "vanilla": r}, "targeted": {...}} from
    :func:`tinybnn.robustness.fgsm`; reference : optional {label: (eps, accuracies)}.
    """
    fig = Figure(figsize=(14, 3.9))
    ax_acc, ax_succ, ax_var = fig.subplots(1, 3)
    for kind, style in (("untargeted", "-"), ("targeted", "--")):
        for label, color, marker, r in _pair(results.get(kind, {})):
            ax_acc.plot(r["epsilon"], [100 * a for a in r["accuracy"]], marker + style,
                        color=color, label=f"{label}, {kind}")
            if kind == "targeted":
                ax_succ.plot(r["epsilon"], [100 * a for a in r["success_rate"]], marker + style,
                             color=color, label=f"{label} (target: {r.get('target')})")
            if r["mean_predictive_variance"][0] is not None:
                ax_var.plot(r["epsilon"], r["mean_predictive_variance"], marker + style,
                            color=color, label=f"{label}, {kind}")
    for (label, (xs, ys)), style in zip((reference or {}).items(), ("^:", "v:")):
        ax_acc.plot(xs, ys, style, color="grey", lw=1, ms=5, label=label)
    ax_acc.set(xlabel="eps (max change of a pixel)", ylabel="test accuracy (%)",
               title="Accuracy under attack")
    ax_succ.set(xlabel="eps", ylabel="predicted = target (%)", title="Targeted success rate")
    ax_var.set(xlabel="eps", ylabel="mean of tr(S) / K", title="Mean predictive variance")
    ax_var.set_yscale("log")
    for ax in (ax_acc, ax_succ, ax_var):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def ood_histograms(results, in_name="in-distribution", out_name="out-of-distribution",
                   title="Out-of-distribution detection"):
    """One histogram per uncertainty score, in- against out-of-distribution, the AUROC in the
    legend; a row per network.

    results : {"bayes": r, "vanilla": r} from :func:`tinybnn.robustness.ood_detection`
    (``scores_in``, ``scores_out`` arrays and ``auroc``). Variances and traces are drawn on a
    log10 axis (they span orders of magnitude).
    """
    import numpy as np

    pairs = _pair(results)
    names = ["confidence", "entropy", "predicted_variance", "trace"]
    fig = Figure(figsize=(15, 3.3 * len(pairs) + 0.5))
    axes = np.atleast_2d(fig.subplots(len(pairs), len(names)))
    for row, (label, color, _, r) in zip(axes, pairs):
        for ax, name in zip(row, names):
            if name not in r["scores_in"]:
                ax.text(0.5, 0.5, f"{label}:\nno covariance", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
                ax.set_axis_off()
                continue
            a, b = np.asarray(r["scores_in"][name]), np.asarray(r["scores_out"][name])
            if name in ("predicted_variance", "trace"):
                tiny = np.finfo(float).tiny
                a, b = np.log10(np.maximum(a, tiny)), np.log10(np.maximum(b, tiny))
            bins = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()) + 1e-12, 40)
            ax.hist(a, bins=bins, alpha=0.6, color=color, label=in_name, density=True)
            ax.hist(b, bins=bins, alpha=0.6, color="tab:red", label=out_name, density=True)
            ax.set(xlabel=_SUMMARY_LABELS[name], ylabel="density",
                   title=f"{label}: {name.replace('_', ' ')}")
            ax.legend(fontsize=7, title=f"AUROC {r['auroc'][name]:.3f}", title_fontsize=7)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: larger score = more uncertain; AUROC = P(out scores above in)")
    fig.tight_layout()
    return fig


def reliability_diagram(results, title="Reliability diagram"):
    """Accuracy against mean confidence in each confidence bin, with the diagonal of perfect
    calibration, the ECE in the legend, and the number of images per bin below.

    results : {"bayes": c, "vanilla": c} from :func:`tinybnn.uncertainty.calibration`.
    """
    import numpy as np

    fig = Figure(figsize=(6.2, 6.4))
    ax, ax_n = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for label, color, marker, c in _pair(results):
        keep = [i for i, n in enumerate(c["count"]) if n > 0]
        conf = [c["confidence"][i] for i in keep]
        ax.plot(conf, [c["accuracy"][i] for i in keep], marker + "-", color=color,
                label=f"{label}: ECE {100 * c['ece']:.2f} %")
        edges = np.asarray(c["edges"])
        centers = (edges[:-1] + edges[1:]) / 2
        width = (edges[1] - edges[0]) * 0.4
        shift = -width / 2 if marker == "o" else width / 2
        ax_n.bar(centers + shift, c["count"], width=width, color=color, label=label)
    n_bins = next((c["n_bins"] for *_, c in _pair(results)), None)
    ax.set(ylabel="accuracy in the bin", title=f"{title} ({n_bins} equal-width bins)",
           xlim=(0, 1.01), ylim=(0, 1.01))
    ax_n.set(xlabel="confidence (max p)", ylabel="images")
    ax_n.set_yscale("log")
    for a in (ax, ax_n):
        a.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def mc_convergence(agreement, title="Monte Carlo predictive against propagated moments"):
    """Median ratio Monte Carlo / propagated of each summary, and the class agreement,
    against the number of weight samples S.

    agreement : :func:`tinybnn.uncertainty.mc_agreement` output.
    """
    rows = agreement["rows"]
    S = [r["samples"] for r in rows]
    fig = Figure(figsize=(10.5, 3.9))
    ax_r, ax_c = fig.subplots(1, 2)
    for name in ("confidence", "entropy", "predicted_variance", "trace"):
        key = f"{name}_median_ratio"
        if rows and rows[0].get(key) is not None:  # (one sample has zero variance: not drawn)
            ax_r.plot(S, [r[key] if r[key] and r[key] > 0 else float("nan") for r in rows], "o-",
                      label=name.replace("_", " "))
    ax_r.axhline(1.0, color="grey", ls=":")
    ax_r.set(xscale="log", yscale="log", xlabel="weight samples S",
             ylabel="median of MC / propagated", title="Summaries")
    ax_c.plot(S, [100 * r["class_agreement"] for r in rows], "o-", color=BAYES)
    ax_c.set(xscale="log", xlabel="weight samples S", ylabel="same predicted class (%)",
             title="Predicted class")
    from matplotlib.ticker import NullLocator

    for ax in (ax_r, ax_c):
        ax.set_xticks(S, [str(v) for v in S])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(alpha=0.3, which="both")
    ax_r.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def relu_variances(first_order, exact, monte_carlo, n_points=20000, seed=0,
                   title="ReLU output variances: propagated against Monte Carlo"):
    """Scatter of each unit's propagated ReLU output variance (first order, exact) against
    its Monte Carlo variance, log-log, with the diagonal; units the first-order rule gives zero
    variance are drawn at the bottom edge. A seeded random subset of ``n_points`` units."""
    import numpy as np

    v1, ve, vm = (np.asarray(a, float).ravel() for a in (first_order, exact, monte_carlo))
    pick = np.random.default_rng(seed).choice(vm.size, size=min(n_points, vm.size), replace=False)
    v1, ve, vm = v1[pick], ve[pick], vm[pick]
    keep = vm > 0
    lo = vm[keep].min()
    fig = Figure(figsize=(6.2, 5.4))
    ax = fig.subplots()
    ax.loglog(vm[keep], np.maximum(v1[keep], lo / 10), ".", ms=2, alpha=0.3, color=VANILLA,
              label=f"first order (zero variance drawn at {lo / 10:.1g})")
    ax.loglog(vm[keep], ve[keep], ".", ms=2, alpha=0.3, color=BAYES, label="exact")
    ax.plot([lo, vm.max()], [lo, vm.max()], ":", color="grey", label="equal")
    ax.set(xlabel="Monte Carlo variance", ylabel="propagated variance", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, markerscale=4)
    fig.tight_layout()
    return fig
