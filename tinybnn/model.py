"""Networks: a Sequential container, its checked construction from arrays, and the one function
that returns a batch's loss and the gradient of every parameter (the builders of the paper's CNN
and of MLPs are in :mod:`tinybnn.architectures`).

Parameter names are ``"<layer>.<param>"``. The paper's CNN
(:func:`tinybnn.architectures.paper_cnn`)::

    name        shape            meaning
    conv.M      (N, C, r, r)     kernel means (im2col order (c, i, j) = conv.M.reshape(N, -1))
    conv.rho    (N,)             kernel variances softplus(rho)            (Bayesian only)
    fc.M        (N L, K)         weight means; rows k L .. (k+1) L - 1 read channel k's pooled
                                 map flattened row-major (channel-major flatten, L = H W)
    fc.rho      (K,)             unit variances softplus(rho)               (Bayesian only)
    fc.b        (K,)             bias

An MLP (:func:`tinybnn.architectures.mlp`) has ``fc1.M`` (D, H1), ``fc1.rho``, ``fc1.b``,
``fc2.M`` (H1, H2), ...
Build a network from your own arrays, checked, with :func:`from_arrays`
(``from_arrays(paper_cnn(32), {"conv.M": ..., ...})``); or set one parameter in place with
``model.params["fc.M"][...] = W`` (unchecked).
"""

import dataclasses
from collections.abc import Mapping

import numpy as np

from .errors import ConfigError, ShapeError
from .gaussian import STRUCTURES, Point, check_finite
from .kernels import threads
from .layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, ReLUExact, Softmax
from .losses import Objective, cross_entropy, gaussian_nll, one_hot, squared_error

LAYER_TYPES = {cls.__name__: cls for cls in (Linear, Conv2d, ReLU, ReLUExact, MaxPool2d,
                                              Flatten, Softmax)}
TASKS = ("classification", "regression")


class Sequential:
    """Layers applied in order; ``forward`` and ``backward`` chain theirs.

    layers : list of (name, Layer);  task : "classification" or "regression";
    input_shape : the shape of one example, e.g. (1, 28, 28) or (784,).

    ``blas_threads``: how many threads BLAS may use during ``forward`` and ``backward``; 1 for a
    network with a ``Conv2d`` (whose passes alternate BLAS products and numba's parallel loops,
    which fight over the cores otherwise: :mod:`tinybnn.kernels.threads`), None (BLAS's own default)
    for the others. Set it to change that.
    """

    def __init__(self, layers, *, task="classification", input_shape):
        if task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, found {task!r}")
        names = [n for n, _ in layers]
        if len(set(names)) != len(names):
            raise ConfigError(f"layer names must be unique, found {names}")
        self.layers, self.task, self.input_shape = list(layers), task, tuple(input_shape)
        self.blas_threads = 1 if any(isinstance(layer, Conv2d) for _, layer in layers) else None

    # -- parameters -------------------------------------------------------------------------
    @property
    def params(self):
        """{"layer.param": array}; the arrays are the layers' own, so in-place edits stick."""
        return {f"{n}.{k}": v for n, layer in self.layers for k, v in layer.params.items()}

    @property
    def grads(self):
        """{"layer.param": gradient} from the last backward pass (summed over the batch)."""
        return {f"{n}.{k}": v for n, layer in self.layers for k, v in layer.grads.items()}

    @property
    def bayesian(self):
        return any(layer.bayesian for _, layer in self.layers)

    @property
    def bayesian_layers(self):
        return [layer for _, layer in self.layers if layer.bayesian]

    @property
    def named_bayesian_layers(self):
        """{name: layer} of the Bayesian layers, in order (what the regularisers key by)."""
        return {name: layer for name, layer in self.layers if layer.bayesian}

    @property
    def dtype(self):
        return next(iter(self.params.values())).dtype

    def __getitem__(self, name):
        return dict(self.layers)[name]

    def n_parameters(self):
        """Counts of numbers by kind: means (M), variances (rho) and biases (b)."""
        counts = {"means": 0, "variances": 0, "biases": 0}
        kind = {"M": "means", "rho": "variances", "b": "biases"}
        for _, layer in self.layers:
            for k, v in layer.params.items():
                counts[kind[k]] += v.size
        counts["total"] = sum(counts.values())
        return counts

    def astype(self, dtype):
        """Convert every parameter to float32 or float64 in place; returns self."""
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be float32 or float64, found {dtype}")
        for _, layer in self.layers:
            layer.astype(dtype)
        return self

    # -- forward / backward -------------------------------------------------------------------
    def check_input(self, x):
        """Validate a raw input array: shape (B, *input_shape), the model's dtype, finite."""
        if not isinstance(x, np.ndarray):
            raise ShapeError(f"input must be a numpy array, found {type(x).__name__}")
        if x.ndim != 1 + len(self.input_shape) or x.shape[1:] != self.input_shape or x.shape[0] < 1:
            raise ShapeError(f"input must have shape (B, {', '.join(map(str, self.input_shape))}),"
                             f" found {x.shape}")
        if x.dtype != self.dtype:
            raise ShapeError(f"input must be {self.dtype} (the model's dtype), found {x.dtype}; "
                             f"convert with x.astype(np.{self.dtype})")
        check_finite("input", x)

    def forward(self, x, *, input_grad=False):
        """Propagate a batch: x an array (B, *input_shape) or a structure -> output structure.

        ``input_grad=True`` makes ``backward`` return the gradient with respect to the input.
        Otherwise a layer computes the gradient with respect to its input only if a layer
        before it has parameters (an MLP's first Linear after a Flatten does not: that product,
        as large as its weight gradient, would be thrown away).
        """
        if not isinstance(x, STRUCTURES):
            self.check_input(x)
            x = Point(x)
        with threads.blas_limit(self.blas_threads):
            for _, layer in self.layers:
                layer.input_grad = input_grad
                x = layer.forward(x)
                input_grad = input_grad or bool(layer.params)
        return x

    def backward(self, dy):
        """Chain the layers' backward passes; returns the input gradient (or None). It stops at
        the first layer that returns None: no layer before it has parameters (see forward)."""
        with threads.blas_limit(self.blas_threads):
            for _, layer in reversed(self.layers):
                dy = layer.backward(dy)
                if dy is None:
                    break
        return dy

    # -- rebuild ----------------------------------------------------------------------------------
    def spec(self):
        """A JSON-able description of the architecture (no parameter values)."""
        return {"task": self.task, "input_shape": list(self.input_shape),
                "layers": [[n, layer.spec()] for n, layer in self.layers]}

    @classmethod
    def from_spec(cls, spec, *, rng=None, dtype=np.float64):
        """Build a freshly initialised network from :meth:`spec` output."""
        rng = np.random.default_rng(0) if rng is None else rng
        layers = []
        for name, ls in spec["layers"]:
            ls = dict(ls)
            kind = ls.pop("type")
            if kind not in LAYER_TYPES:
                raise ConfigError(f"unknown layer type {kind!r}; known: {sorted(LAYER_TYPES)}")
            cls_ = LAYER_TYPES[kind]
            if cls_ in (Linear, Conv2d):
                layers.append((name, cls_(*_positional(kind, ls), rng=rng, dtype=dtype, **ls)))
            else:
                layers.append((name, cls_(**ls)))
        return cls(layers, task=spec["task"], input_shape=spec["input_shape"])


def _positional(kind, ls):
    keys = ("d_in", "d_out") if kind == "Linear" else ("c_in", "n_kernels", "kernel_size")
    return [ls.pop(k) for k in keys]


# ---------------------------------------------------------------------------------------------
# a network from named arrays
# ---------------------------------------------------------------------------------------------


def from_arrays(spec_or_model, arrays):
    """A new network with the architecture of ``spec_or_model`` and the parameters ``arrays``.

    spec_or_model : a :class:`Sequential` (only its architecture is read, e.g. ``paper_cnn(32)``)
        or its :meth:`Sequential.spec` dict.
    arrays : {"layer.param": numpy array} (a dict, or any mapping such as ``np.load(path)``):
        exactly the network's parameter names (the table at the top of this module), each array
        of that parameter's shape (``conv.M`` (N, C, r, r), ``fc.M`` (N L, K) channel-major,
        ``conv.rho`` (N,), ``fc.rho`` (K,), ``fc.b`` (K,)), all float32 or all float64 (the
        network takes that dtype), all finite.

    Variance parameters are **rho, not variances**: a kernel's or unit's variance is
    ``softplus(rho) = log(1 + e^rho)``; to set variances ``s`` pass
    ``tinybnn.functions.softplus_inverse(s)``.

    The arrays are copied: neither they nor a model passed in change. Raises ConfigError for a
    spec that cannot be built or for wrong names (all missing and unexpected ones named),
    ShapeError for a non-array, a wrong shape (every one named with the expected and found
    shapes), a dtype other than float32/float64 or mixed dtypes, and NaN or Inf.
    """
    model = _fresh(spec_or_model)
    expected = model.params
    arrays = _check_names(expected, arrays)
    dtype = _check_arrays(expected, arrays)
    model.astype(dtype)
    for name, target in model.params.items():
        target[...] = arrays[name]
    return model


def _fresh(spec_or_model):
    """A newly initialised float64 Sequential of the given architecture."""
    if isinstance(spec_or_model, Sequential):
        return Sequential.from_spec(spec_or_model.spec())
    if not isinstance(spec_or_model, dict):
        raise ConfigError(f"expected a Sequential or its spec() dict, found "
                          f"{type(spec_or_model).__name__}")
    try:
        return Sequential.from_spec(spec_or_model)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"cannot build a network from this spec: {err!r}") from None


def _check_names(expected, arrays):
    """A dict of ``arrays`` (a mapping), checked to hold exactly the names of ``expected``."""
    if not isinstance(arrays, Mapping):
        raise ConfigError(f"arrays must be a dict {{name: array}}, found "
                          f"{type(arrays).__name__}")
    arrays = dict(arrays)
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(map(str, set(arrays) - set(expected)))
    if missing or unexpected:
        raise ConfigError(f"the arrays must be named exactly {sorted(expected)}; missing "
                          f"{missing or 'none'}, unexpected {unexpected or 'none'}")
    return arrays


def _check_arrays(expected, arrays):
    """Check types, shapes, dtypes and finiteness of ``arrays``; return their one dtype."""
    for name, v in arrays.items():
        if not isinstance(v, np.ndarray):
            raise ShapeError(f"{name} must be a numpy array, found {type(v).__name__}")
    wrong = [f"{name} expected {expected[name].shape}, found {v.shape}"
             for name, v in arrays.items() if v.shape != expected[name].shape]
    if wrong:
        raise ShapeError(f"wrong shapes: {'; '.join(wrong)}")
    dtypes = {str(v.dtype) for v in arrays.values()}
    if len(dtypes) != 1 or not dtypes <= {"float32", "float64"}:
        found = ", ".join(f"{name} {v.dtype}" for name, v in arrays.items())
        raise ShapeError(f"the arrays must all be float32 or all float64, found {found}")
    for name, v in arrays.items():
        check_finite(name, v)
    return np.dtype(dtypes.pop())


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# loss and gradients
# ---------------------------------------------------------------------------------------------


class LossParts:
    """The loss of one batch: ``total = nll_scale * data term + reg``; ``nll`` the mean plain
    data term (Gaussian NLL, or cross-entropy for a vanilla net; with beta-NLL the data term in
    ``total`` is weighted, ``nll`` is not), ``reg`` the regulariser as added; ``output`` the
    network's output mean (probabilities, or a vanilla net's logits)."""

    def __init__(self, total, nll, reg, output=None):
        self.total, self.nll, self.reg = float(total), float(nll), float(reg)
        self.output = output

    def __repr__(self):
        return f"LossParts(total={self.total:.6g}, nll={self.nll:.6g}, reg={self.reg:.6g})"


def data_term(model, out, y, jitter, beta=0.0):
    """(loss, gradient w.r.t. the output, per-example losses) of the data term."""
    if model.task == "classification":
        if not model.bayesian:
            return cross_entropy(out, y)
        return gaussian_nll(out, one_hot(y, out.mean.shape[1], out.mean.dtype), jitter, beta)
    y = np.asarray(y)
    if y.dtype != out.mean.dtype:
        raise ShapeError(f"regression targets must be {out.mean.dtype}, found {y.dtype}")
    return gaussian_nll(out, y, jitter, beta) if model.bayesian else squared_error(out, y)


def loss_and_grads(model, x, y, objective=Objective()):
    """Forward, loss, backward for one batch -> (LossParts, {"layer.param": gradient}).

    x : (B, *input_shape) in the model's dtype, checked here, or a structure (``Point(x)``
    of an array checked before: :func:`tinybnn.train.fit` checks its whole split once);
    y : int labels (B,) or float targets (B, K).
    """
    batch = x.batch_size if isinstance(x, STRUCTURES) else np.shape(x)[0]
    if np.shape(y)[0] != batch:
        raise ShapeError(f"x and y must have the same batch size, found {batch} "
                         f"and {np.shape(y)[0]}")
    out = model.forward(x)
    nll, dout, per = data_term(model, out, y, objective.jitter, objective.nll_beta)
    scale = objective.nll_scale if model.bayesian else 1.0
    named = model.named_bayesian_layers
    reg, reg_grads = objective.regularise(named) if named else (0.0, {})
    model.backward(_scaled(dout, scale))
    for name, grads in reg_grads.items():
        for k, g in grads.items():
            named[name].grads[k] += g  # backward made these arrays afresh: adding is safe
    return LossParts(scale * nll + reg, per.mean(), reg, out.mean), model.grads


def _scaled(grad, scale):
    """``grad`` (a structure of the output's gradient: Full or Diagonal) times ``scale``, field
    by declared field."""
    if scale == 1.0:
        return grad
    return dataclasses.replace(grad, **{f.name: None if getattr(grad, f.name) is None
                                        else getattr(grad, f.name) * scale
                                        for f in dataclasses.fields(grad)})
