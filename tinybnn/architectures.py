"""The networks tinybnn builds: the paper's CNN, MLPs and a small CNN, each a
:class:`~tinybnn.model.Sequential` with named layers (the parameter names are listed in
:mod:`tinybnn.model`), initialised from an explicit seed.
"""

import numpy as np

from .errors import ConfigError
from .functions import softplus_inverse
from .layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, ReLUExact, Softmax
from .model import Sequential


def paper_cnn(n_kernels, *, bayesian=True, input_shape=(1, 28, 28), kernel_size=5, n_classes=10,
              seed=0, dtype=np.float64, rho_range=(-12.0, -2.2), init_std=0.1,
              last_variance=None):
    """The paper's conv r x r (N kernels, VALID) -> ReLU -> max-pool 2 -> flatten -> linear K
    (-> softmax), built with the max-pool before the ReLU.

    The two orders compute the same numbers, forward and backward: a first-order ReLU is
    monotone and keeps its input's factor rows where the mean is positive, so the max of the
    rectified window is the rectified max, taken at the same position; where a whole window is
    <= 0 both orders output mean 0 with scale 0 (tests/test_model.py checks the equality).
    Pooling first lets the ReLU work on a quarter of the maps: the training step is 1.05-1.26x
    faster for the Bayesian network, up to 1.33x for the vanilla one
    (``benchmarks/bench_train_step.py --relu-first``). Model files with the ReLU first still load.

    The vanilla network (``bayesian=False``) ends at the logits (cross-entropy is computed on
    them); :func:`tinybnn.evaluate.predict` applies the softmax for both.

    ``last_variance``: see :func:`start_last_layer_at`.
    """
    if int(n_kernels) < 1:
        raise ConfigError(f"n_kernels must be >= 1, found {n_kernels}")
    C, H, W = input_shape
    Hc, Wc = H - kernel_size + 1, W - kernel_size + 1
    if Hc < 1 or Wc < 1:
        raise ConfigError(f"a {kernel_size}x{kernel_size} kernel does not fit a {H}x{W} input")
    L = ((Hc + 1) // 2) * ((Wc + 1) // 2)
    rng = np.random.default_rng(seed)
    kw = dict(bayesian=bayesian, rng=rng, dtype=dtype, rho_range=rho_range, init_std=init_std)
    layers = [("conv", Conv2d(C, int(n_kernels), kernel_size, **kw)), ("pool", MaxPool2d()),
              ("relu", ReLU()), ("flatten", Flatten()),
              ("fc", Linear(int(n_kernels) * L, n_classes, **kw))]
    if bayesian:
        layers.append(("softmax", Softmax()))
    return start_last_layer_at(Sequential(layers, task="classification",
                                          input_shape=input_shape), last_variance)


def start_last_layer_at(model, variance):
    """Set every unit variance of the last weight layer to ``variance`` (None: leave the rho
    drawn from ``rho_range``); returns the model.

    The authors draw every rho from U[-12, -2.2] (variances 6e-6 to 0.1). Their variance
    penalty, ``d (s - log s - 1)`` per unit, is smallest at s = 1 and weighs the last layer of
    the paper's CNN (d = 144 N inputs per unit) far above the conv (d = 25), so its variances
    climb towards 1 while training, and no kernel switches off before they are near it (about
    5 of the recipe's 10 epochs; docs/SELF_COMPRESSION.md). ``variance=1.0`` starts them there.
    """
    if variance is None or not model.bayesian:
        return model
    if not variance > 0:
        raise ConfigError(f"last_variance must be a positive variance, found {variance!r}")
    last = [layer for _, layer in model.layers if isinstance(layer, (Conv2d, Linear))][-1]
    last.params["rho"][...] = softplus_inverse(variance)
    return model


RELUS = {"first_order": ReLU, "exact": ReLUExact}


def mlp(sizes, *, bayesian=True, task="classification", input_shape=None, seed=0,
        dtype=np.float64, rho_range=(-12.0, -2.2), relu="first_order", last_variance=None):
    """Linear -> ReLU -> ... -> Linear (-> Softmax for a Bayesian classifier).

    sizes : (D, H1, ..., K) layer widths. If ``input_shape`` has more than one axis (images),
    a Flatten layer comes first.
    relu : "first_order" (:class:`~tinybnn.layers.ReLU`, the paper's rule) or "exact"
    (:class:`~tinybnn.layers.ReLUExact`, exact rectified-Gaussian means and variances).
    last_variance : see :func:`start_last_layer_at`.
    """
    if relu not in RELUS:
        raise ConfigError(f"relu must be one of {', '.join(RELUS)}, found {relu!r}")
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"sizes must be at least (inputs, outputs), all >= 1; found {sizes}")
    input_shape = (sizes[0],) if input_shape is None else tuple(input_shape)
    if int(np.prod(input_shape)) != sizes[0]:
        raise ConfigError(f"input_shape {input_shape} does not have {sizes[0]} features")
    rng = np.random.default_rng(seed)
    layers = [("flatten", Flatten())] if len(input_shape) > 1 else []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        if i > 1:
            layers.append((f"relu{i - 1}", RELUS[relu]()))
        layers.append((f"fc{i}", Linear(a, b, bayesian=bayesian, rng=rng, dtype=dtype,
                                        rho_range=rho_range)))
    if bayesian and task == "classification":
        layers.append(("softmax", Softmax()))
    return start_last_layer_at(Sequential(layers, task=task, input_shape=input_shape),
                               last_variance)


def small_cnn(channels=(8, 16), *, bayesian=True, input_shape=(1, 28, 28), kernel_size=3,
              n_classes=10, seed=0, dtype=np.float64):
    """[conv (same) -> ReLU -> max-pool] per entry of ``channels`` -> flatten -> linear -> softmax.

    The second and later convolutions take a random input: they use the diagonal approximation
    (see :mod:`tinybnn.layers.conv2d`).
    """
    rng = np.random.default_rng(seed)
    C, H, W = input_shape
    layers, c_in = [], C
    for i, c in enumerate(channels, start=1):
        layers += [(f"conv{i}", Conv2d(c_in, c, kernel_size, padding="same", bayesian=bayesian,
                                        rng=rng, dtype=dtype)),
                   (f"relu{i}", ReLU()), (f"pool{i}", MaxPool2d())]
        c_in, H, W = c, (H + 1) // 2, (W + 1) // 2
    layers += [("flatten", Flatten()),
               ("fc", Linear(c_in * H * W, n_classes, bayesian=bayesian, rng=rng, dtype=dtype))]
    if bayesian:
        layers.append(("softmax", Softmax()))
    return Sequential(layers, task="classification", input_shape=input_shape)
