"""Figures of ``tinybnn uncertainty``: the Bayesian network against the vanilla one on the same
axes (noise, FGSM, out-of-distribution, calibration), and the Monte Carlo checks of the
propagated moments. Like :mod:`tinybnn.plots` (whose colours and :func:`~tinybnn.plots.save`
these share), every function returns a matplotlib ``Figure``.
"""

from matplotlib.figure import Figure

from .plots import BAYES, VANILLA

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

    agreement : :func:`tinybnn.monte_carlo.mc_agreement` output.
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
