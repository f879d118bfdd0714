"""A PyTorch reference for tinybnn's VDP networks (autograd, CPU), used by the benchmarks.

This module is *not* part of tinybnn and tinybnn never imports it: it is the program a competent
PyTorch user would write for the same mathematics (``shared/docs/VDP-MATH.md``), so that the
benchmarks can check tinybnn's losses and gradients against it and time both side by side.
Gradients come from autograd; every operation is batched (no Python loop over images or kernels).

Notation (per image; batched tensors carry a leading B)::

    x   (B, C, H, W) input images        y  (B,) int labels in 0..K-1
    M   conv kernel means (N, C, r, r)   d = C r r, patch order (c, i, j) = M.reshape(N, -1)
    W   fully connected means (D, K)     column j feeds output j
    s   variances, s = softplus(rho) = logaddexp(rho, 0), one per kernel / output unit
    m   mean of an activation            S  its covariance (full (B, K, K) or diagonal (B, K))

Forward moments (first order at the nonlinearities)::

    Linear, point input x:        m = x W + b          S = diag(s ||x||^2)                (exact)
    Linear, random input (m, S):  m' = m W + b         S' = W^T S W + diag(s (tr S + ||m||^2))
    Conv, point input:            m_k = X M_k          S_k = s_k X X^T  (P x P; 0 across k)
    ReLU:                         relu(m)              S (.) dd^T,  d = 1[m > 0]
    Max-pool 2x2 (argmax of m):   gather m             gather rows and columns of S
    Softmax:                      p = softmax(m)       J S J,  J = diag(p) - p p^T

The paper CNN (conv -> ReLU -> max-pool -> flatten -> FC -> softmax; computed, like tinybnn's
``paper_cnn``, with the max-pool first, which gives the same numbers) is computed in the factored
form of VDP-MATH, which never builds a P x P matrix. With ``S_k`` the Q pooled argmax positions
of kernel k, ``X_S`` their patch rows (Q, d), ``d_S`` the ReLU mask there and ``W_k`` the rows
``W[k Q:(k+1) Q]`` of the FC means (channel-major flatten)::

    A_k   = X_S^T (d_S (.) W_k)                      (d, K)
    tau_k = sum_{i in S_k} d_i ||x_i||^2
    t     = sum_k s_k tau_k + ||m_f||^2              m_f: flattened pooled mean (N Q,)
    S_f   = sum_k s_k A_k^T A_k + diag(s_fc t)       (K, K)
    m_out = m_f W + b

Loss: the Gaussian NLL of the one-hot label under the softmax moments, without the constant
``K/2 log 2 pi``, averaged over the batch::

    A = (S_y + S_y^T)/2 + eps I,  eps = 1e-3,   r = p - onehot(y),   L = chol(A)
    nll = 1/2 ||L^-1 r||^2 + sum_i log L_ii

plus a regulariser chosen by ``preset`` (see :func:`regularised_loss`). The vanilla CNN uses
softmax cross-entropy.

Max-pool uses ``ceil_mode=True`` (VDP-MATH: TF "SAME"); for even sizes (24 -> 12) it equals floor
mode. PyTorch's CPU max-pool keeps the first maximum of a window in row-major order, which is the
tie rule of VDP-MATH (``check_torch_reference.py`` verifies it).

Thread count is left to the caller: call ``torch.set_num_threads(n)`` to match tinybnn's.
"""
import numpy as np
import torch
import torch.nn.functional as F

JITTER = 1e-3  # eps added to the output covariance before the Cholesky factorisation
MODELS = ("cnn", "cnn_vanilla", "mlp")
PRESETS = ("elbo", "authors2019", "authors_later")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


# ----------------------------------------------------------------------------- small maps
def softplus(rho):
    """Variance from its parameter: s = log(1 + e^rho), computed as logaddexp(rho, 0)."""
    return torch.logaddexp(rho, torch.zeros_like(rho))


def torch_dtype(dtype):
    """'float64' / 'float32' -> torch dtype; anything else is an error."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


# ----------------------------------------------------------------------------- layers
def linear_point(x, W, s, b):
    """Linear layer on a point input: m = x W + b (B, K); diagonal variance s_j ||x||^2 (B, K)."""
    m = x @ W + b                                           # (B, K)
    v = (x * x).sum(1, keepdim=True) * s                    # (B, K)
    return m, v


def linear_diag(m, v, W, s, b):
    """Linear layer on a random input with diagonal covariance diag(v).

    m' = m W + b  (B, K);  S' = W^T diag(v) W + diag(s (sum v + ||m||^2))  (B, K, K).
    """
    m_out = m @ W + b                                       # (B, K)
    S = (W.T * v.unsqueeze(1)) @ W                          # (B, K, D) @ (D, K) -> (B, K, K)
    t = v.sum(1) + (m * m).sum(1)                           # (B,)
    return m_out, S + torch.diag_embed(t.unsqueeze(1) * s)


def linear_full(m, S, W, s, b):
    """Linear layer on a random input with full covariance S (B, D, D).

    m' = m W + b  (B, K);  S' = W^T S W + diag(s (tr S + ||m||^2))  (B, K, K).
    """
    m_out = m @ W + b                                       # (B, K)
    S_out = W.T @ (S @ W)                                   # (B, K, K)
    t = torch.diagonal(S, dim1=1, dim2=2).sum(1) + (m * m).sum(1)   # (B,)
    return m_out, S_out + torch.diag_embed(t.unsqueeze(1) * s)


def relu_diag(m, v):
    """First-order ReLU, diagonal covariance: relu(m), v (.) d with d = 1[m > 0]."""
    d = (m > 0).to(m.dtype)
    return F.relu(m), v * d


def relu_full(m, S):
    """First-order ReLU, full covariance: relu(m), S (.) d d^T with d = 1[m > 0]."""
    d = (m > 0).to(m.dtype)
    return F.relu(m), S * (d.unsqueeze(2) * d.unsqueeze(1))


def softmax_moments(m, S):
    """First-order softmax: p = softmax(m) (B, K); J S J with J = diag(p) - p p^T (B, K, K)."""
    p = torch.softmax(m, dim=1)                             # (B, K)
    J = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)   # (B, K, K), symmetric
    return p, J @ S @ J


def gaussian_nll(p, S, y):
    """Batch mean of 1/2 r^T A^-1 r + 1/2 log det A (no K/2 log 2 pi), through A = L L^T.

    A = (S + S^T)/2 + eps I,  r = p - onehot(y).
    """
    K = p.shape[1]
    A = 0.5 * (S + S.transpose(1, 2)) + JITTER * torch.eye(K, dtype=S.dtype)   # (B, K, K)
    L = torch.linalg.cholesky(A)                            # (B, K, K), lower
    r = p - F.one_hot(y, K).to(p.dtype)                     # (B, K)
    z = torch.linalg.solve_triangular(L, r.unsqueeze(2), upper=False)          # (B, K, 1)
    logdet_half = torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1)          # (B,)
    return (0.5 * (z * z).sum((1, 2)) + logdet_half).mean()


# ----------------------------------------------------------------------------- networks
def conv_point(x, M):
    """First conv on a point input: mean (B, N, Ho, Wo) and patches X (B, P, d).

    The covariance of kernel k's output map (flattened row-major, P = Ho Wo) is s_k X X^T;
    there is none across kernels. Returned for checks; the network uses the factored form.
    """
    r = M.shape[-1]
    return F.conv2d(x, M), F.unfold(x, r).transpose(1, 2)


def cnn_moments(p, x):
    """Paper CNN, factored first-conv path: logits mean m (B, K) and covariance S_f (B, K, K).

    Shapes: x (B, C, H, W); mu (B, N, Ho, Wo); pooled (B, N, Hp, Wp), Q = Hp Wp, P = Ho Wo;
    patches X (B, P, d); X_S (N, Q, B d); A (N, K, B, d) holds A_k^T of every image.
    The ReLU mask d_S is applied by pointing masked argmax positions at an all-zero patch row
    (index P), so the gathered X_S is already d_S (.) X_S. See the module docstring.
    """
    M, W, b = p["conv.M"], p["fc.M"], p["fc.b"]
    s_conv, s_fc = softplus(p["conv.rho"]), softplus(p["fc.rho"])
    N, _, r, _ = M.shape
    B, K = x.shape[0], W.shape[1]

    mu = F.conv2d(x, M)                                     # (B, N, Ho, Wo)
    # pool, then ReLU, as tinybnn's paper_cnn does: the same numbers as ReLU first, fewer values
    pooled, idx = F.max_pool2d(mu, 2, 2, ceil_mode=True, return_indices=True)
    pooled = F.relu(pooled)
    Q = pooled.shape[2] * pooled.shape[3]
    m_f = pooled.reshape(B, N * Q)                          # channel-major flatten

    with torch.no_grad():                                   # constants: data, masks, argmax
        X = F.unfold(x, r).transpose(1, 2)                  # (B, P, d), rows x_i
        P, d = X.shape[1:]
        X0 = torch.cat([X, X.new_zeros(B, 1, d)], 1)        # (B, P + 1, d), row P is zero
        idx = torch.where(pooled > 0, idx, P)               # d_S = 0 -> the zero row
        rows = idx.reshape(B, N, Q).permute(1, 2, 0) + (P + 1) * torch.arange(B)   # (N, Q, B)
        rows = rows.reshape(-1)
        X_S = X0.reshape(B * (P + 1), d).index_select(0, rows).reshape(N, Q, B * d)
        xx = (X0 * X0).sum(2).reshape(-1)                   # (B (P + 1),)  ||x_i||^2
        tau = xx[rows].reshape(N, Q, B).sum(1).T            # (B, N)  sum_{S_k} d_i ||x_i||^2

    A = torch.bmm(W.reshape(N, Q, K).transpose(1, 2), X_S).reshape(N, K, B, d)   # A_k^T
    S_f = torch.einsum("nkbd,nlbd->bkl", A * s_conv.reshape(N, 1, 1, 1), A)      # (B, K, K)
    t = tau @ s_conv + (m_f * m_f).sum(1)                   # (B,)
    S_f = S_f + torch.diag_embed(t.unsqueeze(1) * s_fc)
    return m_f @ W + b, S_f


def cnn_vanilla_logits(p, x):
    """Vanilla paper CNN (point weights): conv -> max-pool -> ReLU -> flatten -> FC. (B, K)."""
    h = F.relu(F.max_pool2d(F.conv2d(x, p["conv.M"]), 2, 2, ceil_mode=True))
    return h.reshape(x.shape[0], -1) @ p["fc.M"] + p["fc.b"]


def mlp_depth(p):
    """Number of layers L of an MLP parameter dict with keys fc1.*, ..., fcL.*."""
    L = 0
    while f"fc{L + 1}.M" in p:
        L += 1
    if L == 0:
        raise ValueError(f"MLP parameters need keys fc1.M, fc1.rho, fc1.b, ...; got {sorted(p)}")
    return L


def mlp_moments(p, x):
    """VDP MLP on flattened input x (B, D0): logits mean (B, K) and covariance (B, K, K).

    fc1 takes the point input (diagonal covariance); fc2 turns the diagonal into a full
    covariance; later layers take full covariances. ReLU between layers.
    """
    L = mlp_depth(p)

    def layer(i):
        return p[f"fc{i}.M"], softplus(p[f"fc{i}.rho"]), p[f"fc{i}.b"]

    m, v = linear_point(x.reshape(x.shape[0], -1), *layer(1))   # (B, K1), (B, K1)
    if L == 1:
        return m, torch.diag_embed(v)
    m, S = linear_diag(*relu_diag(m, v), *layer(2))             # (B, K2), (B, K2, K2)
    for i in range(3, L + 1):
        m, S = linear_full(*relu_full(m, S), *layer(i))
    return m, S


# ----------------------------------------------------------------------------- losses
def bayesian_units(model, p):
    """Per Bayesian layer: (M_k rows (n, d), s (n,)), the kernels / units that are regularised."""
    if model == "cnn":
        M = p["conv.M"]
        return [(M.reshape(M.shape[0], -1), softplus(p["conv.rho"])),
                (p["fc.M"].T, softplus(p["fc.rho"]))]
    return [(p[f"fc{i}.M"].T, softplus(p[f"fc{i}.rho"])) for i in range(1, mlp_depth(p) + 1)]


def regularised_loss(nll, layers, preset, n_train, prior_var):
    """NLL plus the preset's regulariser; layers from :func:`bayesian_units` (biases excluded).

    elbo:          NLL + 1/n_train sum_layers sum_k 1/2 [d s_k/sp + ||M_k||^2/sp - d + d log(sp/s_k)]
    authors2019:   NLL + 0.002 sum_layers 1/2 [sum_k ||M_k||_1 + mean_k d (s_k - log s_k - 1)]
    authors_later: 1/2 [NLL + 0.01 sum_layers (sum_k ||M_k||^2 + d mean_k (s_k - log s_k - 1))]
    """
    if preset == "elbo":
        kl = sum(0.5 * (d * s / prior_var + (Mk * Mk).sum(1) / prior_var - d
                        + d * (np.log(prior_var) - torch.log(s))).sum()
                 for Mk, s in layers for d in [Mk.shape[1]])
        return nll + kl / n_train
    if preset == "authors2019":
        reg = sum(0.5 * (Mk.abs().sum() + (Mk.shape[1] * (s - torch.log(s) - 1)).mean())
                  for Mk, s in layers)
        return nll + 0.002 * reg
    if preset == "authors_later":
        reg = sum((Mk * Mk).sum() + Mk.shape[1] * (s - torch.log(s) - 1).mean()
                  for Mk, s in layers)
        return 0.5 * (nll + 0.01 * reg)
    raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")


def loss(model, p, x, y, *, preset="elbo", n_train=60000, prior_var=1.0):
    """The training loss as a torch scalar; p holds torch tensors, x (B, C, H, W), y (B,) int64."""
    if model == "cnn_vanilla":
        return F.cross_entropy(cnn_vanilla_logits(p, x), y)
    if model == "cnn":
        m, S = cnn_moments(p, x)
    elif model == "mlp":
        m, S = mlp_moments(p, x)
    else:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    nll = gaussian_nll(*softmax_moments(m, S), y)
    return regularised_loss(nll, bayesian_units(model, p), preset, n_train, prior_var)


# ----------------------------------------------------------------------------- NumPy <-> torch
def to_torch(params, dtype="float64", requires_grad=False):
    """Dict of NumPy arrays -> dict of (leaf) torch tensors in the given dtype, same keys."""
    dt = torch_dtype(dtype)
    return {k: torch.tensor(np.asarray(v), dtype=dt, requires_grad=requires_grad)
            for k, v in params.items()}


def inputs(x, y, dtype="float64"):
    """Convert a batch once: x -> float tensor (no copy when the dtype matches), y -> int64."""
    return (torch.as_tensor(np.asarray(x), dtype=torch_dtype(dtype)),
            torch.as_tensor(np.asarray(y), dtype=torch.int64))


def loss_and_grads(model, params, x, y, *, preset="elbo", n_train=60000, prior_var=1.0,
                   dtype="float64"):
    """Loss (float) and its gradients (dict of NumPy arrays keyed like params) by autograd."""
    p = to_torch(params, dtype, requires_grad=True)
    xt, yt = inputs(x, y, dtype)
    value = loss(model, p, xt, yt, preset=preset, n_train=n_train, prior_var=prior_var)
    value.backward()
    return value.item(), {k: t.grad.numpy() for k, t in p.items()}


# ----------------------------------------------------------------------------- init, training
def _truncated_normal(rng, std, shape):
    """N(0, std^2) truncated at 2 std (resampling outside)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2
    while bad.any():
        z[bad] = rng.standard_normal(bad.sum())
        bad = np.abs(z) > 2
    return std * z


def init_params(model, *, n_kernels=32, hidden=(400,), seed=0, dtype="float64",
                in_shape=(1, 28, 28), kernel_size=5, n_classes=10):
    """Parameters for a standalone run (tinybnn passes its own).

    CNN means N(0, 0.1^2) truncated at 2 sigma; MLP means N(0, 1/D); rho ~ U[-12, -2.2]; b = 0.
    """
    rng = np.random.default_rng(seed)
    np_dt = np.dtype(dtype)
    torch_dtype(dtype)
    C, H, Wd = in_shape
    p = {}
    if model in ("cnn", "cnn_vanilla"):
        N, r, K = n_kernels, kernel_size, n_classes
        Q = -(-(H - r + 1) // 2) * -(-(Wd - r + 1) // 2)     # ceil-mode pooled size
        p["conv.M"] = _truncated_normal(rng, 0.1, (N, C, r, r))
        p["fc.M"] = _truncated_normal(rng, 0.1, (N * Q, K))
        p["fc.b"] = np.zeros(K)
        if model == "cnn":
            p["conv.rho"] = rng.uniform(-12, -2.2, N)
            p["fc.rho"] = rng.uniform(-12, -2.2, K)
    elif model == "mlp":
        sizes = [C * H * Wd, *hidden, n_classes]
        for i, (D, K) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            p[f"fc{i}.M"] = rng.normal(0.0, 1.0 / np.sqrt(D), (D, K))
            p[f"fc{i}.rho"] = rng.uniform(-12, -2.2, K)
            p[f"fc{i}.b"] = np.zeros(K)
    else:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    return {k: v.astype(np_dt) for k, v in p.items()}


class TrainStep:
    """One training step (forward, backward, Adam update) of the reference; what gets timed.

    Adam is torch.optim.Adam with its defaults (betas 0.9, 0.999; eps 1e-8) and learning rate lr.
    """

    def __init__(self, model, params, *, preset="elbo", lr=1e-3, dtype="float64",
                 n_train=60000, prior_var=1.0):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        self.model, self.preset, self.dtype = model, preset, dtype
        self.n_train, self.prior_var = n_train, prior_var
        self.params = to_torch(params, dtype, requires_grad=True)
        self.opt = torch.optim.Adam(self.params.values(), lr=lr)

    def step(self, x, y):
        """Forward, backward and Adam update on one batch; returns the loss before the update."""
        xt, yt = inputs(x, y, self.dtype)
        self.opt.zero_grad(set_to_none=True)
        value = loss(self.model, self.params, xt, yt, preset=self.preset,
                     n_train=self.n_train, prior_var=self.prior_var)
        value.backward()
        self.opt.step()
        return value.item()

    def numpy_params(self):
        """Current parameters as NumPy arrays (copies), keyed like the input."""
        return {k: t.detach().numpy().copy() for k, t in self.params.items()}
