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
