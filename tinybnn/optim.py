"""Optimisers and learning-rate schedules, on ``{name: array}`` dictionaries.

``step(params, grads)`` updates every array of ``params`` in place (so a network's layers see the
change) from the gradient of the same name. A learning rate is a number or a schedule: an
object called with the step count (0, 1, ...) that returns the rate for that step.
``rate_scale`` multiplies the rate of the parameters whose name ends with a given suffix, e.g.
``{"rho": 10}`` lets the variance parameters move ten times faster than the means (Adam moves
each parameter by about ``lr`` per step whatever its gradient, so ``rho`` needs many steps to
travel from its initial value).

Adam (Kingma & Ba 2015), step t = 1, 2, ...::

    m <- b1 m + (1 - b1) g,    v <- b2 v + (1 - b2) g^2
    p <- p - lr_t * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

SGD with momentum::

    u <- mu u + g,   p <- p - lr_t u

``state()`` returns what a resumed run needs to continue bit for bit (the step count t, the
hyperparameters to check against, and the per-parameter arrays: Adam's m and v, SGD's u);
``load_state(state)`` puts it into an optimiser built with the same settings (the learning-rate
schedule is not stored: it is rebuilt from the run's settings, and reads only t).
"""

import numpy as np

from .errors import ConfigError
from .kernels.step import adam_update


class Constant:
    """lr_t = lr."""

    def __init__(self, lr):
        self.lr = _positive("lr", lr)

    def __call__(self, step):
        return self.lr


class ExponentialDecay:
    """lr_t = lr * (final_lr / lr)^(min(t, total) / total): geometric from lr to final_lr."""

    def __init__(self, lr, final_lr, total_steps):
        self.lr, self.final_lr = _positive("lr", lr), _positive("final_lr", final_lr)
        self.total = int(_positive("total_steps", total_steps))

    def __call__(self, step):
        return self.lr * (self.final_lr / self.lr) ** (min(step, self.total) / self.total)


class PolynomialDecay:
    """lr_t = final + (lr - final) (1 - min(t, total)/total)^power."""

    def __init__(self, lr, final_lr, total_steps, power=1.0):
        self.lr, self.final_lr = _positive("lr", lr), _positive("final_lr", final_lr)
        self.total = int(_positive("total_steps", total_steps))
        self.power = _positive("power", power)

    def __call__(self, step):
        frac = 1.0 - min(step, self.total) / self.total
        return self.final_lr + (self.lr - self.final_lr) * frac**self.power


def _positive(name, value):
    if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, found {value!r}")
    return float(value)


def _schedule(lr):
    return lr if callable(lr) else Constant(lr)


def _check(params, grads):
    if params.keys() != grads.keys():
        raise ConfigError(f"gradients must match parameters: {sorted(params)} vs {sorted(grads)}")


def _rate_scales(rate_scale):
    scales = dict(rate_scale or {})
    for suffix, factor in scales.items():
        _positive(f"rate_scale[{suffix!r}]", factor)
    return scales


def _scale_for(name, scales):
    """The factor of the longest suffix of ``name`` in ``scales`` (1 if none)."""
    hits = [s for s in scales if name.endswith(s)]
    return scales[max(hits, key=len)] if hits else 1.0


class Adam:
    """Adam with bias correction; state per parameter name."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, rate_scale=None):
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= b < 1:
                raise ConfigError(f"{name} must be in [0, 1), found {b}")
        self.lr, self.beta1, self.beta2 = _schedule(lr), beta1, beta2
        self.eps = _positive("eps", eps)
        self.scales = _rate_scales(rate_scale)
        self.t, self.m, self.v = 0, {}, {}

    def step(self, params, grads):
        _check(params, grads)
        lr = self.lr(self.t)
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for k, p in params.items():
            if k not in self.m:  # the first step: zero moments
                self.m[k], self.v[k] = np.zeros_like(p), np.zeros_like(p)
            m, v = self.m[k], self.v[k]
            # one pass over p, g, m, v (tinybnn.kernels.step; its NumPy twin shows the formula)
            adam_update(p, grads[k], m, v, lr * _scale_for(k, self.scales) / c1, self.beta1,
                        self.beta2, c2, self.eps)
        return lr

    def state(self):
        """{"name": "adam", "t", "beta1", "beta2", "eps", "rate_scale", "slots": {"m": {name:
        array}, "v": {...}}}; the arrays are the optimiser's own (not copies): save them before
        the next step."""
        return {"name": "adam", "t": self.t, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps, "rate_scale": self.scales, "slots": {"m": self.m, "v": self.v}}

    def load_state(self, state):
        """Continue from ``state`` (:meth:`state` of an Adam with the same settings, possibly
        read back from a file): copies its arrays."""
        _check_state(self, state, "adam", ("beta1", "beta2", "eps"), ("m", "v"))
        self.t = int(state["t"])
        self.m, self.v = (_copy(state["slots"][s]) for s in ("m", "v"))


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum."""

    def __init__(self, lr=1e-2, momentum=0.9, rate_scale=None):
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), found {momentum}")
        self.lr, self.momentum, self.t, self.u = _schedule(lr), momentum, 0, {}
        self.scales = _rate_scales(rate_scale)

    def step(self, params, grads):
        _check(params, grads)
        lr = self.lr(self.t)
        self.t += 1
        for k, p in params.items():
            if k not in self.u:
                self.u[k] = np.zeros_like(p)
            u = self.u[k]
            u *= self.momentum
            u += grads[k]
            p -= lr * _scale_for(k, self.scales) * u
        return lr

    def state(self):
        """{"name": "sgd", "t", "momentum", "rate_scale", "slots": {"u": {name: array}}}; the
        arrays are the optimiser's own (not copies)."""
        return {"name": "sgd", "t": self.t, "momentum": self.momentum,
                "rate_scale": self.scales, "slots": {"u": self.u}}

    def load_state(self, state):
        """Continue from ``state`` (:meth:`state` of an SGD with the same settings)."""
        _check_state(self, state, "sgd", ("momentum",), ("u",))
        self.t = int(state["t"])
        self.u = _copy(state["slots"]["u"])


def _check_state(opt, state, name, hyper, slots):
    """Refuse a state of another optimiser, other hyperparameters or other slots."""
    if not isinstance(state, dict) or state.get("name") != name:
        found = state.get("name") if isinstance(state, dict) else type(state).__name__
        raise ConfigError(f"expected the state of a {name} optimiser, found {found!r}")
    theirs = {k: state.get(k) for k in hyper}
    theirs["rate_scale"] = {k: float(v) for k, v in (state.get("rate_scale") or {}).items()}
    ours = {k: getattr(opt, k) for k in hyper}
    ours["rate_scale"] = {k: float(v) for k, v in opt.scales.items()}
    differ = [f"{k} {theirs[k]!r} (state) vs {ours[k]!r} (optimiser)" for k in ours
              if theirs[k] != ours[k]]
    if differ:
        raise ConfigError(f"the {name} state has other settings than this optimiser: "
                          f"{'; '.join(differ)}")
    t = state.get("t")
    if not isinstance(t, (int, np.integer)) or isinstance(t, bool) or t < 0:
        raise ConfigError(f"the {name} state's step count t must be an integer >= 0, found {t!r}")
    found = sorted(state.get("slots") or {})
    if found != sorted(slots):
        raise ConfigError(f"the {name} state must hold the arrays {sorted(slots)}, found {found}")
    names = [sorted(state["slots"][s]) for s in slots]
    if any(n != names[0] for n in names):
        raise ConfigError(f"the {name} state's arrays {list(slots)} must cover the same "
                          f"parameters, found {names}")


def _copy(arrays):
    return {k: np.array(v, copy=True) for k, v in arrays.items()}
