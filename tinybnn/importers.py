"""Weights trained elsewhere, as tinybnn networks.

``authors2019``: the weights pickle the authors' 2019 TensorFlow 1 code writes (GitHub
dimahdera/Variational-Density-Propagation-CNN-MNIST, ``EVI_CNN_mnist.py``:
``pickle.dump([conv_m, conv_s, fc_m, fc_s, b_m, b_s], f)``; the repository ships its N = 32
run as ``EVI_with_sigma_0.1/epochs_10/BayesCNN_weights_features.pkl``).

The file holds six float arrays, as a list or tuple in this order, or as a dict with these keys
(the authors' TensorFlow variable names); N is the number of kernels::

    key                  shape        authors' layout               tinybnn parameter
    conv1_weight_M       (5, 5, 1, N) conv means, HWIO (i, j, c, k)  conv.M (N, 1, 5, 5)
    conv1_weight_sigma   (N,)         conv rho                       conv.rho (N,)
    fc1_weight_mu        (144 N, 10)  FC means, rows in HWC order:   fc.M (144 N, 10), rows
                                      (h * 12 + w) * N + k           k * 144 + h * 12 + w
    fc1_weight_sigma     (10,)        FC rho                         fc.rho (10,)
    fc1_bias_mu          (10,)        FC bias                        fc.b (10,)
    fc1_bias_sigma       (10,)        FC bias rho                    dropped

(h, w) is a position of the 12 x 12 pooled map, k a kernel. The "sigma" arrays are rho, as in
tinybnn: the authors' code takes ``log(1 + exp(sigma))`` as the variance. tinybnn's Linear has
point biases, no bias variance, so ``fc1_bias_sigma`` is not used: the metadata and the
command's output say so, with its values' range. The network is the Bayesian
``paper_cnn(N)`` for MNIST (28 x 28 inputs), in the arrays' dtype.

The pickle is read by :func:`tinybnn.pickles.unpickle_arrays`, which admits numpy float arrays
only and refuses anything else before it runs. The functions here read and return; they write
nothing (``tinybnn import`` saves the model with :func:`tinybnn.io.save`).
"""

import hashlib

import numpy as np

from .architectures import paper_cnn
from .errors import ModelFileError
from .model import from_arrays
from .pickles import naming, read_bytes, unpickle_arrays

# ---------------------------------------------------------------------------------------------
# authors2019
# ---------------------------------------------------------------------------------------------

#: The authors' six arrays, in the order of their list.
AUTHORS2019_KEYS = ("conv1_weight_M", "conv1_weight_sigma", "fc1_weight_mu",
                    "fc1_weight_sigma", "fc1_bias_mu", "fc1_bias_sigma")
POOLED = (12, 12)          # the pooled map of a 5 x 5 VALID conv on 28 x 28, then 2 x 2 pooling
N_CLASSES = 10


def authors2019_shapes(n_kernels):
    """{key: shape} of the authors' arrays for ``n_kernels`` kernels (the table above)."""
    L, K = POOLED[0] * POOLED[1], N_CLASSES
    return {"conv1_weight_M": (5, 5, 1, n_kernels), "conv1_weight_sigma": (n_kernels,),
            "fc1_weight_mu": (L * n_kernels, K), "fc1_weight_sigma": (K,),
            "fc1_bias_mu": (K,), "fc1_bias_sigma": (K,)}


def authors2019_named(obj):
    """{key: array} from the unpickled object: a list/tuple of six arrays in the authors' order,
    or a dict with exactly :data:`AUTHORS2019_KEYS`. Returns (named, "list" or "dict")."""
    if isinstance(obj, (list, tuple)):
        if len(obj) != len(AUTHORS2019_KEYS):
            raise ModelFileError(f"expected {len(AUTHORS2019_KEYS)} arrays "
                                 f"({', '.join(AUTHORS2019_KEYS)}), found {len(obj)}")
        return dict(zip(AUTHORS2019_KEYS, obj)), type(obj).__name__
    if isinstance(obj, dict):
        missing = [k for k in AUTHORS2019_KEYS if k not in obj]
        unexpected = sorted(set(obj) - set(AUTHORS2019_KEYS), key=repr)
        if missing or unexpected:
            raise ModelFileError(f"expected a dict with keys {', '.join(AUTHORS2019_KEYS)}; "
                                 f"missing {missing or 'none'}, unexpected "
                                 f"{unexpected or 'none'}")
        return {k: obj[k] for k in AUTHORS2019_KEYS}, "dict"
    raise ModelFileError(f"expected a list, tuple or dict of {len(AUTHORS2019_KEYS)} arrays, "
                         f"found {type(obj).__name__}")


def check_authors2019(named):
    """Check the authors' arrays: numpy float arrays, finite, of the shapes for one N (taken
    from ``conv1_weight_M``'s last axis). Returns N."""
    for k, v in named.items():
        if not isinstance(v, np.ndarray):
            raise ModelFileError(f"{k} must be a numpy array, found {type(v).__name__}")
        if v.dtype not in (np.float32, np.float64):
            raise ModelFileError(f"{k} must be float32 or float64, found {v.dtype}")
    if len({v.dtype for v in named.values()}) != 1:
        found = ", ".join(f"{k} {v.dtype}" for k, v in named.items())
        raise ModelFileError(f"the arrays must share one dtype, found {found}")
    conv = named["conv1_weight_M"]
    if conv.ndim != 4 or conv.shape[:3] != (5, 5, 1) or conv.shape[3] < 1:
        raise ModelFileError(f"conv1_weight_M must have shape (5, 5, 1, N) (HWIO), found "
                             f"{conv.shape}")
    n = conv.shape[3]
    wrong = [f"{k} expected {shape}, found {named[k].shape}"
             for k, shape in authors2019_shapes(n).items() if named[k].shape != shape]
    if wrong:
        raise ModelFileError(f"the arrays disagree with N = {n} kernels (from conv1_weight_M "
                             f"{conv.shape}): {'; '.join(wrong)}")
    for k, v in named.items():
        if not np.all(np.isfinite(v)):
            raise ModelFileError(f"{k} holds {int(np.sum(~np.isfinite(v)))} NaN or Inf "
                                 f"values")
    return n


def hwc_rows_to_channel_major(fc, n_kernels):
    """FC rows from the authors' HWC flatten, index (h W + w) N + k, to tinybnn's channel-major
    one, index k L + h W + w (tinybnn/layers/flatten.py): (L N, K) -> (N L, K)."""
    L = fc.shape[0] // n_kernels
    return fc.reshape(L, n_kernels, fc.shape[1]).transpose(1, 0, 2).reshape(fc.shape)


def authors2019_params(named, n_kernels):
    """tinybnn's {name: array} from the authors' checked arrays (fc1_bias_sigma left out)."""
    return {"conv.M": named["conv1_weight_M"].transpose(3, 2, 0, 1),   # HWIO -> (N, C, r, r)
            "conv.rho": named["conv1_weight_sigma"],
            "fc.M": hwc_rows_to_channel_major(named["fc1_weight_mu"], n_kernels),
            "fc.rho": named["fc1_weight_sigma"],
            "fc.b": named["fc1_bias_mu"]}


def import_authors2019(path):
    """Read the authors' weights pickle at ``path`` -> (Bayesian ``paper_cnn(N)``, metadata).

    The metadata (JSON-able) names the dataset (``options.dataset`` "mnist", which ``tinybnn
    evaluate`` reads), the source file, its size and sha256, the pickle's form, and under
    ``converted`` and ``dropped`` what became of each array. Raises ModelFileError (see
    :func:`tinybnn.pickles.read_arrays_pickle`, :func:`authors2019_named`,
    :func:`check_authors2019`).
    """
    data = read_bytes(path)
    with naming(path):
        named, form = authors2019_named(unpickle_arrays(data))
        n = check_authors2019(named)
    model = from_arrays(paper_cnn(n), authors2019_params(named, n))
    return model, _authors2019_meta(path, data, form, named, n)


_AS_RHO = "unchanged (a rho: the variance is softplus(rho))"


def _authors2019_meta(path, data, form, named, n):
    shapes = {k: list(v.shape) for k, v in named.items()}
    bias_rho = named["fc1_bias_sigma"]
    return {
        "options": {"dataset": "mnist", "model": "cnn", "kernels": n, "vanilla": False},
        "imported": {
            "format": "authors2019", "source": str(path), "source_bytes": len(data),
            "source_sha256": hashlib.sha256(data).hexdigest(), "pickle_form": form,
            "dtype": str(named["conv1_weight_M"].dtype), "source_shapes": shapes,
            "converted": [
                f"conv1_weight_M {tuple(shapes['conv1_weight_M'])} HWIO -> conv.M "
                f"({n}, 1, 5, 5), transposed (3, 2, 0, 1)",
                f"conv1_weight_sigma ({n},) -> conv.rho, {_AS_RHO}",
                f"fc1_weight_mu ({144 * n}, 10) -> fc.M, rows reordered from HWC "
                f"(h*12 + w)*{n} + k to channel-major k*144 + h*12 + w",
                f"fc1_weight_sigma (10,) -> fc.rho, {_AS_RHO}",
                "fc1_bias_mu (10,) -> fc.b, unchanged"],
            "dropped": {"fc1_bias_sigma": {
                "why": "tinybnn's Linear has point biases, no bias variance",
                "min": float(bias_rho.min()), "max": float(bias_rho.max())}},
        },
    }


#: The formats ``tinybnn import`` reads: name -> function(path) -> (model, meta).
IMPORTERS = {"authors2019": import_authors2019}
