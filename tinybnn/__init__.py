"""tinybnn: self-compression in Bayesian neural networks, by variational density propagation.

Each module is meant to be read; the README gives a reading order. Importing ``tinybnn``
itself is cheap on purpose (no numba compilation, no matplotlib): import the module you need,
for example ``from tinybnn import data``.
"""

__version__ = "0.1.0.dev0"
