"""What every layer shares: parameters, gradients, and dispatch on the covariance structure.

A layer's contract (docs/NOTATION.md):

- ``forward(x) -> y`` takes a structure from :mod:`tinybnn.gaussian`, picks the rule for its
  type from ``self.rules`` (or, failing that, for the class it derives from: a ``Projected`` is
  a ``Full``; a structure the layer cannot take is a StructureError naming both), and stores
  what ``backward`` needs in ``self.saved``, overwriting the previous call's.
- ``backward(dy) -> dx`` takes the gradient with respect to ``y`` (the same structure as ``y``),
  fills ``self.grads`` (keyed like ``self.params``, summed over the batch) and returns the
  gradient with respect to ``x``. When ``self.input_grad`` is False the input gradient is not
  computed and ``None`` is returned (the first layer of a network during training).
"""

import numpy as np

from ..errors import ShapeError, StructureError
from ..functions import softplus
from ..gaussian import GRAD_TYPE, check_fields, describe


class Layer:
    """Base class. Subclasses set ``self.rules = {StructureType: (forward_fn, backward_fn)}``,
    usually with :meth:`rules_for`."""

    def __init__(self):
        self.params = {}  # name -> array, e.g. {"M": (D, K), "rho": (K,), "b": (K,)}
        self.grads = {}  # same keys and shapes, filled by backward
        self.rules = {}
        self.saved = None  # what the last forward stored for backward
        self.input_grad = True

    @property
    def bayesian(self):
        """True if the layer has variance parameters."""
        return "rho" in self.params

    @property
    def s(self):
        """The variances softplus(rho), one per kernel or unit."""
        return softplus(self.params["rho"])

    def forward(self, x):
        # the rule for the structure's own type, else for the nearest class it derives from
        # (a Projected is a Full: a layer without a Projected rule reads its dense ``cov``)
        rule = next((self.rules[t] for t in type(x).__mro__ if t in self.rules), None)
        if rule is None:
            takes = ", ".join(t.__name__ for t in self.rules)
            raise StructureError(f"{type(self).__name__} takes {takes}; found {describe(x)}")
        forward_fn, backward_fn = rule
        dtype = next(iter(self.params.values())).dtype if self.params else x.mean.dtype
        if x.mean.dtype != dtype:
            raise ShapeError(
                f"{type(self).__name__}: expected {dtype} input (the layer's dtype), "
                f"found {x.mean.dtype}"
            )
        check_fields(x)
        y, saved = forward_fn(x)
        self.saved = (backward_fn, type(y), saved)
        return y

    def backward(self, dy):
        if self.saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        backward_fn, out_type, saved = self.saved
        if type(dy) not in GRAD_TYPE[out_type]:
            expected = " or ".join(t.__name__ for t in GRAD_TYPE[out_type])
            raise StructureError(
                f"{type(self).__name__}.backward expected a {expected} (the "
                f"gradient of its {out_type.__name__} output), found {type(dy).__name__}"
            )
        return backward_fn(dy, saved)

    def zero_grads(self):
        for k, v in self.params.items():
            self.grads[k] = np.zeros_like(v)

    def astype(self, dtype):
        """Convert the parameters to ``dtype`` in place (float32 training); returns self."""
        for k in self.params:
            self.params[k] = self.params[k].astype(dtype)
        self.zero_grads()
        return self

    def rules_for(self, *structures):
        """The rules table for the methods named after each structure: ``Point`` gives
        ``{Point: (self._forward_point, self._backward_point)}``, ``FlatFactored`` the methods
        ``_forward_flat_factored`` and ``_backward_flat_factored``. A pair ``(structure, name)``
        names the methods instead: ``(FlatFactored, "factored")`` shares Factored's rule."""
        rules = {}
        for item in structures:
            structure, name = item if isinstance(item, tuple) else (item, _snake(item.__name__))
            rules[structure] = (getattr(self, f"_forward_{name}"),
                                getattr(self, f"_backward_{name}"))
        return rules

    def spec(self):
        """A JSON-able description from which the layer can be rebuilt (without parameters):
        here its class name, which is all a layer without parameters or options needs."""
        return {"type": type(self).__name__}


def _snake(name):
    """"FlatFactored" -> "flat_factored"."""
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def truncated_normal(rng, shape, std, dtype):
    """N(0, std^2) samples redrawn until within two standard deviations (as the authors' code)."""
    out = rng.normal(0.0, std, size=shape)
    bad = np.abs(out) > 2 * std
    while bad.any():
        out[bad] = rng.normal(0.0, std, size=int(bad.sum()))
        bad = np.abs(out) > 2 * std
    return out.astype(dtype)


def initial_rho(rng, shape, rho_range, dtype):
    """rho ~ U[low, high]; the authors' code used U[-12, -2.2], i.e. s in [6e-6, 0.105]."""
    low, high = rho_range
    if not low <= high:
        raise ValueError(f"rho_range must be (low, high) with low <= high, found {rho_range}")
    return rng.uniform(low, high, size=shape).astype(dtype)
