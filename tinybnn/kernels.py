"""The inner loops: convolution patches, ReLU and max-pool passes (the factored covariance path
is in :mod:`tinybnn.kernels_factored`).

Each kernel is a plain loop compiled by numba (``cache=True``, so a second run does not
recompile) and has a NumPy twin with the suffix ``_numpy`` that computes the same numbers in
vectorised NumPy; ``tests/test_kernels.py`` checks each pair in float64 and float32. With
``NUMBA_DISABLE_JIT=1`` the loops run as plain Python, so you can step through them in a debugger.

How they are made fast (docs/COST.md has the measurements):

- one pass over memory where NumPy would make several (ReLU returns the rectified mean and the
  masked row scale together; max-pool finds the argmax and gathers the maximum together);
- the innermost loop runs along the contiguous axis (the patch axis ``d`` in the factored path);
- ``numba.prange`` over the batch, the only axis long enough to share between threads; a kernel
  whose output is summed over the batch gives each thread its own partial sum (no races), added
  up at the end;
- each loop is compiled twice (:class:`BatchLoop`): shared between threads, and serial. Below
  :data:`PARALLEL_MIN_BATCH` examples the serial one runs: a small batch's work is too little
  to share, and the second thread, spinning between loops, slows the first one down (this
  machine's two cores are not independent: a busy second core slows a one-thread step by 16 %).
  One image per update: 1.08 ms a step serial against 1.44 ms with 2 threads (docs/COST.md has
  the crossover, measured);
- large dense products are left to BLAS (``@`` in the layers), never called inside these loops;
  and since both thread pools spin for a while after their work ends, a network that uses these
  loops runs its BLAS on one thread (:mod:`tinybnn.threads`), so the two pools do not fight over
  the 2 cores.

Shapes: B batch, C channels, H W image, r kernel size, P = Ho Wo conv output positions,
d = C r r patch length (ordered (c, i, j) like ``M.reshape(N, -1)``), N channels, L positions
per channel after pooling, K units of the next layer.
"""

import functools
import types

import numba
import numpy as np

# fastmath only lets LLVM reorder sums and fuse multiply-adds (so reductions vectorise); the
# flags that would let it assume no NaN or Inf stay off, so a divergence still shows as NaN.
_FASTMATH = {"reassoc", "contract"}
PARALLEL_MIN_BATCH = 4  # below this many examples a BatchLoop runs serially (docs/COST.md)


class BatchLoop:
    """A loop whose outer ``numba.prange`` runs over the batch, compiled two ways.

    ``loop(batch, *args)`` runs ``loop.parallel`` (the prange shared between numba's threads)
    for a batch of at least :data:`PARALLEL_MIN_BATCH` examples when numba has more than one
    thread, and ``loop.serial`` (the same code, prange as a plain range) otherwise. Each is
    compiled on its first call, so a run compiles only the ones it uses. ``loop.py_func`` is the
    plain Python function.
    """

    def __init__(self, fn):
        self.py_func = fn
        self.parallel = numba.njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)(fn)
        # a copy under its own name, so that numba's on-disk cache keeps the two apart
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                  fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        self.serial = numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)(twin)
        functools.update_wrapper(self, fn)

    def pick(self, batch):
        """The compiled loop for a batch of ``batch`` examples."""
        if batch >= PARALLEL_MIN_BATCH and numba.get_num_threads() > 1:
            return self.parallel
        return self.serial

    def __call__(self, batch, *args):
        return self.pick(batch)(*args)

    def chunks(self, batch):
        """How many per-thread partial sums a batch-reducing loop keeps: numba's thread count
        for the parallel loop, 1 for the serial one."""
        return numba.get_num_threads() if self.pick(batch) is self.parallel else 1


parallel_jit = BatchLoop  # the decorator of every loop over the batch below


# ---------------------------------------------------------------------------------------------
# im2col / col2im
# ---------------------------------------------------------------------------------------------


def im2col_numpy(x, r):
    """Patches of x (B, C, H, W) for an r x r VALID convolution -> (B, P, d).

    Row p = h Wo + w holds x[:, :, h:h+r, w:w+r] flattened in (c, i, j) order.
    """
    B, C, H, W = x.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (r, r), axis=(2, 3))  # (B,C,Ho,Wo,r,r)
    Ho, Wo = H - r + 1, W - r + 1
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(B, Ho * Wo, C * r * r)


def col2im_numpy(cols, shape, r):
    """Adjoint of im2col: scatter-add patch gradients (B, P, d) back to an image of ``shape``."""
    B, C, H, W = shape
    Ho, Wo = H - r + 1, W - r + 1
    c6 = cols.reshape(B, Ho, Wo, C, r, r)
    out = np.zeros(shape, dtype=cols.dtype)
    for i in range(r):
        for j in range(r):
            out[:, :, i:i + Ho, j:j + Wo] += c6[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return out


def im2col(x, r):
    """numba twin of :func:`im2col_numpy` (via :func:`_im2col`)."""
    B, C, H, W = x.shape
    out = np.empty((B, (H - r + 1) * (W - r + 1), C * r * r), dtype=x.dtype)
    _im2col(B, x, r, out)
    return out


@parallel_jit
def _im2col(x, r, out):
    """Fill out (B, P, d) with the patches of x (B, C, H, W); parallel over the batch."""
    B, C, H, W = x.shape
    Ho, Wo = H - r + 1, W - r + 1
    for b in numba.prange(B):
        for h in range(Ho):
            for w in range(Wo):
                p = h * Wo + w
                q = 0
                for c in range(C):
                    for i in range(r):
                        for j in range(r):
                            out[b, p, q] = x[b, c, h + i, w + j]
                            q += 1


def col2im(cols, shape, r):
    """numba twin of :func:`col2im_numpy` (via :func:`_col2im`)."""
    out = np.zeros(shape, dtype=cols.dtype)
    _col2im(cols.shape[0], cols, r, out)
    return out


@parallel_jit
def _col2im(cols, r, out):
    """Add the patch gradients cols (B, P, d) into the image out (B, C, H, W); parallel over B."""
    B, C, H, W = out.shape
    Ho, Wo = H - r + 1, W - r + 1
    for b in numba.prange(B):
        for h in range(Ho):
            for w in range(Wo):
                p = h * Wo + w
                q = 0
                for c in range(C):
                    for i in range(r):
                        for j in range(r):
                            out[b, c, h + i, w + j] += cols[b, p, q]
                            q += 1


# ---------------------------------------------------------------------------------------------
# ReLU: one pass forward, one pass backward
# ---------------------------------------------------------------------------------------------


def relu_scale_numpy(mean, scale):
    """ReLU of a factored map: ``(max(mean, 0), scale * 1[mean > 0])``.

    mean, scale : (B, C, n), any memory layout (``scale`` may be a broadcast view of ones).
    """
    d = (mean > 0).astype(mean.dtype)
    return np.maximum(mean, 0), scale * d


def relu_scale(mean, scale):
    """numba twin of :func:`relu_scale_numpy`: both outputs in one pass.

    A scale that is a single number broadcast (all strides 0, like the unit scale a first
    convolution creates) is read once (:func:`_relu_constant_scale`); any other goes through
    :func:`_relu_scale`. The outputs are allocated by NumPy (which asks the kernel for huge pages
    for large arrays) and filled by the loops.
    """
    out = np.empty(mean.shape, dtype=mean.dtype)
    out_scale = np.empty(mean.shape, dtype=mean.dtype)
    if not any(scale.strides):
        _relu_constant_scale(mean.shape[0], mean, scale.reshape(-1)[0], out, out_scale)
    else:
        _relu_scale(mean.shape[0], mean, scale, out, out_scale)
    return out, out_scale


@parallel_jit
def _relu_scale(mean, scale, out, out_scale):
    """out = max(mean, 0), out_scale = scale 1[mean > 0]; all (B, C, n); parallel over B."""
    B, C, n = mean.shape
    one, zero = mean.dtype.type(1), mean.dtype.type(0)
    for b in numba.prange(B):
        for c in range(C):
            for i in range(n):
                m = mean[b, c, i]
                out[b, c, i] = m if (m > 0 or m != m) else zero  # a NaN stays NaN (np.maximum)
                out_scale[b, c, i] = scale[b, c, i] * (one if m > 0 else zero)


@parallel_jit
def _relu_constant_scale(mean, value, out, out_scale):
    """As :func:`_relu_scale` for a scale that is ``value`` everywhere."""
    B, C, n = mean.shape
    one, zero = mean.dtype.type(1), mean.dtype.type(0)
    for b in numba.prange(B):
        for c in range(C):
            for i in range(n):
                m = mean[b, c, i]
                out[b, c, i] = m if (m > 0 or m != m) else zero
                out_scale[b, c, i] = value * (one if m > 0 else zero)


def relu_backward_numpy(g, y):
    """The ReLU backward ``g * 1[y > 0]`` from the *output* y = max(mu, 0) (y > 0 iff mu > 0).

    g, y : the same shape.
    """
    return g * (y > 0).astype(g.dtype)


def relu_backward(g, y):
    """numba twin of :func:`relu_backward_numpy` (via :func:`_relu_backward1`, flat arrays)."""
    g, y = np.ascontiguousarray(g), np.ascontiguousarray(y)
    out = np.empty(g.shape, dtype=g.dtype)
    _relu_backward1(g.shape[0], g.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


@parallel_jit
def _relu_backward1(g, y, out):
    """out[i] = g[i] * 1[y[i] > 0] for flat g, y, out (n,); parallel over n."""
    one, zero = g.dtype.type(1), g.dtype.type(0)
    for i in numba.prange(g.shape[0]):
        out[i] = g[i] * (one if y[i] > 0 else zero)


# ---------------------------------------------------------------------------------------------
# max-pool 2 x 2, stride 2, ceil mode
# ---------------------------------------------------------------------------------------------


def maxpool_argmax_numpy(m):
    """Index of the maximum of each 2 x 2 window of m (B, C, H, W), flat into H W.

    Windows are row-major; ceil mode (a last odd row or column forms a smaller window); ties
    take the first maximum in row-major order within the window. Returns (B, C, Ho, Wo) int64.
    """
    B, C, H, W = m.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    padded = np.full((B, C, 2 * Ho, 2 * Wo), -np.inf, dtype=m.dtype)
    padded[:, :, :H, :W] = m
    win = padded.reshape(B, C, Ho, 2, Wo, 2).transpose(0, 1, 2, 4, 3, 5).reshape(B, C, Ho, Wo, 4)
    a = win.argmax(axis=-1)  # first maximum
    h = 2 * np.arange(Ho)[:, None] + a // 2
    w = 2 * np.arange(Wo)[None, :] + a % 2
    return h * W + w


def maxpool_numpy(m):
    """Max-pool of m (B, C, H, W) -> (argmax idx (B, C, Ho, Wo) int64, maxima (B, C, Ho, Wo))."""
    idx = maxpool_argmax_numpy(m)
    return idx, gather_numpy(m, idx)


def maxpool(m):
    """numba twin of :func:`maxpool_numpy` (via :func:`_maxpool`)."""
    B, C, H, W = m.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    idx = np.empty((B, C, Ho, Wo), dtype=np.int64)
    out = np.empty((B, C, Ho, Wo), dtype=m.dtype)
    _maxpool(B, m, idx, out)
    return idx, out


@parallel_jit
def _maxpool(m, idx, out):
    """Argmax (first maximum, ceil mode) and maximum of each 2 x 2 window in one pass, into
    idx and out (B, C, Ho, Wo); parallel over the batch.

    A window cut by an odd edge repeats its first row or column (h1 = h0 or w1 = w0); a repeated
    value never wins under the strict ``>``, so this equals pooling the smaller window, and the
    loop has no bounds tests.
    """
    B, C, H, W = m.shape
    _, _, Ho, Wo = idx.shape
    for b in numba.prange(B):
        for c in range(C):
            for i in range(Ho):
                h0 = 2 * i
                h1 = min(h0 + 1, H - 1)
                for j in range(Wo):
                    w0 = 2 * j
                    w1 = min(w0 + 1, W - 1)
                    best, val = h0 * W + w0, m[b, c, h0, w0]
                    v = m[b, c, h0, w1]
                    if v > val:
                        best, val = h0 * W + w1, v
                    v = m[b, c, h1, w0]
                    if v > val:
                        best, val = h1 * W + w0, v
                    v = m[b, c, h1, w1]
                    if v > val:
                        best, val = h1 * W + w1, v
                    idx[b, c, i, j] = best
                    out[b, c, i, j] = val


def gather_numpy(a, idx):
    """a (B, C, H, W) or (B, C, HW) gathered at flat indices idx (B, C, Ho, Wo)."""
    B, C = idx.shape[:2]
    flat = a.reshape(B, C, -1)
    return np.take_along_axis(flat, idx.reshape(B, C, -1), axis=2).reshape(idx.shape)


def gather(a, idx):
    """numba twin of :func:`gather_numpy` (via :func:`_gather3`); ``a`` may be any view, e.g. a
    broadcast array of row numbers, and is read in place."""
    B, C = idx.shape[:2]
    out = np.empty(idx.shape, dtype=a.dtype)
    _gather3(B, a.reshape(B, C, -1), idx.reshape(B, C, -1), out.reshape(B, C, -1))
    return out


@parallel_jit
def _gather3(flat, idx, out):
    """out[b, c, l] = flat[b, c, idx[b, c, l]]; flat (B, C, HW), idx and out (B, C, L)."""
    B, C, L = idx.shape
    for b in numba.prange(B):
        for c in range(C):
            for l in range(L):
                out[b, c, l] = flat[b, c, idx[b, c, l]]


def scatter_numpy(g, idx, shape):
    """Adjoint of gather: g (B, C, Ho, Wo) placed at idx in zeros of ``shape`` (B, C, H, W)."""
    B, C = idx.shape[:2]
    out = np.zeros((B, C, shape[2] * shape[3]), dtype=g.dtype)
    np.put_along_axis(out, idx.reshape(B, C, -1), g.reshape(B, C, -1), axis=2)
    return out.reshape(shape)


def scatter(g, idx, shape):
    """numba twin of :func:`scatter_numpy` (via :func:`_scatter3`)."""
    B, C = idx.shape[:2]
    out = np.zeros(shape, dtype=g.dtype)
    _scatter3(B, g.reshape(B, C, -1), idx.reshape(B, C, -1), out.reshape(B, C, -1))
    return out


@parallel_jit
def _scatter3(g, idx, out):
    """out[b, c, idx[b, c, l]] += g[b, c, l]; g, idx (B, C, L), out (B, C, HW) zeros."""
    B, C, L = idx.shape
    for b in numba.prange(B):
        for c in range(C):
            for l in range(L):
                out[b, c, idx[b, c, l]] += g[b, c, l]
