"""The restricted unpickler, tinybnn.pickles: it reads float32 and float64 arrays in every pickle
protocol and from numpy 1.x, admits exactly the globals such pickles name, and refuses a
hand-made numpy state or a huge memo index before numpy or the unpickler sees it. Malicious
pickles given to `tinybnn import` are in tests/test_importers.py."""

import io
import pickle
import re
import struct

import numpy as np
import pytest

from tinybnn.errors import ModelFileError
from tinybnn.pickles import ADMITTED, ArrayUnpickler, unpickle_arrays


class Spy(pickle.Unpickler):
    """The standard unpickler, recording every global a pickle names."""

    def __init__(self, file, seen):
        super().__init__(file)
        self.seen = seen

    def find_class(self, module, name):
        self.seen.add((module, name))
        return super().find_class(module, name)


FLOAT32_ARRAYS = [np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                  np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
                  np.arange(24, dtype=np.float32).reshape(4, 6)[::2, ::3],  # neither C nor F
                  np.zeros((0, 2), np.float32), np.float32([1.5])]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_unpickler_reads_float_arrays_in_every_protocol(protocol):
    blob = pickle.dumps(FLOAT32_ARRAYS, protocol=protocol)
    loaded = ArrayUnpickler(io.BytesIO(blob)).load()
    for a, b in zip(FLOAT32_ARRAYS, loaded):
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_unpickler_reads_numpy_1_pickles(protocol):
    """numpy 1.x named numpy.core (the authors' file: protocol 3, numpy.core.multiarray)."""
    blob = pickle.dumps(FLOAT32_ARRAYS, protocol=protocol)
    old = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert old != blob
    for a, b in zip(FLOAT32_ARRAYS, ArrayUnpickler(io.BytesIO(old)).load()):
        np.testing.assert_array_equal(a, b)


def test_every_global_float_arrays_name_is_admitted_and_each_is_needed():
    """What the pickles of this numpy name, over protocols 0-5, is exactly ADMITTED less the
    other numpy generation's spelling (numpy.core in 1.x, numpy._core in 2.x)."""
    seen = set()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        Spy(io.BytesIO(pickle.dumps(FLOAT32_ARRAYS, protocol=protocol)), seen).load()
    assert seen <= ADMITTED.keys()
    other = "numpy.core." if int(np.__version__.split(".")[0]) >= 2 else "numpy._core."
    assert seen == {k for k in ADMITTED if not k[0].startswith(other)}
    assert {k for k in ADMITTED if k[0].startswith(other)} == {
        (other + "multiarray", "_reconstruct"), (other + "numeric", "_frombuffer")}


class Reduced:
    """Pickles as ``call(*args)`` followed by BUILD with ``state``: hand-made numpy states."""

    def __init__(self, call, args, state):
        self.reduced = (call, args, state)

    def __reduce__(self):
        return self.reduced


RECONSTRUCT = np.zeros(1).__reduce__()[0]                 # numpy's own, as pickles name it


@pytest.mark.parametrize("obj, message", [
    # numpy's __setstate__ would crash on this one (an object array shorter than its shape)
    (Reduced(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (10**7,), np.dtype("O"), False, [1.0])),
     "refused numpy.dtype('O8', False, True)"),
    (Reduced(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (10**7,), np.dtype("f8"), False, b"ab")),
     "refused an array of shape (10000000,) float64 from 2 bytes (80000000 needed)"),
    (Reduced(RECONSTRUCT, (np.ndarray, (10**9,), b"b"), None),
     "refused _reconstruct('numpy.ndarray', (1000000000,), b'b')"),
    (Reduced(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 63)),
     "refused the dtype state (3, '<', None, None, None, -1, -1, 63) of f8"),
])
def test_numpy_never_sees_the_pickles_state(obj, message):
    with pytest.raises(ModelFileError, match=re.escape(message)):
        unpickle_arrays(pickle.dumps(obj, protocol=2))


def test_a_huge_memo_index_is_refused_before_loading():
    blob = b"\x80\x02N" + b"r" + struct.pack("<I", 2**24) + b"."   # LONG_BINPUT 16777216
    with pytest.raises(ModelFileError, match="refused a memo index of 16777216 in a pickle of 9"):
        unpickle_arrays(blob)
