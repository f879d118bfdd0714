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
               title="Regulariser (the KL term, for the elbo preset)")
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


CURVE_STYLES = {"Bayesian, self-compression": ("o-", BAYES),
                "Bayesian, pruned by norm, no retraining": ("o:", "tab:cyan"),
                "vanilla, pruned by norm, no retraining": ("s:", VANILLA),
                "vanilla, pruned and retrained like the Bayesian": ("s-", VANILLA),
                "vanilla, retrained from scratch at each size": ("s--", "tab:red")}


OTHER_COLORS = ("tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def _accuracy_curves(ax, curves):
    """``curves``: {label: [(kernels, accuracy), ...]} drawn on ``ax`` as lines with markers;
    a label without a style of its own takes one of OTHER_COLORS (never the Bayesian blue)."""
    others = iter(OTHER_COLORS * 4)
    for label, points in curves.items():
        if not points:
            continue
        pts = sorted(points)
        style, color = CURVE_STYLES.get(label) or (".-", next(others))
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, color=color, label=label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def accuracy_vs_kernels(curves, title="Test accuracy against kernels kept"):
    """``curves``: {label: [(kernels, accuracy), ...]} drawn as lines with markers."""
    fig = Figure(figsize=(6.8, 4.4))
    ax = fig.subplots()
    _accuracy_curves(ax, curves)
    ax.set(xlabel="conv kernels kept", ylabel="test accuracy (%)", title=title)
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


def _last_finite(col):
    """The last value of ``col`` that is not NaN (a removed kernel's last norm), or NaN."""
    import numpy as np

    finite = col[np.isfinite(col)]
    return finite[-1] if len(finite) else np.nan


def kernel_trajectories(ax, epochs, norms, threshold, vanilla=None, vanilla_at=None):
    """Draw on ``ax`` every kernel's norm against epoch (log axis; a line ends where its kernel
    was removed): in blue the kernels whose last norm is below ``threshold`` (switched off, or
    removed while they were), in light blue those that went below it and came back, the others
    grey; the threshold dashed; ``vanilla`` (its kernel norms after training) as orange marks
    at epoch ``vanilla_at``."""
    import numpy as np

    if len(epochs) == 0:
        ax.text(0.5, 0.5, "no training in this run\n(it started from a trained network)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    off = np.array([_last_finite(col) < threshold for col in norms.T])
    back = np.array([bool(np.any(col < threshold)) for col in norms.T]) & ~off  # NaN: False
    kind = np.where(off, 2, np.where(back, 1, 0))
    style = {0: ("0.65", 0.8), 1: ("tab:cyan", 0.9), 2: (BAYES, 1.2)}
    for k in np.argsort(kind, kind="stable"):  # grey lines first, blue on top
        color, lw = style[kind[k]]
        ax.semilogy(epochs, norms[:, k], "-", lw=lw, color=color, alpha=0.9)
    ax.axhline(threshold, color="red", ls="--", lw=1)
    ax.text(epochs[0], threshold * 1.3, f"{threshold:g}", color="red", fontsize=8)
    if vanilla is not None:
        ax.semilogy(np.full(len(vanilla), vanilla_at), vanilla, "_", color=VANILLA, ms=12,
                    mew=2, label="vanilla twin after training")
        ax.legend(fontsize=8, loc="lower left")
    ax.set(xlabel="epoch", ylabel="||M_k||_F (log scale)",
           title=f"{int(off.sum())} of {norms.shape[1]} kernels end below {threshold:g}"
                 f"{f' ({int(back.sum())} more went below and came back)' if back.any() else ''}")
    ax.grid(alpha=0.3, which="both")


def self_compression(epochs, norms, curves, threshold, vanilla=None, vanilla_at=None):
    """The picture of self-compression: every kernel's norm through training (left) and test
    accuracy against the kernels kept (right), Bayesian against vanilla."""
    fig = Figure(figsize=(12, 4.4))
    left, right = fig.subplots(1, 2)
    kernel_trajectories(left, epochs, norms, threshold, vanilla, vanilla_at)
    _accuracy_curves(right, curves)
    right.set(xlabel="conv kernels kept", ylabel="test accuracy (%)",
              title="Removing the smallest-norm kernels")
    fig.tight_layout()
    return fig


def trajectories(epochs, norms, threshold, title):
    """Every kernel's norm against epoch (one training: :func:`kernel_trajectories`)."""
    fig = Figure(figsize=(6.8, 4.4))
    ax = fig.subplots()
    kernel_trajectories(ax, epochs, norms, threshold)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def unit_history(epochs, norms, outgoing, variances, threshold, title):
    """Three panels against epoch, one line per kernel, log axes: its mean's norm, the norm of
    the next layer's block that reads it, and its variance; in blue the kernels whose norm ends
    below ``threshold`` (:func:`kernel_trajectories`). (E,) epochs and (E, N) arrays
    (tinybnn.units.trajectory)."""
    import numpy as np

    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    kernel_trajectories(axes[0], epochs, norms, threshold)
    off = np.array([_last_finite(col) < threshold for col in norms.T])
    for ax, values, what in ((axes[1], outgoing, "||block of the next layer||_F"),
                             (axes[2], variances, "kernel variance s_k")):
        if values is None:
            ax.set_axis_off()
            continue
        for k in np.argsort(off, kind="stable"):
            ax.semilogy(epochs, values[:, k], "-", lw=1.2 if off[k] else 0.8,
                        color=BAYES if off[k] else "0.65", alpha=0.9)
        ax.set(xlabel="epoch", ylabel=f"{what} (log scale)", title=what)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
