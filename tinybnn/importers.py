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

The pickle is read by :class:`ArrayUnpickler`, which admits only the globals pickles of float
arrays name (:data:`ADMITTED`) and refuses any other before it is imported or called; even the
admitted ones are stand-ins that check their arguments, so no numpy code sees the file's
state. The functions here read and return; they write nothing (``tinybnn import`` saves the
model with :func:`tinybnn.io.save`).
"""

import codecs
import contextlib
import hashlib
import io
import math
import pickle
import pickletools
import reprlib
import warnings
from pathlib import Path

import numpy as np

from .errors import ModelFileError
from .model import from_arrays
from .architectures import paper_cnn

# ---------------------------------------------------------------------------------------------
# a pickle of numpy arrays, and nothing else
# ---------------------------------------------------------------------------------------------

FLOAT_CODES = ("f4", "f8")           # the dtypes admitted: float32, float64
_NDARRAY = "numpy.ndarray"           # stands for the class numpy.ndarray: an argument, not called
_PLAIN_DTYPE_STATE = (None, None, None, -1, -1, 0)   # a plain float's dtype state, after (3, order)


def _refuse(what):
    raise ModelFileError(f"refused {what}: only float32 and float64 numpy arrays are admitted")


_REPR = reprlib.Repr()
_REPR.maxtuple, _REPR.maxstring, _REPR.maxother = 10, 40, 40


def _short(value):
    """repr of a value read from the file, cut to a readable length."""
    return _REPR.repr(value)


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` in a pickle: a float's spec; BUILD then gives numpy's
    dtype state, (3, byte order, None, None, None, -1, -1, 0) for a plain float."""

    def __init__(self, spec, align=False, copy=True):
        if spec not in FLOAT_CODES or align not in (0, False) or copy not in (1, True):
            _refuse(f"numpy.dtype{_short((spec, align, copy))}")
        self.spec, self.dtype = spec, None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3
                and state[1] in ("<", ">", "=") and state[2:] == _PLAIN_DTYPE_STATE):
            _refuse(f"the dtype state {_short(state)} of {self.spec}")
        self.dtype = np.dtype(self.spec).newbyteorder(state[1])


class _Array:
    """``_reconstruct(numpy.ndarray, (0,), b"b")`` in a pickle (protocols 0-4): an empty array
    that BUILD fills with numpy's array state (1, shape, dtype, is_fortran, data)."""

    def __init__(self, subtype, shape, typecode):
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            _refuse(f"_reconstruct{_short((subtype, shape, typecode))}")
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1
                and state[3] in (False, True)):
            _refuse(f"the array state {_short(state)}")
        _, shape, dtype, is_fortran, data = state
        if isinstance(data, str):                       # a Python 2 pickle, read as latin-1
            data = data.encode("latin1")
        self.array = _from_bytes(data, dtype, shape, "F" if is_fortran else "C")


def _frombuffer(buf, dtype, shape, order):
    """``_frombuffer(buffer, dtype, shape, order)`` in a pickle (protocol 5)."""
    return _from_bytes(buf, dtype, shape, order)


def _from_bytes(data, dtype, shape, order):
    """A new array of ``shape`` and the checked ``dtype`` (a _Dtype) from ``data``, which must
    hold exactly its bytes."""
    if not (isinstance(dtype, _Dtype) and dtype.dtype is not None):
        _refuse(f"an array of dtype {type(dtype).__name__}")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        _refuse(f"an array of shape {_short(shape)}")
    if not isinstance(data, (bytes, bytearray)) or order not in ("C", "F"):
        _refuse(f"an array from {type(data).__name__} in order {_short(order)}")
    size = math.prod(shape) * dtype.dtype.itemsize
    if len(data) != size:
        _refuse(f"an array of shape {shape} {dtype.dtype} from {len(data)} bytes ({size} needed)")
    return np.frombuffer(data, dtype.dtype).reshape(shape, order=order).copy()


def _latin1(text, encoding):
    """``_codecs.encode(text, "latin1")`` in a pickle (protocols 0-2): an array's bytes."""
    if not isinstance(text, str) or encoding != "latin1":
        _refuse(f"_codecs.encode of {type(text).__name__} with encoding {_short(encoding)}")
    return codecs.encode(text, "latin1")


def _empty_bytes():
    """``bytes()`` in a pickle (protocols 0-2): the data of a zero-size array."""
    return b""


#: Every global a pickle of float arrays names -> what this unpickler gives it instead: the
#: placeholders above, which check their arguments and build the arrays with np.frombuffer.
#: numpy 1.x wrote ``numpy.core``, numpy 2.x writes ``numpy._core``; protocols 0-2 code bytes
#: with ``_codecs.encode`` (and empty bytes, the data of a zero-size array, as ``bytes()``).
ADMITTED = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1,
    ("__builtin__", "bytes"): _empty_bytes,
}


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds float32 and float64 numpy arrays (in lists, tuples and dicts,
    with strings and numbers) and nothing else. A global not in :data:`ADMITTED` is refused,
    naming its module and name, before anything is imported or called; the admitted ones are
    placeholders that check their arguments, so no numpy code sees the pickle's state (numpy's
    own ``__setstate__`` trusts it); ``load`` returns the arrays they made. Reads Python 2
    pickles too (latin-1)."""

    def __init__(self, file):
        super().__init__(file, encoding="latin1")

    def load(self):
        return _finished(super().load())

    def find_class(self, module, name):
        try:
            return ADMITTED[(module, name)]
        except KeyError:
            raise ModelFileError(f"refused to load {module}.{name}: this pickle would call "
                                 f"it, and only numpy arrays are admitted") from None


def read_arrays_pickle(path):
    """The object in the pickle at ``path``, read with :class:`ArrayUnpickler`.

    Raises ModelFileError for a missing file, a file that is not a pickle, a truncated one,
    bytes after the pickle, or a global other than numpy's array reconstruction.
    """
    data = _read_bytes(path)
    with _naming(path):
        return unpickle_arrays(data)


def unpickle_arrays(data):
    """The object pickled in the bytes ``data``, read with :class:`ArrayUnpickler`; arrays at
    the top or one level down (in a list, tuple or dict) come back as numpy arrays."""
    if data[:4] == b"PK\x03\x04":
        raise ModelFileError("a zip archive (an .npz file?), not a pickle")
    stream = io.BytesIO(data)
    try:
        _check_opcodes(data)
        obj = ArrayUnpickler(stream).load()
    except ModelFileError:
        raise
    except Exception as err:  # what pickletools and the unpickler raise on bytes that are not
        # a pickle varies (ValueError, UnpicklingError, EOFError, TypeError, ...)
        raise ModelFileError(f"not a readable pickle (truncated, or not a pickle?): "
                             f"{type(err).__name__}: {err}") from None
    if stream.tell() != len(data):
        raise ModelFileError(f"{len(data) - stream.tell()} bytes after the pickle; expected "
                             f"exactly one pickled object")
    return obj


def _check_opcodes(data):
    """Walk the opcodes without running any (pickletools.genops; it raises ValueError on bytes
    that are not a pickle). Refuse a memo index beyond the file's size: the C unpickler
    allocates memory in proportion to it (a 20-byte pickle could ask for 64 GiB)."""
    with warnings.catch_warnings():      # protocol 0's string escapes, in bytes that are not one
        warnings.simplefilter("ignore", DeprecationWarning)
        ops = list(pickletools.genops(data))
    for op, arg, _ in ops:
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > len(data):
            raise ModelFileError(f"refused a memo index of {arg} in a pickle of {len(data)} "
                                 f"bytes")


def _finished(obj):
    """``obj`` with its array placeholders replaced by the arrays."""
    if isinstance(obj, (list, tuple)):
        return type(obj)(_array(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _array(v) for k, v in obj.items()}
    return _array(obj)


def _array(v):
    if isinstance(v, _Array):
        if v.array is None:
            _refuse("an array without its state")
        return v.array
    return v


def _read_bytes(path):
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no file at {path}")
    return path.read_bytes()


@contextlib.contextmanager
def _naming(path):
    """Prefix the message of a ModelFileError raised inside with ``path``."""
    try:
        yield
    except ModelFileError as err:
        raise ModelFileError(f"{path}: {err}") from None


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
    :func:`read_arrays_pickle`, :func:`authors2019_named`, :func:`check_authors2019`).
    """
    data = _read_bytes(path)
    with _naming(path):
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
