"""Training presets: a named regulariser with the optimiser schedule that went with it.

=================  ==================  =====  ======  ===================  ===================
name               regulariser         epochs batch   learning rate        source
=================  ==================  =====  ======  ===================  ===================
``authors2019``    L1 + variance       10     1       Adam 1e-4, constant  the authors' 2019
                   (losses.py)                                             code (the paper's)
``authors_later``  L2 + variance,      20     100     Adam 1e-3 -> 1e-4    the authors' later
                   loss halved                        (exponential)        code
``elbo``           KL / N_train        10     100     Adam 1e-3 -> 1e-4    the textbook ELBO
=================  ==================  =====  ======  ===================  ===================

The exact formulas are in :mod:`tinybnn.losses`. The epochs, batch size and learning rates are
defaults: a run may override each (and reports what it used). One image per update, as in the
2019 code, is faithful but slow in NumPy (see the README for measured times), so the command
line lets you pass ``--batch-size``.
"""

from dataclasses import asdict, dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """A training recipe. ``final_lr`` None means a constant learning rate."""

    name: str
    regulariser: str
    epochs: int
    batch_size: int
    lr: float
    final_lr: float | None
    source: str

    def as_dict(self):
        return asdict(self)


PRESETS = {
    "authors2019": Preset("authors2019", "authors2019", 10, 1, 1e-4, None,
                          "Dera et al. 2019 code: Adam 1e-4, one image per update, 10 epochs"),
    "authors_later": Preset("authors_later", "authors_later", 20, 100, 1e-3, 1e-4,
                            "the authors' later code: batch 100, Adam 1e-3 decaying to 1e-4"),
    "elbo": Preset("elbo", "elbo", 10, 100, 1e-3, 1e-4,
                   "textbook ELBO: KL(q || N(0, I)) / N_train per example"),
}


def get(name):
    """The preset called ``name``; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
