"""Weights from elsewhere: tinybnn.model.from_arrays, the restricted unpickler, the authors2019
importer and `tinybnn import`."""

import hashlib
import io
import json
import os
import pickle
import re
import struct

import numpy as np
import pytest

from tinybnn import cli, data, importers
from tinybnn import io as model_io
from tinybnn.errors import ConfigError, ModelFileError, ShapeError
from tinybnn.evaluate import predict
from tinybnn.importers import ADMITTED, AUTHORS2019_KEYS, ArrayUnpickler, import_authors2019
from tinybnn.model import from_arrays
from tinybnn.architectures import paper_cnn

N = 3


# --- the authors' layout, written independently of tinybnn/importers.py ----------------------

def authors_arrays(model):
    """The six arrays of the authors' pickle, in their order, from a tinybnn paper CNN."""
    p = model.params
    conv = p["conv.M"].transpose(2, 3, 1, 0)               # (k, c, i, j) -> HWIO (i, j, c, k)
    fc = np.empty_like(p["fc.M"])
    for k in range(N):                                     # HWC rows: (h*12 + w)*N + k
        for h in range(12):
            for w in range(12):
                fc[(h * 12 + w) * N + k] = p["fc.M"][k * 144 + h * 12 + w]
    bias_rho = np.full(10, 1e-5, dtype=conv.dtype)
    return [conv.copy(), p["conv.rho"].copy(), fc, p["fc.rho"].copy(), p["fc.b"].copy(),
            bias_rho]


def write_pickle(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.fixture
def original():
    model = paper_cnn(N, seed=1)
    model.params["fc.b"][...] = np.linspace(-0.5, 0.5, 10)      # a bias that is not zero
    return model


@pytest.fixture
def pkl(tmp_path, original):
    return write_pickle(tmp_path / "weights.pkl", authors_arrays(original))


def assert_same_model(imported, original):
    assert imported.spec() == original.spec()
    assert imported.params.keys() == original.params.keys()
    for k, v in original.params.items():
        assert imported.params[k].dtype == v.dtype, k
        np.testing.assert_array_equal(imported.params[k], v, err_msg=k)


def assert_same_predictions(imported, original):
    x = data.load("mnist", test_subset=20, seed=0, dtype=original.dtype.type).test.x
    (m1, c1), (m2, c2) = predict(imported, x), predict(original, x)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(c1, c2)


# --- import_authors2019 -------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["list", "tuple", "dict"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_import_gives_back_the_network_exactly(tmp_path, original, form, protocol):
    arrays = authors_arrays(original)
    obj = {"list": arrays, "tuple": tuple(arrays),
           "dict": dict(zip(AUTHORS2019_KEYS, arrays))}[form]
    path = write_pickle(tmp_path / "w.pkl", obj, protocol)
    model, meta = import_authors2019(path)
    assert_same_model(model, original)
    assert meta["options"]["dataset"] == "mnist" and meta["options"]["kernels"] == N
    assert meta["imported"]["pickle_form"] == form
    assert meta["imported"]["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["imported"]["dropped"]["fc1_bias_sigma"]["max"] == pytest.approx(1e-5)
    json.dumps(meta)                                       # the metadata is JSON-able


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_imported_network_predicts_like_the_original(tmp_path, dtype):
    original = paper_cnn(N, seed=1, dtype=dtype)
    path = write_pickle(tmp_path / "w.pkl", authors_arrays(original))
    model, _ = import_authors2019(path)
    assert_same_model(model, original)
    assert_same_predictions(model, original)


def test_import_does_not_keep_references_to_the_pickled_arrays(pkl, original):
    model, _ = import_authors2019(pkl)
    model.params["conv.M"][...] = 0
    again, _ = import_authors2019(pkl)
    assert_same_model(again, original)


# --- the restricted unpickler -------------------------------------------------------------------

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


class Payload:
    """Unpickling this would call ``call(*args)``."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def payloads(marker):
    """kind -> (an object whose unpickling would create ``marker``, the global it names)."""
    named = {f: f"{pickle.whichmodule(f, f.__name__)}.{f.__name__}" for f in (os.system, open,
                                                                              exec)}
    return {"os.system": (Payload(os.system, f"touch {marker}"), named[os.system]),
            "open": (Payload(open, str(marker), "w"), named[open]),
            "exec": (Payload(exec, f"open({str(marker)!r}, 'w')"), named[exec])}


@pytest.mark.parametrize("where", ["alone", "in the list", "in the dict"])
@pytest.mark.parametrize("kind", ["os.system", "open", "exec"])
def test_a_malicious_pickle_is_refused_without_running(tmp_path, original, where, kind):
    marker = tmp_path / "pwned"
    payload, refused = payloads(marker)[kind]
    arrays = authors_arrays(original)
    obj = {"alone": payload, "in the list": arrays[:2] + [payload] + arrays[3:],
           "in the dict": dict(zip(AUTHORS2019_KEYS, arrays), fc1_bias_mu=payload)}[where]
    path = write_pickle(tmp_path / "evil.pkl", obj)
    with pytest.raises(ModelFileError, match=f"refused to load {refused}"):
        import_authors2019(path)
    assert not marker.exists()


def test_a_malicious_pickle_via_the_command_writes_nothing(tmp_path, capsys):
    marker, out = tmp_path / "pwned", tmp_path / "out.npz"
    payload, refused = payloads(marker)["os.system"]
    path = write_pickle(tmp_path / "evil.pkl", payload, protocol=2)
    assert cli.main(["import", "authors2019", str(path), str(out)]) == 2
    err = one_line_error(capsys)
    assert f"refused to load {refused}" in err and str(path) in err
    assert not marker.exists() and not out.exists()


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
        importers.unpickle_arrays(pickle.dumps(obj, protocol=2))


def test_a_huge_memo_index_is_refused_before_loading():
    blob = b"\x80\x02N" + b"r" + struct.pack("<I", 2**24) + b"."   # LONG_BINPUT 16777216
    with pytest.raises(ModelFileError, match="refused a memo index of 16777216 in a pickle of 9"):
        importers.unpickle_arrays(blob)


# --- bad files: a clear one-line error, exit code 2, nothing written ------------------------------

def one_line_error(capsys):
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinybnn: error: "), captured.err
    return lines[0]


def replaced(arrays, index, value):
    arrays = list(arrays)
    arrays[index] = value
    return arrays


def bad_files(original):
    """name -> (bytes of the file, a fragment of the expected message)."""
    a = authors_arrays(original)
    good = pickle.dumps(a)
    nan_fc = a[2].copy()
    nan_fc[7, 3] = np.nan
    bad = {
        "empty": (b"", "not a readable pickle"),
        "not a pickle": (b"conv1_weight_M = [[0.1, 0.2]]\n", "not a readable pickle"),
        "a model file": (None, "a zip archive (an .npz file?), not a pickle"),
        "truncated": (good[:-200], "not a readable pickle"),
        "bytes after the pickle": (good + b"junk", "4 bytes after the pickle"),
        "one array": (pickle.dumps(a[0]), "expected a list, tuple or dict of 6 arrays, found "
                                          "ndarray"),
        "five arrays": (pickle.dumps(a[:5]), "expected 6 arrays"),
        "seven arrays": (pickle.dumps(a + [a[5]]), "found 7"),
        "dict keys": (pickle.dumps(dict(zip(AUTHORS2019_KEYS[:5], a), conv_m=a[0])),
                      "missing ['fc1_bias_sigma'], unexpected ['conv_m']"),
        "a list, not an array": (pickle.dumps(replaced(a, 1, a[1].tolist())),
                                 "conv1_weight_sigma must be a numpy array, found list"),
        "int array": (pickle.dumps(replaced(a, 1, np.arange(N))),
                      "refused numpy.dtype('i8', False, True): only float32 and float64"),
        "object array": (pickle.dumps(replaced(a, 4, a[4].astype(object))),
                         "refused numpy.dtype('O8', False, True)"),
        "big-endian": (pickle.dumps(replaced(a, 1, a[1].astype(">f8"))),
                       "conv1_weight_sigma must be float32 or float64, found >f8"),
        "mixed dtypes": (pickle.dumps(replaced(a, 3, a[3].astype(np.float32))),
                         "fc1_weight_sigma float32"),
        "conv shape": (pickle.dumps(replaced(a, 0, a[0].reshape(5, 5, N, 1))),
                       f"conv1_weight_M must have shape (5, 5, 1, N) (HWIO), found (5, 5, {N}, 1)"),
        "conv rho, N inconsistent": (pickle.dumps(replaced(a, 1, np.zeros(N + 1))),
                                     f"conv1_weight_sigma expected ({N},), found ({N + 1},)"),
        "fc rows, N inconsistent": (pickle.dumps(replaced(a, 2, np.zeros((144 * (N + 1), 10)))),
                                    f"fc1_weight_mu expected ({144 * N}, 10), found "
                                    f"({144 * (N + 1)}, 10)"),
        "fc rho and bias rho shapes": (pickle.dumps(replaced(replaced(a, 3, np.zeros(11)), 5,
                                                             np.zeros((10, 1)))),
                                       "fc1_weight_sigma expected (10,), found (11,); "
                                       "fc1_bias_sigma expected (10,), found (10, 1)"),
        "NaN": (pickle.dumps(replaced(a, 2, nan_fc)), "fc1_weight_mu holds 1 NaN or Inf"),
        "Inf in the dropped bias rho": (pickle.dumps(replaced(a, 5, np.full(10, np.inf))),
                                        "fc1_bias_sigma holds 10 NaN or Inf"),
    }
    return bad


BAD = sorted(bad_files(paper_cnn(N, seed=1)))


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_one_line_exit_2_and_writes_nothing(tmp_path, original, capsys, case):
    blob, message = bad_files(original)[case]
    path = tmp_path / "weights.pkl"
    if blob is None:                                     # a tinybnn model file is not a pickle
        model_io.save(path, original, {"options": {"dataset": "mnist"}})
    else:
        path.write_bytes(blob)
    out = tmp_path / "out.npz"
    assert cli.main(["import", "authors2019", str(path), str(out)]) == 2
    err = one_line_error(capsys)
    assert message in err and str(path) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pkl"]   # no OUT, no temp


def test_a_missing_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "out.npz"
    assert cli.main(["import", "authors2019", str(tmp_path / "none.pkl"), str(out)]) == 2
    assert f"no file at {tmp_path / 'none.pkl'}" in one_line_error(capsys)
    assert not out.exists()


def test_an_unknown_format_is_a_usage_error(pkl, tmp_path, capsys):
    assert cli.main(["import", "keras", str(pkl), str(tmp_path / "out.npz")]) == 2
    assert "invalid choice: 'keras'" in one_line_error(capsys)


# --- tinybnn import, end to end ----------------------------------------------------------------

def test_import_command_end_to_end(pkl, original, tmp_path, capsys):
    out = tmp_path / "authors.npz"
    assert cli.main(["import", "authors2019", str(pkl), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fc1_bias_sigma (10,) dropped" in printed and "from 1e-05 to 1e-05" in printed
    assert f"wrote {out}" in printed
    model, meta = model_io.load(out)
    assert_same_model(model, original)
    assert meta["options"]["dataset"] == "mnist"
    assert meta["imported"]["source"] == str(pkl)
    assert meta["imported"]["source_sha256"] == hashlib.sha256(pkl.read_bytes()).hexdigest()

    assert cli.main(["evaluate", "--model", str(out), "--test-subset", "50"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["dataset"] == "mnist" and metrics["n_test"] == 50
    assert metrics["n_kernels"] == N and 0 <= metrics["test_accuracy"] <= 1


def test_import_command_counts_the_switched_off_kernels(tmp_path, original, capsys):
    original.params["conv.M"][1] = 5e-5 / 5                 # norm 5e-5: below 1e-3
    path = write_pickle(tmp_path / "w.pkl", authors_arrays(original))
    assert cli.main(["import", "authors2019", str(path), str(tmp_path / "o.npz")]) == 0
    assert f"kernels with a mean norm below 0.001: 1 of {N} (5e-05)" in capsys.readouterr().out


def test_help_lists_import_and_the_formats_agree(capsys):
    assert cli.main(["--help"]) == 0
    assert "import" in capsys.readouterr().out
    assert cli.IMPORT_FORMATS == tuple(importers.IMPORTERS)


# --- from_arrays --------------------------------------------------------------------------------

def params_of(model):
    return {k: v.copy() for k, v in model.params.items()}


def test_from_arrays_builds_a_copy_and_changes_nothing(original):
    arrays = params_of(original)
    before = params_of(original)
    model = from_arrays(original, arrays)
    assert_same_model(model, original)
    model.params["conv.M"][...] = 0                        # the model owns its arrays
    for k in before:
        np.testing.assert_array_equal(arrays[k], before[k])
        np.testing.assert_array_equal(original.params[k], before[k])
    assert_same_model(from_arrays(original.spec(), arrays), original)


def test_from_arrays_takes_the_arrays_dtype():
    template = paper_cnn(2, input_shape=(1, 8, 8), kernel_size=3)
    arrays = {k: v.astype(np.float32) for k, v in template.params.items()}
    model = from_arrays(template, arrays)
    assert model.dtype == np.float32 and template.dtype == np.float64


def test_from_arrays_names_missing_and_unexpected(original):
    arrays = params_of(original)
    del arrays["fc.rho"]
    arrays["fc.bias"] = arrays["fc.b"]
    with pytest.raises(ConfigError, match=r"missing \['fc.rho'\], unexpected \['fc.bias'\]"):
        from_arrays(original, arrays)


def test_from_arrays_names_an_extra_array(original):
    arrays = dict(params_of(original), **{"fc.b_rho": np.zeros(10)})
    with pytest.raises(ConfigError, match=r"missing none, unexpected \['fc.b_rho'\]"):
        from_arrays(original, arrays)


def test_from_arrays_names_every_wrong_shape(original):
    arrays = params_of(original)
    arrays["conv.M"] = arrays["conv.M"].transpose(2, 3, 1, 0)   # HWIO, not converted
    arrays["fc.rho"] = np.zeros(11)
    with pytest.raises(ShapeError, match=rf"conv.M expected \({N}, 1, 5, 5\), found "
                                         rf"\(5, 5, 1, {N}\); fc.rho expected \(10,\), "
                                         rf"found \(11,\)"):
        from_arrays(original, arrays)


def test_from_arrays_refuses_mixed_and_non_float_dtypes(original):
    arrays = params_of(original)
    arrays["fc.b"] = arrays["fc.b"].astype(np.float32)
    with pytest.raises(ShapeError, match="all be float32 or all float64, found .*fc.b float32"):
        from_arrays(original, arrays)
    arrays = {k: v.astype(np.float16) for k, v in params_of(original).items()}
    with pytest.raises(ShapeError, match="all be float32 or all float64"):
        from_arrays(original, arrays)


def test_from_arrays_refuses_nan_and_non_arrays(original):
    arrays = params_of(original)
    arrays["conv.rho"][2] = np.nan
    with pytest.raises(ShapeError, match=r"conv.rho must be finite, found nan at index \(2,\)"):
        from_arrays(original, arrays)
    arrays = dict(params_of(original), **{"fc.b": [0.0] * 10})
    with pytest.raises(ShapeError, match="fc.b must be a numpy array, found list"):
        from_arrays(original, arrays)


def test_from_arrays_refuses_what_is_not_a_network(original):
    with pytest.raises(ConfigError, match="expected a Sequential or its spec"):
        from_arrays("paper_cnn", params_of(original))
    with pytest.raises(ConfigError, match="must be a dict"):
        from_arrays(original, list(params_of(original).values()))


def test_from_arrays_takes_a_mapping_and_names_a_bad_spec(original, tmp_path):
    np.savez(tmp_path / "p.npz", **original.params)
    with np.load(tmp_path / "p.npz") as arrays:
        assert_same_model(from_arrays(original, arrays), original)
    with pytest.raises(ConfigError, match="cannot build a network from this spec: KeyError"):
        from_arrays({"layers": []}, {})
