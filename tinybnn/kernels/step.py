"""The small loops every training step repeats: the Adam update, the Gaussian NLL of a small
dense output, and the regularisers' passes over the means.

At one image per update (the authors' 2019 recipe: 550,000 steps) a step of the paper's CNN
does little arithmetic, and NumPy's temporaries and calls cost more than the work: Adam on the
46,080 weight means of ``fc.M`` made ten temporaries a step (0.44 ms of a 1.8 ms step), and a
10 x 10 Cholesky factorisation through ``np.linalg`` costs ~0.2 ms of call overhead. Here each
is one plain loop.

As everywhere in :mod:`tinybnn.kernels`, each kernel has a NumPy twin (suffix ``_numpy``) that
``tests/test_kernels_step.py`` checks it against; these loops are serial (at these sizes a
thread team costs more than it saves) and compiled without ``fastmath``, so that the Adam
update rounds exactly as its NumPy twin (the test asserts equality, not closeness).
"""

import numba
import numpy as np

from .loops import serial_jit


def adam_update_numpy(p, g, m, v, rate, b1, b2, c2, eps):
    """One Adam step in place, ``rate = lr_t * scale / (1 - b1^t)``, ``c2 = 1 - b2^t``::

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,   p <- p - rate m / (sqrt(v / c2) + eps)

    p, g, m, v : arrays of one shape (m and v the optimiser's state).
    """
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    p -= rate * m / (np.sqrt(v / c2) + eps)


def adam_update(p, g, m, v, rate, b1, b2, c2, eps):
    """numba twin of :func:`adam_update_numpy` on the flat views of C-contiguous arrays."""
    _adam_update(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1),
                 v.reshape(-1), p.dtype.type(rate), b1, b2, c2, eps)


@serial_jit
def _adam_update(p, g, m, v, rate, b1, b2, c2, eps):
    """One pass over the four arrays (n,); the same operations, in the same order and the same
    precision, as the NumPy twin (the coefficients are rounded to p's dtype first, as NumPy
    does when it multiplies an array by a Python float)."""
    t = p.dtype.type
    b1_, a1, b2_, a2, c2_, eps_ = t(b1), t(1 - b1), t(b2), t(1 - b2), t(c2), t(eps)
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] * b1_ + a1 * gi
        vi = v[i] * b2_ + (a2 * gi) * gi
        m[i] = mi
        v[i] = vi
        p[i] -= rate * mi / (np.sqrt(vi / c2_) + eps_)


# ---------------------------------------------------------------------------------------------
# the Gaussian NLL of a Full output
# ---------------------------------------------------------------------------------------------


def nll_full_numpy(mean, cov, target, jitter):
    """Per-example Gaussian NLL of ``target`` under ``N(mean, cov)`` with its gradients::

        A = (S + S^T)/2 + jitter I,   r = mean - target,   alpha = A^-1 r
        per_b = 1/2 r^T alpha + 1/2 log det A
        G_b   = 1/2 (A^-1 - alpha alpha^T),   tr_b = tr A

    mean, target (B, K); cov (B, K, K). Returns (per (B,), alpha (B, K), G (B, K, K), tr (B,),
    bad): ``bad`` is -1, or the first example whose A is not positive definite (the others'
    values are then meaningless).
    """
    B, K = mean.shape
    A = 0.5 * (cov + cov.transpose(0, 2, 1)) + jitter * np.eye(K, dtype=mean.dtype)
    try:
        L = np.linalg.cholesky(A)  # (B, K, K) lower
    except np.linalg.LinAlgError:
        ok = [np.all(np.linalg.eigvalsh(a) > 0) for a in A]
        return None, None, None, None, ok.index(False)
    Linv = np.linalg.inv(L)
    Ainv = Linv.transpose(0, 2, 1) @ Linv  # A^-1
    r = mean - target
    alpha = np.einsum("bkl,bl->bk", Ainv, r)
    logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    per = 0.5 * np.einsum("bk,bk->b", r, alpha) + 0.5 * logdet
    G = 0.5 * (Ainv - alpha[:, :, None] * alpha[:, None, :])
    return per, alpha, G, np.trace(A, axis1=1, axis2=2), -1


def nll_full(mean, cov, target, jitter):
    """numba twin of :func:`nll_full_numpy` (via :func:`_nll_full`)."""
    B, K = mean.shape
    per = np.empty(B, dtype=mean.dtype)
    alpha = np.empty((B, K), dtype=mean.dtype)
    G = np.empty((B, K, K), dtype=mean.dtype)
    tr = np.empty(B, dtype=mean.dtype)
    work, r = np.zeros((3, K, K), dtype=mean.dtype), np.empty(K, dtype=mean.dtype)
    bad = _nll_full(mean, cov, target, mean.dtype.type(jitter), per, alpha, G, tr, work, r)
    return per, alpha, G, tr, bad


@serial_jit
def _nll_full(mean, cov, target, jitter, per, alpha, G, tr, work, r):
    """For each example: symmetrise and jitter A, factor A = L L^T (Cholesky-Banachiewicz, row
    by row), invert L by forward substitution, A^-1 = L^-T L^-1, then alpha, the NLL and G.
    Returns the first example whose A is not positive definite (a pivot <= 0 or NaN), or -1.
    ``work`` (3, K, K) zeros and ``r`` (K,) are its scratch, allocated by the caller (numba
    compiles each allocation it meets: benchmarks/README.md, the cold start)."""
    B, K = mean.shape
    A, L, Li = work[0], work[1], work[2]  # Li = L^-1, lower
    half = mean.dtype.type(0.5)
    for b in range(B):
        t = mean.dtype.type(0)
        for i in range(K):
            for j in range(K):
                A[i, j] = half * (cov[b, i, j] + cov[b, j, i])
            A[i, i] += jitter
            t += A[i, i]
            r[i] = mean[b, i] - target[b, i]
        tr[b] = t
        logdet = mean.dtype.type(0)
        for i in range(K):
            for j in range(i + 1):
                acc = A[i, j]
                for k in range(j):
                    acc -= L[i, k] * L[j, k]
                if i == j:
                    if not acc > 0:  # also catches NaN
                        return b
                    L[i, i] = np.sqrt(acc)
                    logdet += 2 * np.log(L[i, i])
                else:
                    L[i, j] = acc / L[j, j]
        for j in range(K):  # column j of L^-1: solve L x = e_j
            for i in range(K):
                if i < j:
                    Li[i, j] = 0
                    continue
                acc = mean.dtype.type(1) if i == j else mean.dtype.type(0)
                for k in range(j, i):
                    acc -= L[i, k] * Li[k, j]
                Li[i, j] = acc / L[i, i]
        quad = mean.dtype.type(0)
        for i in range(K):  # alpha = A^-1 r, with A^-1[i, j] = sum_k Li[k, i] Li[k, j]
            acc = mean.dtype.type(0)
            for j in range(K):
                aij = mean.dtype.type(0)
                for k in range(max(i, j), K):
                    aij += Li[k, i] * Li[k, j]
                G[b, i, j] = half * aij
                acc += aij * r[j]
            alpha[b, i] = acc
            quad += r[i] * acc
        for i in range(K):
            for j in range(K):
                G[b, i, j] -= half * alpha[b, i] * alpha[b, j]
        per[b] = half * quad + half * logdet
    return -1


def l1_and_sign_numpy(M, w):
    """(sum |M|, w sign(M)): the L1 norm of the means and the gradient of w times it."""
    return np.abs(M).sum(), w * np.sign(M)


def l1_and_sign(M, w):
    """numba twin of :func:`l1_and_sign_numpy`: one pass over M (C-contiguous)."""
    out = np.empty(M.shape, dtype=M.dtype)
    total = _l1_and_sign(M.reshape(-1), M.dtype.type(w), out.reshape(-1))
    return total, out


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _l1_and_sign(M, w, out):
    """out = w sign(M) (sign(0) = 0), returns sum |M|.

    Branch-free, because the signs of trained weights are a coin flip the processor cannot
    predict; ``reassoc`` lets the sum run in vector lanes (its rounding differs from NumPy's
    pairwise sum in the last digits). A NaN in M makes the sum NaN, so the loss is NaN and
    training stops (tinybnn.train), although its sign here is 0.
    """
    total = M.dtype.type(0)
    for i in range(M.shape[0]):
        m = M[i]
        total += abs(m)
        out[i] = w * (M.dtype.type(m > 0) - M.dtype.type(m < 0))
    return total


def column_squares_and_scaled_numpy(M, a, b):
    """((M**2).sum(axis=0), M / a / b) for M (D, K): the squared norms of M's columns (a linear
    layer's units) and the elbo's gradient on the means."""
    return (M**2).sum(axis=0), M / a / b


def column_squares_and_scaled(M, a, b):
    """numba twin of :func:`column_squares_and_scaled_numpy`, M (D, K) C-contiguous: the same
    numbers (NumPy sums a column in order, d = 0, 1, ...; the two divisions in the same order).
    NumPy's sum along the strided axis runs K = 10 numbers per inner call: 150 us for the
    4608 x 10 ``fc.M`` of the paper's CNN (8 % of a one-image step) and 45 us more for the two
    divisions; here 43 us for both."""
    t = M.dtype.type
    sq, out = np.zeros(M.shape[1], dtype=M.dtype), np.empty(M.shape, dtype=M.dtype)
    _column_squares(M, sq)
    _divided(M.reshape(-1), t(a), t(b), out.reshape(-1))
    return sq, out


@serial_jit
def _column_squares(M, sq):
    """sq[k] += M[d, k]^2 in order of d (sq zeros on entry). No fastmath: the square is rounded
    before it is added, as NumPy does."""
    D, K = M.shape
    for d in range(D):
        for k in range(K):
            m = M[d, k]
            sq[k] += m * m


@serial_jit
def _divided(x, a, b, out):
    """out = x / a / b (flat arrays). A division by a = 1 (the default prior variance) is exact,
    so it is skipped: the divisions are most of the time."""
    if a == 1:
        for i in range(x.shape[0]):
            out[i] = x[i] / b
    else:
        for i in range(x.shape[0]):
            out[i] = x[i] / a / b
