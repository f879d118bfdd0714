"""Scalar maps used by the layers, each beside its derivative.

==============  =================================  ====================================
map             value                              derivative
==============  =================================  ====================================
softplus        log(1 + e^rho) = logaddexp(rho, 0)  sigmoid(rho)
relu            max(x, 0)                          1[x > 0]  (0 at exactly 0)
softmax         e^x / sum e^x  (along the last)    J = diag(p) - p p^T  (see softmax_jacobian)
==============  =================================  ====================================

``softplus`` maps the unconstrained parameter ``rho`` to a *variance* ``s`` (not a standard
deviation). ``logaddexp`` keeps it exact for large ``|rho|``: softplus(-40) = 4.2e-18, not 0.
"""

import numpy as np


def softplus(rho):
    """s = log(1 + e^rho), computed as logaddexp(rho, 0)."""
    return np.logaddexp(rho, 0.0)


def softplus_grad(rho):
    """ds/drho = sigmoid(rho) = 1 / (1 + e^-rho), computed without overflow."""
    return np.exp(-np.logaddexp(0.0, -rho))


def softplus_inverse(s):
    """rho such that softplus(rho) = s, for s > 0: rho = log(expm1(s))."""
    s = np.asarray(s, dtype=float)
    return np.where(s > 30, s, np.log(np.expm1(np.minimum(s, 30))))


def relu(x):
    """max(x, 0)."""
    return np.maximum(x, 0)


def relu_grad(x):
    """1[x > 0] in x's dtype; the derivative at exactly 0 is taken as 0."""
    return (x > 0).astype(x.dtype)


def softmax(x):
    """Softmax along the last axis, shifted by the maximum for stability."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_jacobian(p):
    """J = diag(p) - p p^T for probabilities p (B, K) -> (B, K, K); J is symmetric."""
    diag_p = np.einsum("bk,kl->bkl", p, np.eye(p.shape[-1], dtype=p.dtype))  # (B, K, K)
    return diag_p - p[:, :, None] * p[:, None, :]


def log_softmax(x):
    """log softmax(x) along the last axis, via logsumexp."""
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
