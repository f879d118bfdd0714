"""Weights from elsewhere: tinybnn.model.from_arrays, the authors2019 importer (refusing
malicious pickles) and `tinybnn import`. The restricted unpickler itself is checked in
tests/test_pickles.py."""

import hashlib
import json
import os
import pickle

import numpy as np
import pytest

from tinybnn import cli, data, importers
from tinybnn import io as model_io
from tinybnn.architectures import paper_cnn
from tinybnn.errors import ModelFileError
from tinybnn.evaluate import predict
from tinybnn.importers import AUTHORS2019_KEYS, import_authors2019
from vdp_helpers import assert_same_model

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


# --- malicious pickles: refused by name, nothing run --------------------------------------------

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
