"""The first-order softmax of a Full input and its backward pass, as serial loops (see
:mod:`tinybnn.kernels.step`)."""

import numpy as np

from .loops import serial_jit


def softmax_full_numpy(mu, S):
    """p = softmax(mu), J = diag(p) - p p^T, JS = J S and the output covariance J S J.

    mu (B, K), S (B, K, K) -> p (B, K), J, JS, JSJ (B, K, K).
    """
    e = np.exp(mu - mu.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    J = np.einsum("bk,kl->bkl", p, np.eye(p.shape[-1], dtype=p.dtype))
    J -= p[:, :, None] * p[:, None, :]
    JS = J @ S
    return p, J, JS, JS @ J


def softmax_full(mu, S):
    """numba twin of :func:`softmax_full_numpy` (via :func:`_softmax_full`)."""
    B, K = mu.shape
    p = np.empty((B, K), dtype=mu.dtype)
    J, JS, JSJ = (np.empty((B, K, K), dtype=mu.dtype) for _ in range(3))
    _softmax_full(mu, S, p, J, JS, JSJ)
    return p, J, JS, JSJ


@serial_jit
def _softmax_full(mu, S, p, J, JS, JSJ):
    """Per example: the shifted exponentials, p, J, then the two K x K x K products."""
    B, K = mu.shape
    zero = mu.dtype.type(0)
    for b in range(B):
        top = mu[b, 0]
        for k in range(1, K):
            top = max(top, mu[b, k])
        total = zero
        for k in range(K):
            p[b, k] = np.exp(mu[b, k] - top)
            total += p[b, k]
        for k in range(K):
            p[b, k] /= total
        for i in range(K):
            for j in range(K):
                J[b, i, j] = (p[b, i] if i == j else zero) - p[b, i] * p[b, j]
        for i in range(K):
            for j in range(K):
                acc = zero
                for k in range(K):
                    acc += J[b, i, k] * S[b, k, j]
                JS[b, i, j] = acc
        for i in range(K):
            for j in range(K):
                acc = zero
                for k in range(K):
                    acc += JS[b, i, k] * J[b, k, j]
                JSJ[b, i, j] = acc


def softmax_full_backward_numpy(p, J, JS, g, G):
    """The first-order softmax backward (tinybnn.layers.softmax gives the derivation)::

        H = 2 G J S,   g_p = g + diag(H) - (H + H^T) p,   g_in = J g_p,   G_in = J G J

    p, g (B, K); J, JS, G (B, K, K) -> g_in (B, K), G_in (B, K, K).
    """
    H = 2.0 * G @ JS
    H_sym = H + H.transpose(0, 2, 1)
    g_p = g + np.diagonal(H, axis1=1, axis2=2) - np.einsum("bkl,bl->bk", H_sym, p)
    return np.einsum("bkl,bl->bk", J, g_p), J @ G @ J


def softmax_full_backward(p, J, JS, g, G):
    """numba twin of :func:`softmax_full_backward_numpy` (via :func:`_softmax_full_backward`)."""
    B, K = p.shape
    g_in = np.empty((B, K), dtype=p.dtype)
    G_in = np.empty((B, K, K), dtype=p.dtype)
    work, g_p = np.empty((2, K, K), dtype=p.dtype), np.empty(K, dtype=p.dtype)
    _softmax_full_backward(p, J, JS, g, G, g_in, G_in, work, g_p)
    return g_in, G_in


@serial_jit
def _softmax_full_backward(p, J, JS, g, G, g_in, G_in, work, g_p):
    """Per example: H = 2 G JS, g_p from its diagonal and (H + H^T) p, then J g_p and J G J
    (``work`` (2, K, K) and ``g_p`` (K,): scratch from the caller)."""
    B, K = p.shape
    zero = p.dtype.type(0)
    H, JG = work[0], work[1]
    for b in range(B):
        for i in range(K):
            for j in range(K):
                acc = zero
                for k in range(K):
                    acc += G[b, i, k] * JS[b, k, j]
                H[i, j] = 2 * acc
        for i in range(K):
            acc = g[b, i] + H[i, i]
            for j in range(K):
                acc -= (H[i, j] + H[j, i]) * p[b, j]
            g_p[i] = acc
        for i in range(K):
            acc = zero
            for j in range(K):
                acc += J[b, i, j] * g_p[j]
            g_in[b, i] = acc
            for j in range(K):
                acc2 = zero
                for k in range(K):
                    acc2 += J[b, i, k] * G[b, k, j]
                JG[i, j] = acc2
        for i in range(K):
            for j in range(K):
                acc = zero
                for k in range(K):
                    acc += JG[i, k] * J[b, k, j]
                G_in[b, i, j] = acc
