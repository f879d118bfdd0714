"""Property-based tests (hypothesis) of every layer's contract, on every structure it accepts.

Which structures a layer accepts is read from its ``rules`` (a structure is accepted when it or a
class it derives from has a rule: a ``Projected`` is a ``Full``); ``OUTPUT_TYPE`` below is the
docstring tables written out, and ``test_rules_match_the_docstring_tables`` keeps the two in
step. For random small shapes (batch 1-3, channels and kernels 1-3, spatial sizes 1-4 and odd
ones, units 1-5), both dtypes, Bayesian and vanilla variants, the properties are:

1. forward: the output has the structure type and the field shapes the layer's docstring
   promises, keeps the layer's dtype, is finite, and its covariance is symmetric positive
   semi-definite (Diagonal: non-negative variances; Factored: PSD blocks ``s_k F_k F_k^T``),
   within a tolerance looser in float32; the mean follows the documented mean path;
2. backward (float64 only): central differences of a random linear functional of the output
   (``vdp_helpers.probe``) through :func:`tinybnn.gradcheck.check_gradient`, for every
   parameter and every input moment, on a random subset of entries;
3. refusals: an unaccepted structure raises StructureError naming the layer, the structures it
   takes, and the structure and mean shape found; a wrong feature or channel count, a wrong
   number of axes, a map smaller than the kernel, a wrong dtype raise ShapeError naming what was
   expected and what was found.

Every random number comes from ``np.random.default_rng(seed)`` with a hypothesis-drawn seed;
hypothesis itself is derandomized (the same examples on every run) and writes no database.
"""

import re

import numpy as np
import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

from tinybnn.errors import ShapeError, StructureError
from tinybnn.gaussian import (STRUCTURES, Diagonal, Factored, FlatFactored, Full, Point,
                              Projected)
from tinybnn.gradcheck import check_gradient
from tinybnn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, ReLUExact, Softmax
from vdp_helpers import (dense_blocks, input_arrays, input_grad, probe, random_diagonal,
                         random_factored, random_full, random_point, random_projected)

# -- hypothesis settings: deterministic, no example database, few examples --------------------
FORWARD = settings(derandomize=True, database=None, deadline=None, max_examples=20)
GRADIENT = settings(derandomize=True, database=None, deadline=None, max_examples=10)
# a refusal that fails is reported unshrunk: its inputs are
# small already, and shrinking them would take most of the file's time
REFUSAL = settings(derandomize=True, database=None, deadline=None, max_examples=8,
                   phases=(Phase.explicit, Phase.reuse, Phase.generate))

DTYPES = (np.float64, np.float32)
# relative tolerance of the symmetry and PSD checks, and of the mean-path comparisons
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
GRAD_ENTRIES = 8  # entries checked by central differences per array (all, if fewer)
RHO_RANGE = (-3.0, 0.0)  # s in [0.05, 0.69]: the variance path matters in the gradients

# One draw of every dimension any case may need; each case reads the ones it uses.
DIMS = st.fixed_dictionaries(dict(
    B=st.integers(1, 3),  # batch
    C=st.integers(1, 3),  # input channels (the kernels of a Factored input)
    N=st.integers(1, 3),  # a convolution's kernels
    F=st.integers(1, 5),  # features of a vector input
    K=st.integers(1, 5),  # a linear layer's units
    D0=st.integers(1, 5),  # inputs of the layer before a Projected structure
    H=st.integers(1, 4), W=st.integers(1, 4),  # a map (a valid conv adds r - 1)
    P=st.integers(1, 6), d=st.integers(1, 4),  # patches of a Factored input (P, d)
    r=st.integers(1, 3),  # kernel size
    same=st.booleans(),  # 'same' padding (when r is odd)
    bias=st.booleans(),
    maps=st.booleans(),  # Point/Diagonal into ReLU as maps (B, C, H, W) or vectors (B, F)
    binary=st.booleans(),  # a Factored input's scale is a 0/1 ReLU mask, else in [0.5, 1.5]
    seed=st.integers(0, 2**32 - 1),
))

# -- the layers and the docstring tables ---------------------------------------------------------
MAP_FAMILIES = ("Conv2d", "MaxPool2d", "Flatten")  # take maps (B, C, H, W)


def family(variant):
    return variant.split("-")[0]


def padding(dims):
    return "same" if dims["same"] and dims["r"] % 2 else "valid"


def make_layer(variant, dims, dtype, rng, *, d_in=None, c_in=None):
    """The layer named by ``variant``; d_in and c_in override what ``dims`` says."""
    bayesian = not variant.endswith("-vanilla")
    if family(variant) == "Linear":
        return Linear(d_in, dims["K"], bayesian=bayesian, bias=dims["bias"], rng=rng,
                      rho_range=RHO_RANGE, dtype=dtype)
    if family(variant) == "Conv2d":
        return Conv2d(dims["C"] if c_in is None else c_in, dims["N"], dims["r"],
                      padding=padding(dims), bayesian=bayesian, rng=rng, rho_range=RHO_RANGE,
                      dtype=dtype)
    return {"ReLU": ReLU, "ReLUExact": ReLUExact, "MaxPool2d": MaxPool2d, "Flatten": Flatten,
            "Softmax": Softmax}[variant]()


VARIANTS = ("Linear", "Linear-vanilla", "Conv2d", "Conv2d-vanilla", "ReLU", "ReLUExact",
            "MaxPool2d", "Flatten", "Softmax")

# (variant, input structure) -> output structure, as the docstring tables say
OUTPUT_TYPE = {
    ("Linear", Point): Diagonal, ("Linear", Diagonal): Projected, ("Linear", Projected): Full,
    ("Linear", Full): Full, ("Linear", FlatFactored): Full,
    ("Linear-vanilla", Point): Point,
    ("Conv2d", Point): Factored, ("Conv2d", Diagonal): Diagonal, ("Conv2d", Factored): Diagonal,
    ("Conv2d-vanilla", Point): Point,
    **{("ReLU", t): t for t in (Point, Diagonal, Full, Projected, Factored, FlatFactored)},
    ("ReLUExact", Point): Point, ("ReLUExact", Diagonal): Diagonal,
    ("ReLUExact", Full): Full, ("ReLUExact", Projected): Full,  # a Projected is a Full
    **{("MaxPool2d", t): t for t in (Point, Diagonal, Factored)},
    ("Flatten", Point): Point, ("Flatten", Diagonal): Diagonal,
    ("Flatten", Factored): FlatFactored,
    ("Softmax", Point): Point, ("Softmax", Diagonal): Full, ("Softmax", Full): Full,
    ("Softmax", Projected): Full,
}

_DEFAULT_DIMS = dict(K=2, bias=True, C=1, N=1, r=1, same=False)


def accepted(layer):
    """The structures ``layer.forward`` dispatches, read from its rules (and the class tree)."""
    return [t for t in STRUCTURES if any(c in layer.rules for c in t.__mro__)]


_LAYERS = {v: make_layer(v, _DEFAULT_DIMS, np.float64, np.random.default_rng(0), d_in=1)
           for v in VARIANTS}
ACCEPTED = [(v, t) for v in VARIANTS for t in accepted(_LAYERS[v])]
REFUSED = [(v, t) for v in VARIANTS for t in STRUCTURES if t not in accepted(_LAYERS[v])]


def case_id(case):
    return case.__name__ if isinstance(case, type) else str(case)


# -- random inputs -----------------------------------------------------------------------------
def in_dtype(x, dtype):
    """A copy of structure ``x`` with its floating-point arrays in ``dtype``."""
    if isinstance(x, Projected):
        return Projected(*(getattr(x, f).astype(dtype) for f in ("mean", "U", "var", "extra",
                                                                   "scale")))
    if isinstance(x, (Factored, FlatFactored)):
        return type(x)(x.mean.astype(dtype), x.patches.astype(dtype), x.rows,
                       x.scale.astype(dtype), x.s.astype(dtype), x.track_patches)
    if isinstance(x, Full):
        return Full(x.mean.astype(dtype), x.cov.astype(dtype))
    if isinstance(x, Diagonal):
        return Diagonal(x.mean.astype(dtype), x.var.astype(dtype))
    return Point(x.mean.astype(dtype))


def random_input(structure, dims, rng, *, maps, H=None, W=None, C=None, F=None):
    """A random structure of the drawn dims: maps (B, C, H, W) or vectors (B, F)."""
    B, P, d = dims["B"], dims["P"], dims["d"]
    C = dims["C"] if C is None else C
    H, W = (dims["H"] if H is None else H), (dims["W"] if W is None else W)
    F = dims["F"] if F is None else F
    shape = (B, C, H, W) if maps else (B, F)
    if structure is Point:
        return random_point(rng, shape)
    if structure is Diagonal:
        return random_diagonal(rng, shape)
    if structure is Full:
        return random_full(rng, B, F)
    if structure is Projected:
        return random_projected(rng, B, dims["D0"], F)
    return random_factored(rng, B, C, H, W, P, d, flat=structure is FlatFactored,
                           binary_scale=dims["binary"])


def build(variant, structure, dims, dtype, rng):
    """(layer, input) for one case: the input's shape fits the layer."""
    fam = family(variant)
    if fam == "Conv2d":  # a valid conv of an H x W output needs an (H + r - 1) x (W + r - 1) map
        grow = dims["r"] - 1 if padding(dims) == "valid" else 0
        x = random_input(structure, dims, rng, maps=True, H=dims["H"] + grow,
                         W=dims["W"] + grow)
    else:
        maps = fam in MAP_FAMILIES or (fam in ("ReLU", "ReLUExact") and dims["maps"])
        x = random_input(structure, dims, rng, maps=maps)
    d_in = x.mean.shape[1] if fam == "Linear" else None
    return make_layer(variant, dims, dtype, rng, d_in=d_in), in_dtype(x, dtype)


# -- what the docstrings promise about the output ------------------------------------------------
FIELDS = ("mean", "var", "cov", "U", "extra", "scale", "patches", "rows", "s")


def fields(y):
    return {f: tuple(np.shape(getattr(y, f))) for f in FIELDS if hasattr(y, f)}


def expected_fields(variant, x, layer):
    """{field: shape} of the output, from the docstrings' shape tables."""
    out = OUTPUT_TYPE[(variant, type(x))]
    B, fam = x.mean.shape[0], family(variant)
    if fam == "Linear":
        K, D = layer.d_out, layer.d_in
        f = {"mean": (B, K), "var": (B, K)} if out is Diagonal else {"mean": (B, K)}
        if out is Projected:
            f.update(U=(D, K), var=(B, D), extra=(B, K), scale=(B, K))
        if issubclass(out, Full):
            f["cov"] = (B, K, K)
        return f
    if fam == "Conv2d":
        _, C, H, W = x.mean.shape
        r, N = layer.r, layer.n_kernels
        Ho, Wo = (H, W) if layer.padding == "same" else (H - r + 1, W - r + 1)
        maps = (B, N, Ho, Wo)
        if out is Factored:
            return dict(mean=maps, patches=(B, Ho * Wo, C * r * r), rows=maps, scale=maps,
                        s=(N,))
        return {"mean": maps, "var": maps} if out is Diagonal else {"mean": maps}
    if fam == "MaxPool2d":
        B, C, H, W = x.mean.shape
        pooled = (B, C, (H + 1) // 2, (W + 1) // 2)  # ceil mode
        f = fields(x)
        f.update({k: pooled for k in ("mean", "var", "rows", "scale") if k in f})
        return f
    if fam == "Flatten":
        f = fields(x)
        f.update({k: (B, x.mean[0].size) for k in ("mean", "var") if k in f})
        if out is FlatFactored:
            L = x.rows.shape[2] * x.rows.shape[3]
            f.update(rows=(B, x.rows.shape[1], L), scale=(B, x.rows.shape[1], L))
        return f
    if out is type(x):  # ReLU: the structure and every shape unchanged
        return fields(x)
    K = x.mean.shape[1]  # Softmax; ReLUExact on Projected (read as a Full)
    return {"mean": (B, K), "cov": (B, K, K)} if out is Full else {"mean": (B, K)}


def pooled_max(m):
    """2 x 2 window maxima of m (B, C, H, W), ceil mode, written independently of the kernels."""
    B, C, H, W = m.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    out = np.empty((B, C, Ho, Wo), dtype=m.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = m[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(2, 3))
    return out


def check_mean_path(variant, layer, x, y, tol):
    """The output mean is what the docstring's mean equation says."""
    fam, mu = family(variant), x.mean.astype(np.float64)
    close = dict(rtol=tol, atol=tol * max(1.0, np.abs(mu).max()))
    if fam == "Linear":
        M = layer.params["M"].astype(np.float64)
        b = layer.params["b"].astype(np.float64) if layer.has_bias else 0.0
        np.testing.assert_allclose(y.mean, mu @ M + b, **close)  # m_out = M^T mu + b
    elif fam == "ReLU" or (fam == "ReLUExact" and type(x) is Point):
        np.testing.assert_allclose(y.mean, np.maximum(mu, 0), **close)
    elif fam == "ReLUExact":  # E[relu x] >= 0
        assert y.mean.min() >= -close["atol"], y.mean.min()
    elif fam == "MaxPool2d":
        np.testing.assert_allclose(y.mean, pooled_max(mu), **close)
    elif fam == "Flatten":
        np.testing.assert_allclose(y.mean, mu.reshape(mu.shape[0], -1), **close)
    elif fam == "Softmax":  # probabilities
        assert y.mean.min() >= 0.0
        np.testing.assert_allclose(y.mean.sum(axis=1), 1.0, rtol=tol, atol=tol)


def check_psd(name, S, tol):
    """S (n, k, k) symmetric and positive semi-definite, relative to its size."""
    S = np.asarray(S, dtype=np.float64)
    size = max(np.abs(S).max(initial=0.0), np.finfo(float).tiny)
    asym = np.abs(S - S.transpose(0, 2, 1)).max(initial=0.0)
    assert asym <= tol * size, f"{name} not symmetric: |S - S^T| = {asym:.3g}, |S| = {size:.3g}"
    low = np.linalg.eigvalsh((S + S.transpose(0, 2, 1)) / 2).min(initial=0.0)
    assert low >= -tol * size, f"{name} not PSD: smallest eigenvalue {low:.3g}, |S| = {size:.3g}"


def check_covariance(y, tol):
    if isinstance(y, Diagonal):
        size = max(np.abs(y.var).max(initial=0.0), np.finfo(float).tiny)
        assert y.var.min() >= -tol * size, f"negative variance {y.var.min():.3g}"
    elif isinstance(y, Projected):
        for f in ("var", "extra"):
            assert getattr(y, f).min() >= 0.0, f"Projected {f} negative"
        check_psd("Projected cov", y.cov, tol)
    elif isinstance(y, Full):
        check_psd("Full cov", y.cov, tol)
    elif isinstance(y, (Factored, FlatFactored)):
        assert y.s.min() >= 0.0, f"negative kernel variance {y.s.min():.3g}"
        assert y.rows.min() >= 0 and y.rows.max() < y.patches.shape[1], "rows out of range"
        blocks = dense_blocks(y)  # (B, N, L, L)
        check_psd(f"{type(y).__name__} blocks", blocks.reshape(-1, *blocks.shape[2:]), tol)


# -- 1. forward ---------------------------------------------------------------------------------
def test_rules_match_the_docstring_tables():
    """The structures each layer's rules dispatch are exactly those its docstring table lists."""
    for v in VARIANTS:
        documented = {t for (w, t) in OUTPUT_TYPE if w == v}
        assert set(accepted(_LAYERS[v])) == documented, v


@pytest.mark.parametrize("variant,structure", ACCEPTED, ids=case_id)
@FORWARD
@given(dims=DIMS, dtype=st.sampled_from(DTYPES))
def test_forward_contract(variant, structure, dims, dtype):
    rng = np.random.default_rng(dims["seed"])
    layer, x = build(variant, structure, dims, dtype, rng)
    y = layer.forward(x)
    assert type(y) is OUTPUT_TYPE[(variant, structure)], type(y).__name__
    assert fields(y) == expected_fields(variant, x, layer)
    for f in fields(y):
        a = np.asarray(getattr(y, f))
        if f != "rows":
            assert a.dtype == np.dtype(dtype), f"{f}: {a.dtype}, the layer's dtype is {dtype}"
            assert np.all(np.isfinite(a)), f"{f} is not finite"
    tol = TOL[np.dtype(dtype)]
    check_covariance(y, tol)
    check_mean_path(variant, layer, x, y, tol)


# -- 2. backward --------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,structure", ACCEPTED, ids=case_id)
@GRADIENT
@given(dims=DIMS, dense=st.booleans())
def test_backward_matches_central_differences(variant, structure, dims, dense):
    """dense: a Projected output is probed through its dense cov (else through its factors)."""
    rng = np.random.default_rng(dims["seed"])
    layer, x = build(variant, structure, dims, np.float64, rng)
    f, dy = probe(layer.forward(x), rng, dense=dense)
    dx = layer.backward(dy)
    analytic = {k: g.copy() for k, g in layer.grads.items()}

    def loss():
        return f(layer.forward(x))

    results = [check_gradient(loss, p, analytic[k], name=f"d{k}", n_entries=GRAD_ENTRIES,
                              rng=rng) for k, p in layer.params.items()]
    results += [check_gradient(loss, a, input_grad(dx, field, x), name=f"d{field}",
                               symmetric=sym, n_entries=GRAD_ENTRIES, rng=rng)
                for field, a, sym in input_arrays(x)]
    assert all(r.passed for r in results), "\n".join(str(r) for r in results)


# -- 3. refusals --------------------------------------------------------------------------------
def split_message(err):
    """(the part before 'found', the part after): what was expected, what was found."""
    msg = str(err)
    assert "found" in msg, msg
    before, after = msg.split("found", 1)
    return before, after


@pytest.mark.parametrize("variant,structure", REFUSED, ids=case_id)
@REFUSAL
@given(dims=DIMS, dtype=st.sampled_from(DTYPES))
def test_unaccepted_structure_is_refused(variant, structure, dims, dtype):
    rng = np.random.default_rng(dims["seed"])
    x = in_dtype(random_input(structure, dims, rng, maps=dims["maps"]), dtype)
    layer = make_layer(variant, dims, dtype, rng, d_in=x.mean.shape[1])
    with pytest.raises(StructureError) as err:
        layer.forward(x)
    before, after = split_message(err.value)
    names = set(re.findall(r"\b[A-Z]\w*\b", before))
    assert type(layer).__name__ in names, before
    assert names - {type(layer).__name__} == {t.__name__ for t in layer.rules}, before
    assert re.search(rf"\b{structure.__name__}\b", after), after
    assert str(tuple(x.mean.shape)) in after, after


SIZED = [(v, t) for (v, t) in ACCEPTED if family(v) in ("Linear", "Conv2d")]


@pytest.mark.parametrize("variant,structure", SIZED, ids=case_id)
@REFUSAL
@given(dims=DIMS, wrong=st.integers(1, 6), dtype=st.sampled_from(DTYPES))
def test_wrong_feature_or_channel_count_is_refused(variant, structure, dims, wrong, dtype):
    """Linear built for ``wrong`` inputs, Conv2d for ``wrong`` channels, fed the drawn input."""
    rng = np.random.default_rng(dims["seed"])
    good, x = build(variant, structure, dims, dtype, rng)
    right = good.d_in if family(variant) == "Linear" else good.c_in
    assume(wrong != right)
    layer = make_layer(variant, dims, dtype, rng, d_in=wrong, c_in=wrong)
    with pytest.raises(ShapeError) as err:
        layer.forward(x)
    before, after = split_message(err.value)
    expected = f"(B, {wrong})" if family(variant) == "Linear" else f"(B, {wrong}, H, W)"
    assert expected in before, before
    assert str(tuple(x.mean.shape)) in after, after


NDIM_CASES = [(v, t) for (v, t) in ACCEPTED
              if family(v) in ("Linear", "Conv2d", "MaxPool2d", "Flatten", "Softmax")
              and t in (Point, Diagonal)]
EXPECTED_SHAPE = {"Linear": "(B, {d_in})", "Conv2d": "(B, {c_in}, H, W)",
                  "MaxPool2d": "(B, C, H, W)", "Flatten": "(B, C, H, W)", "Softmax": "(B, K)"}


@pytest.mark.parametrize("variant,structure", NDIM_CASES,
                         ids=case_id)
@REFUSAL
@given(dims=DIMS, ndim=st.integers(1, 5), dtype=st.sampled_from(DTYPES))
def test_wrong_number_of_axes_is_refused(variant, structure, dims, ndim, dtype):
    """Maps where vectors belong (a forgotten Flatten), vectors where maps belong, no batch."""
    right = 4 if family(variant) in MAP_FAMILIES else 2
    assume(ndim != right)
    rng = np.random.default_rng(dims["seed"])
    shape = tuple(int(n) for n in rng.integers(1, 4, size=ndim))
    x = in_dtype(random_point(rng, shape) if structure is Point
                 else random_diagonal(rng, shape), dtype)
    layer = make_layer(variant, dims, dtype, rng, d_in=dims["F"])
    with pytest.raises(ShapeError) as err:
        layer.forward(x)
    before, after = split_message(err.value)
    expected = EXPECTED_SHAPE[family(variant)].format(d_in=dims["F"], c_in=dims["C"])
    assert expected in before, before
    assert str(shape) in after, after


CONVS = [(v, t) for (v, t) in ACCEPTED if family(v) == "Conv2d"]


@pytest.mark.parametrize("variant,structure", CONVS, ids=case_id)
@REFUSAL
@given(dims=DIMS, r=st.integers(2, 4), dtype=st.sampled_from(DTYPES))
def test_map_smaller_than_the_kernel_is_refused(variant, structure, dims, r, dtype):
    rng = np.random.default_rng(dims["seed"])
    H, W = min(dims["H"], r - 1), dims["W"]  # at least one side shorter than the kernel
    x = in_dtype(random_input(structure, dims, rng, maps=True, H=H, W=W), dtype)
    layer = make_layer(variant, {**dims, "r": r, "same": False}, dtype, rng)
    with pytest.raises(ShapeError) as err:
        layer.forward(x)
    assert f"input {H}x{W}" in str(err.value) and f"{r}x{r} kernel" in str(err.value)


@pytest.mark.parametrize("variant,structure", SIZED, ids=case_id)
@REFUSAL
@given(dims=DIMS, dtype=st.sampled_from(DTYPES))
def test_wrong_dtype_is_refused(variant, structure, dims, dtype):
    """A layer holding ``dtype`` parameters, fed the input in the other float dtype."""
    other = np.float32 if dtype is np.float64 else np.float64
    rng = np.random.default_rng(dims["seed"])
    good, x = build(variant, structure, dims, other, rng)
    layer = good.astype(dtype)
    with pytest.raises(ShapeError) as err:
        layer.forward(x)
    before, after = split_message(err.value)
    assert np.dtype(dtype).name in before and np.dtype(other).name in after, str(err.value)


@REFUSAL
@given(dims=DIMS)
def test_softmax_refuses_a_cov_that_does_not_match_the_mean(dims):
    rng = np.random.default_rng(dims["seed"])
    B, K = dims["B"], dims["F"]
    for k in [k for k in (K + 1, K - 1) if k >= 1]:  # a cov too large or too small for it
        x = random_full(rng, B, k)
        x = Full(rng.standard_normal((B, K)), x.cov)
        with pytest.raises(ShapeError) as err:
            Softmax().forward(x)
        assert str((B, K)) in str(err.value) and str(x.cov.shape) in str(err.value)
