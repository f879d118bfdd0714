"""Training presets: a named regulariser with the schedule and initial variances that go with it.

=====================  ===============  ======  =====  ============  ==========  ===============
name                   regulariser      epochs  batch  Adam rate     rho init    source
=====================  ===============  ======  =====  ============  ==========  ===============
``authors2019``        L1 + variance    10      1      1e-4,         U[-12,      the authors'
                                                       constant      -2.2]       2019 code (the
                                                                                 paper's)
``authors2019_quick``  L1 + variance    2       1      1e-3 -> 1e-4  U[-12,      this library:
                       (as 2019)                                     -2.2], last the 2019 recipe
                                                                     layer s = 1 in 2 epochs
``authors_later``      L2 + variance,   20      100    1e-3 -> 1e-4  U[-12,      the authors'
                       loss halved                                   -2.2]       later code
``elbo``               KL / N_train     10      100    1e-3 -> 1e-4  U[-10, -9]  the textbook
                                                                                 ELBO
``tinybnn``            L1 + variance    4       50     3e-3 -> 1e-4  U[-10, -9]  this library: a
                       (as 2019)                                                 batched schedule
``elbo_beta``          KL / N_train,    12      50     1e-3 -> 1e-4  U[-10, -9]  this library: the
                       beta-NLL, beta 1                                          ELBO, beta-NLL
=====================  ===============  ======  =====  ============  ==========  ===============

The regularisers' formulas are in :mod:`tinybnn.losses`; the rate decays exponentially. ``rho``
is drawn uniformly from the range: U[-12, -2.2] gives variances s = softplus(rho) from 6e-6 to
0.1 (the authors'); U[-10, -9] gives s near 1e-4 for every unit.

``authors2019`` makes 550,000 one-image updates (10 epochs of 55,000 images). Measured here: a
one-image step of the paper's CNN (N = 32, float64) with this loss takes 1.64 ms, 3.0x faster
than the PyTorch reference's 4.90 ms measured beside it (2026-12-01; with the elbo 1.35-1.92 ms
as the machine's speed drifted, 3.0-3.4x; benchmarks/README.md), so the recipe takes 12-13
minutes of one core
(752 and 723 s of CPU time for seeds 0 and 1, with the other core busy; docs/SELF_COMPRESSION.md),
and it switches kernels off in tinybnn: 5 and 2 of 32 below 1e-3 after 10 epochs, none before
epoch 5. ``authors2019_quick`` (110,000 updates) takes 133-142 s of one core.

Why ``authors2019_quick``: the same loss and one image per update, but Adam 1e-3 decaying to
1e-4 over 2 epochs (110,000 updates, about 2 minutes of one core). What switches kernels off is
the number of Adam updates at a rate that lets the last layer's variances climb to the
variance penalty's minimum (s = 1) and the L1 penalty carry the unused means to zero; the
authors' 1e-4 needs 5 epochs for the first, this rate less than one. The last layer's variances
start at 1 (``last_variance``): where they end up anyway (the ablation without it switched off
as many kernels). 2-9 of 32 kernels end below 1e-3 (3 seeds), at 97.5-97.7 % test accuracy.

Why ``tinybnn``: batches of 50 and a larger rate reach about 98 % on MNIST in 4 epochs, but that
is 4,400 updates: too few for any kernel to switch off (docs/SELF_COMPRESSION.md). With batches
the Gaussian NLL learns slowly (it is a weighted squared error on the softmax output, which
saturates), and a wide variance initialisation makes units with large initial variance learn
last: starting every variance small helps. Every value can be overridden by a run, and the run
reports what it used.

Why ``elbo_beta``: with the plain Gaussian NLL a network can leave an example wrong and give it
a large predictive variance instead, which shrinks that example's gradient a thousandfold (see
beta-NLL in :mod:`tinybnn.losses`); VDP MLPs stall near 97 % training accuracy on MNIST that
way. Weighting each example by its variance (beta = 1), with the textbook ELBO and 12 epochs,
takes them past 97.5 % (the README gives the figures and commands). It is not the paper's loss.
"""

import math
from dataclasses import asdict, dataclass, replace

from .errors import ConfigError
from .losses import Objective


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained: its loss, its schedule and its initial variances. A preset is
    a named TrainConfig; :func:`resolve` makes one from a preset and a run's overrides.

    name, source   : the preset it came from, and where that recipe comes from
    regulariser    : "authors2019", "authors_later" or "elbo" (tinybnn.losses)
    epochs, batch_size, lr, final_lr : Adam's schedule (final_lr None: a constant rate; else
                     an exponential decay to it over the run)
    rho_init       : (low, high): every rho drawn from U[low, high] at initialisation
    nll_beta       : beta of the beta-NLL data term (0: the plain Gaussian NLL, the paper's)
    last_variance  : the initial variance of every unit of the last weight layer (None: drawn
                     from rho_init like the others; see tinybnn.architectures.start_last_layer_at)
    reg_scale      : multiplies the regulariser (1: the formula; an ablation knob)
    rho_rate       : the rho parameters' learning rate as a multiple of the means'
    """

    name: str
    regulariser: str
    epochs: int
    batch_size: int
    lr: float
    final_lr: float | None
    rho_init: tuple
    source: str
    nll_beta: float = 0.0
    last_variance: float | None = None
    reg_scale: float = 1.0
    rho_rate: float = 1.0

    def as_dict(self):
        return asdict(self)

    def objective(self, n_train, nll_beta=None, reg_scale=None):
        """The loss this config trains with, for ``n_train`` training examples (the elbo's
        N_train); ``nll_beta`` and ``reg_scale`` None mean the config's."""
        beta = self.nll_beta if nll_beta is None else nll_beta
        scale = self.reg_scale if reg_scale is None else reg_scale
        return Objective(self.regulariser, n_train=n_train, nll_beta=beta, reg_scale=scale)

    def fit_kwargs(self, n_train, *, seed, epochs=None, progress=False):
        """The keyword arguments of :func:`tinybnn.train.fit` for this config (``epochs``
        None: the config's). Training of fewer than 5 epochs records the kernels 4 times an
        epoch, so that their trajectories have points to draw."""
        epochs = epochs or self.epochs
        return dict(objective=self.objective(n_train), epochs=epochs,
                    batch_size=self.batch_size, lr=self.lr, final_lr=self.final_lr,
                    rate_scale={"rho": self.rho_rate}, seed=seed, progress=progress,
                    snapshots=4 if epochs < 5 else 1)


Preset = TrainConfig  # the name of the presets' class before TrainConfig


def resolve(name, **overrides):
    """The preset ``name`` with every override that is not None put in, checked: a new
    TrainConfig. ``last_variance=0`` means "drawn like the others" (None), so that a command
    line can ask for it."""
    config = get(name)
    unknown = set(overrides) - set(config.as_dict())
    if unknown:
        raise ConfigError(f"unknown training settings {sorted(unknown)}; known: "
                          f"{sorted(config.as_dict())}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("last_variance") == 0:
        given["last_variance"] = None
        config = replace(config, last_variance=None)
    if "rho_init" in given:
        given["rho_init"] = rho_range(given["rho_init"], name)
    config = replace(config, **given)
    check(config)
    return config


def check(c):
    """Raise a ConfigError naming the first impossible setting of TrainConfig ``c``."""
    for what, ok, found in (
            ("epochs must be an integer >= 1", isinstance(c.epochs, int) and c.epochs >= 1,
             c.epochs),
            ("batch size must be an integer >= 1",
             isinstance(c.batch_size, int) and c.batch_size >= 1, c.batch_size),
            ("the learning rate must be a positive number", c.lr > 0 and math.isfinite(c.lr),
             c.lr),
            ("the final learning rate must be a positive number",
             c.final_lr is None or (c.final_lr > 0 and math.isfinite(c.final_lr)), c.final_lr),
            ("nll beta must lie in [0, 1]", 0 <= c.nll_beta <= 1, c.nll_beta),
            ("last variance must be a positive variance",
             c.last_variance is None or c.last_variance > 0, c.last_variance),
            ("reg scale must be a number >= 0", c.reg_scale >= 0, c.reg_scale),
            ("rho rate must be a positive number", c.rho_rate > 0, c.rho_rate)):
        if not ok:
            raise ConfigError(f"{what}, found {found!r}")


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
    """'low,high' (or a pair) -> (low, high), or the preset's range for None/''; bad text is a
    ConfigError."""
    if text in (None, ""):
        return tuple(get(preset).rho_init)
    try:
        parts = str(text).split(",") if isinstance(text, str) else list(text)
        low, high = (float(v) for v in parts)
    except ValueError:
        low = high = None
    if low is None or not low <= high:
        raise ConfigError(f"rho init must be 'low,high' with low <= high, found {text!r}")
    return low, high
