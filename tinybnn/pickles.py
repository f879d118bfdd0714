"""Numpy float arrays from a pickle, and nothing else.

A plain ``pickle.load`` is unsafe on a file from elsewhere: a pickle names globals (a module
and a name), and the unpickler imports them and calls them with arguments taken from the
file, so a pickle can run ``os.system`` or ``exec`` with any command. Even numpy's own array
reconstruction trusts the file: its ``__setstate__`` takes the state as given, and an object
array with fewer values than its shape holds crashes the interpreter.

:class:`ArrayUnpickler` admits only the globals pickles of float arrays name (:data:`ADMITTED`)
and refuses any other before it is imported or called; even the admitted ones are stand-ins
that check their arguments, so no numpy code sees the file's state. :func:`unpickle_arrays`
(bytes) and :func:`read_arrays_pickle` (a file) read with it, after walking the opcodes
without running any (:func:`_check_opcodes`); they write nothing.
"""

import codecs
import contextlib
import io
import math
import pickle
import pickletools
import reprlib
import warnings
from pathlib import Path

import numpy as np

from .errors import ModelFileError

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
    data = read_bytes(path)
    with naming(path):
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


def read_bytes(path):
    """The bytes of the file at ``path``; ModelFileError if there is none."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no file at {path}")
    return path.read_bytes()


@contextlib.contextmanager
def naming(path):
    """Prefix the message of a ModelFileError raised inside with ``path``."""
    try:
        yield
    except ModelFileError as err:
        raise ModelFileError(f"{path}: {err}") from None

