"""Training presets: a named regulariser with the schedule and initial variances that go with it.

=================  =================  ======  =====  =================  =========  ===================
name               regulariser        epochs  batch  Adam rate          rho init   source
=================  =================  ======  =====  =================  =========  ===================
``authors2019``    L1 + variance      10      1      1e-4, constant     U[-12,     the authors' 2019
                                                                        -2.2]      code (the paper's)
``authors_later``  L2 + variance,     20      100    1e-3 -> 1e-4       U[-12,     the authors' later
                   loss halved                                          -2.2]      code
``elbo``           KL / N_train       10      100    1e-3 -> 1e-4       U[-10, -9] the textbook ELBO
``tinybnn``        L1 + variance      4       50     3e-3 -> 1e-4       U[-10, -9] this library: the
                   (as authors2019)                                                2019 loss, a laptop
                                                                                   schedule
``elbo_beta``      KL / N_train,      12      50     1e-3 -> 1e-4       U[-10, -9] this library: the
                   beta-NLL, beta 1                                                ELBO with beta-NLL
=================  =================  ======  =====  =================  =========  ===================

The regularisers' formulas are in :mod:`tinybnn.losses`; the rate decays exponentially. ``rho``
is drawn uniformly from the range: U[-12, -2.2] gives variances s = softplus(rho) from 6e-6 to
0.1 (the authors'); U[-10, -9] gives s near 1e-4 for every unit.

Why ``tinybnn``: one image per update (the 2019 code, 550,000 updates in 10 epochs) is faithful
but far too slow in NumPy. With batches the Gaussian NLL learns slowly (it is a weighted squared
error on the softmax output, which saturates), and a wide variance initialisation makes units
with large initial variance learn last. Starting every variance small and using a larger rate
reaches about 98 % on MNIST in 4 epochs (the README gives the measured figures and commands).
Every value can be overridden by a run, and the run reports what it used.

Why ``elbo_beta``: with the plain Gaussian NLL a network can leave an example wrong and give it
a large predictive variance instead, which shrinks that example's gradient a thousandfold (see
beta-NLL in :mod:`tinybnn.losses`); VDP MLPs stall near 97 % training accuracy on MNIST that
way. Weighting each example by its variance (beta = 1), with the textbook ELBO and 12 epochs,
takes them past 97.5 % (the README gives the figures and commands). It is not the paper's loss.
"""

from dataclasses import asdict, dataclass

from .errors import ConfigError
from .losses import Objective


@dataclass(frozen=True)
class Preset:
    """A training recipe. ``final_lr`` None means a constant learning rate."""

    name: str
    regulariser: str
    epochs: int
    batch_size: int
    lr: float
    final_lr: float | None
    rho_init: tuple
    source: str
    nll_beta: float = 0.0
    last_variance: float | None = None  # the last layer's initial variance (None: from rho_init)

    def as_dict(self):
        return asdict(self)

    def objective(self, n_train, nll_beta=None, reg_scale=1.0):
        """The loss this preset trains with, for ``n_train`` training examples (the elbo's
        N_train); ``nll_beta`` None means the preset's; ``reg_scale`` multiplies the
        regulariser (an experiment's knob)."""
        beta = self.nll_beta if nll_beta is None else nll_beta
        return Objective(self.regulariser, n_train=n_train, nll_beta=beta, reg_scale=reg_scale)


AUTHORS_RHO = (-12.0, -2.2)
SMALL_RHO = (-10.0, -9.0)

PRESETS = {
    "authors2019": Preset("authors2019", "authors2019", 10, 1, 1e-4, None, AUTHORS_RHO,
                          "Dera et al. 2019 code: Adam 1e-4, one image per update, 10 epochs"),
    "authors_later": Preset("authors_later", "authors_later", 20, 100, 1e-3, 1e-4, AUTHORS_RHO,
                            "the authors' later code: batch 100, Adam 1e-3 decaying to 1e-4"),
    "elbo": Preset("elbo", "elbo", 10, 100, 1e-3, 1e-4, SMALL_RHO,
                   "textbook ELBO: KL(q || N(0, I)) / N_train per example"),
    "tinybnn": Preset("tinybnn", "authors2019", 4, 50, 3e-3, 1e-4, SMALL_RHO,
                      "tinybnn's laptop recipe: the 2019 regulariser, batch 50, Adam 3e-3 "
                      "decaying to 1e-4, small initial variances"),
    "authors2019_quick": Preset(
        "authors2019_quick", "authors2019", 2, 1, 1e-3, 1e-4, AUTHORS_RHO,
        "tinybnn's quick self-compression recipe: the 2019 loss and one image per update, with "
        "the last layer's variances started at 1 and Adam 1e-3 decaying to 1e-4, 2 epochs",
        last_variance=1.0),
    "elbo_beta": Preset("elbo_beta", "elbo", 12, 50, 1e-3, 1e-4, SMALL_RHO,
                        "tinybnn's recipe for VDP MLPs: the textbook ELBO with beta-NLL "
                        "(beta = 1), batch 50, Adam 1e-3 decaying to 1e-4, 12 epochs",
                        nll_beta=1.0),
}


def get(name):
    """The preset called ``name``; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def rho_range(text, preset):
    """'low,high' -> (low, high), or the preset's range for None/''; bad text is a ConfigError."""
    if text in (None, ""):
        return tuple(get(preset).rho_init)
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError:
        low = high = None
    if low is None or not low <= high:
        raise ConfigError(f"rho init must be 'low,high' with low <= high, found {text!r}")
    return low, high
