"""Model files (tinybnn.io): a model and its metadata survive a save and a load bit for bit, at
either dtype; a checkpoint adds the training state, which loads back and is checked against the
model; missing, truncated, corrupted, foreign, newer or otherwise damaged files are refused with
a ModelFileError saying what was expected and found; writes are atomic (an exception, or a
SIGKILL at any moment, leaves the old file or the complete new one, and no stray temporary);
file_size and parameter_bytes count what they say."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

from tinybnn import io
from tinybnn.architectures import mlp
from tinybnn.errors import ConfigError, ModelFileError
from tinybnn.optim import SGD, Adam

from vdp_helpers import digits_cnn


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_model_file_round_trip(tmp_path, dtype):
    model = digits_cnn(seed=4).astype(dtype)
    io.save(tmp_path / "m.npz", model, {"note": "hello", "values": [1, 2]})
    loaded, meta = io.load(tmp_path / "m.npz")
    assert meta == {"note": "hello", "values": [1, 2]}
    assert loaded.spec() == model.spec() and loaded.dtype == dtype
    for k, p in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], p)
    with zipfile.ZipFile(tmp_path / "m.npz") as z:  # no pickled objects inside
        assert all(not name.endswith(".pkl") for name in z.namelist())


def test_damaged_model_files_are_refused(tmp_path):
    good = tmp_path / "good.npz"
    io.save(good, digits_cnn(), {})
    raw = good.read_bytes()
    cases = {}
    cases["truncated"] = raw[: len(raw) // 2]
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    cases["flipped"] = bytes(flipped)
    for name, content in cases.items():
        (tmp_path / f"{name}.npz").write_bytes(content)
        with pytest.raises(ModelFileError, match="not a readable tinybnn model file|damaged"):
            io.load(tmp_path / f"{name}.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a tinybnn model file"):
        io.load(tmp_path / "foreign.npz")
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["__version__"] = np.array(io.FORMAT_VERSION + 1)
    np.savez(tmp_path / "newer.npz", **arrays)
    with pytest.raises(ModelFileError, match="newer tinybnn"):
        io.load(tmp_path / "newer.npz")
    arrays["__version__"] = np.array(io.FORMAT_VERSION)
    arrays["param/fc.M"] = arrays["param/fc.M"][:-1]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"shape.npz: wrong shapes: fc.M expected \("):
        io.load(tmp_path / "shape.npz")  # the checks of model.from_arrays, named by the file
    with np.load(good) as z:
        arrays["param/fc.M"] = np.full_like(z["param/fc.M"], np.nan)
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(ModelFileError, match="nan.npz: fc.M must be finite"):
        io.load(tmp_path / "nan.npz")
    with pytest.raises(ModelFileError, match="no model file"):
        io.load(tmp_path / "missing.npz")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]
    with pytest.raises(ConfigError, match="does not exist"):
        io.atomic_write(tmp_path / "nope" / "x.bin", lambda f: None)


def test_checkpoint_file_layout_and_old_files(tmp_path):
    model = digits_cnn(4, seed=2)
    opt = Adam(1e-3)
    opt.step(model.params, {k: np.ones_like(p) for k, p in model.params.items()})
    rng = np.random.default_rng(3)
    state = {"optimizer": opt.state(), "rng": rng.bit_generator.state, "epochs_done": 0}
    ckpt, plain = tmp_path / "ckpt.npz", tmp_path / "plain.npz"
    io.save(ckpt, model, {"note": 1}, state=state)
    io.save(plain, model, {"note": 1})
    with np.load(ckpt) as z:
        names = set(z.files)
    assert {f"optim/{slot}/{k}" for slot in "mv" for k in model.params} | {"__train__"} <= names
    loaded, meta = io.load(ckpt)  # a checkpoint is also a plain model file
    assert meta == {"note": 1}
    back = io.load_checkpoint(ckpt)
    assert back.state["rng"] == rng.bit_generator.state  # the 128-bit integers survive JSON
    assert back.state["version"] == io.TRAIN_STATE_VERSION
    for k, p in opt.m.items():
        np.testing.assert_array_equal(back.state["optimizer"]["slots"]["m"][k], p)
    again = Adam(1e-3)
    again.load_state(back.state["optimizer"])
    p1, p2 = ({k: v.copy() for k, v in model.params.items()} for _ in range(2))
    g = {k: np.full_like(v, 0.5) for k, v in p1.items()}
    opt.step(p1, g), again.step(p2, g)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert io.load_checkpoint(plain).state is None  # an old file: a model, no state

    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    broken = dict(arrays, **{"optim/m/fc.M": arrays["optim/m/fc.M"][:-1]})
    np.savez(tmp_path / "shape.npz", **broken)
    with pytest.raises(ModelFileError, match="optimiser's m array of fc.M is float64"):
        io.load_checkpoint(tmp_path / "shape.npz")
    broken = {k: v for k, v in arrays.items() if k != "optim/v/fc.b"}
    np.savez(tmp_path / "missing.npz", **broken)
    with pytest.raises(ModelFileError, match="optimiser's v arrays are for the parameters"):
        io.load_checkpoint(tmp_path / "missing.npz")
    broken = dict(arrays, __train__=np.array('{"version": 99}'))
    np.savez(tmp_path / "newer.npz", **broken)
    with pytest.raises(ModelFileError, match="written by a newer tinybnn"):
        io.load_checkpoint(tmp_path / "newer.npz")
    io.load(tmp_path / "newer.npz")  # the model itself is still readable
    with pytest.raises(ConfigError, match="other settings than this optimiser: beta1"):
        Adam(1e-3, beta1=0.5).load_state(back.state["optimizer"])
    with pytest.raises(ConfigError, match="expected the state of a sgd optimiser"):
        SGD(1e-3).load_state(back.state["optimizer"])


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from tinybnn import io
    from tinybnn.architectures import mlp
    from tinybnn.optim import Adam

    model = mlp((784, 200, 10), input_shape=(1, 28, 28), seed=0)
    opt = Adam(1e-3)
    rng = np.random.default_rng(0)
    opt.step(model.params, {k: rng.normal(size=p.shape) for k, p in model.params.items()})
    for i in range(10**6):
        io.save(sys.argv[1], model, {"i": i}, state={"optimizer": opt.state(), "i": i})
        if i == 0:
            print("saved", flush=True)
""")


def test_a_writer_killed_mid_save_leaves_the_previous_checkpoint(tmp_path):
    """Kill a process that saves a 3.7 MB checkpoint in a loop (about 0.2 s a save here) with
    SIGKILL at random moments: every time the file loads, and the temporary file a kill leaves
    breaks neither the next save nor the next load; the next save removes leftovers older than
    a minute (io.STALE_TMP_SECONDS)."""
    target = tmp_path / "model.npz"
    chance, leftovers = random.Random(0), 0
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "saved"
            time.sleep(chance.uniform(0.05, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        ck = io.load_checkpoint(target)  # the old file or the new one, whole
        assert ck.meta["i"] == ck.state["i"] >= 0
        assert sorted(ck.state["optimizer"]["slots"]) == ["m", "v"]
        temporaries = sorted(tmp_path.glob(".model.npz.*.tmp"))
        leftovers = max(leftovers, len(temporaries))
    assert leftovers >= 1, "no kill landed inside a save; the test did not test anything"
    io.save(target, mlp((4, 3)), {"i": -1})  # a save and a load beside the leftovers
    assert io.load(target)[1] == {"i": -1}
    assert len(list(tmp_path.glob(".model.npz.*.tmp"))) == leftovers  # too young to remove
    old = time.time() - 2 * io.STALE_TMP_SECONDS
    for tmp in tmp_path.glob(".model.npz.*.tmp"):
        os.utime(tmp, (old, old))
    io.save(target, mlp((4, 3)), {"i": -2})
    assert list(tmp_path.iterdir()) == [target]


# --- bytes and sizes, damaged metadata and training states, atomic writes ------------------

def entries(path):
    """{name: (dtype, shape, raw bytes)} of every array in an .npz file."""
    with np.load(path) as z:
        return {k: (z[k].dtype, z[k].shape, z[k].tobytes()) for k in z.files}


def test_a_reloaded_model_saves_to_the_same_bytes(tmp_path):
    """-0.0 and a subnormal survive (array_equal would not tell -0.0 from 0.0): every entry of
    the file written from the loaded model is the same bytes as the first file's."""
    model = mlp((4, 3, 2), seed=1).astype(np.float32)
    model.params["fc1.b"][:2] = [-0.0, np.finfo(np.float32).smallest_subnormal]
    io.save(tmp_path / "a.npz", model)
    loaded, meta = io.load(tmp_path / "a.npz")
    assert meta == {}  # meta=None is stored as an empty dict
    assert loaded.params["fc1.b"][:2].tobytes() == model.params["fc1.b"][:2].tobytes()
    io.save(tmp_path / "b.npz", loaded, meta)
    first, second = entries(tmp_path / "a.npz"), entries(tmp_path / "b.npz")
    assert first == second
    assert {k for k in first if k.startswith("param/")} == {f"param/{k}" for k in model.params}


def test_file_size_is_the_size_of_the_saved_file(tmp_path):
    model, meta = mlp((4, 3, 2), seed=2), {"note": "x" * 50}
    io.save(tmp_path / "m.npz", model, meta)
    assert io.file_size(model, meta) == (tmp_path / "m.npz").stat().st_size


def test_parameter_bytes_counts_every_parameter_at_its_dtype():
    # mlp 4-3-2: fc1 M 4x3 + rho 3 + b 3, fc2 M 3x2 + rho 2 + b 2 = 12 + 6 + 6 + 4 = 28 numbers
    assert io.parameter_bytes(mlp((4, 3, 2))) == 28 * 8
    assert io.parameter_bytes(mlp((4, 3, 2)).astype(np.float32)) == 28 * 4
    assert io.parameter_bytes(mlp((4, 3, 2), bayesian=False)) == (12 + 3 + 6 + 2) * 8


def test_damaged_architecture_metadata_or_version_is_refused(tmp_path):
    io.save(tmp_path / "good.npz", mlp((4, 3)), {"a": 1})
    with np.load(tmp_path / "good.npz") as z:
        good = {k: z[k] for k in z.files}
    cases = {"spec": dict(good, __spec__=np.array("{not json")),
             "meta": dict(good, __meta__=np.array('{"a": ')),
             "nospec": {k: v for k, v in good.items() if k != "__spec__"}}
    for name, arrays in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(ModelFileError, match=f"{name}.npz: the architecture or metadata is "
                                                 f"missing or damaged"):
            io.load(tmp_path / f"{name}.npz")
    np.savez(tmp_path / "zero.npz", **dict(good, __version__=np.array(0)))
    with pytest.raises(ModelFileError, match="zero.npz has an invalid format version 0"):
        io.load(tmp_path / "zero.npz")


@pytest.fixture
def checkpoint(tmp_path):
    """(path, arrays) of a small checkpoint: an MLP and an Adam state after one step."""
    model, opt = mlp((4, 3), seed=3), Adam(1e-3)
    opt.step(model.params, {k: np.ones_like(p) for k, p in model.params.items()})
    path = tmp_path / "ckpt.npz"
    io.save(path, model, {}, state={"optimizer": opt.state(), "epochs_done": 0})
    with np.load(path) as z:
        return path, {k: z[k] for k in z.files}


def test_a_damaged_training_state_is_refused(tmp_path, checkpoint):
    path, arrays = checkpoint
    assert io.load_checkpoint(path).state["optimizer"]["t"] == 1  # the good one loads
    train = json.loads(str(arrays["__train__"]))
    cases = {
        "no_train": ({k: v for k, v in arrays.items() if k != "__train__"},
                     r"holds optimiser arrays \(\['m', 'v'\]\) but no __train__ state: the "
                     r"file is damaged"),
        "bad_json": (dict(arrays, __train__=np.array('{"version": 1,')),
                     r"the training state \(__train__\) is damaged"),
        "version0": (dict(arrays, __train__=np.array(json.dumps(dict(train, version=0)))),
                     "the training state has an invalid version 0"),
        "slots": (dict(arrays, __train__=np.array(json.dumps(
            dict(train, optimizer=dict(train["optimizer"], slots=["m"]))))),
                  r"lists the optimiser arrays \['m'\], the file holds \['m', 'v'\]"),
        "nan": (dict(arrays, **{"optim/v/fc1.b": np.full_like(arrays["optim/v/fc1.b"],
                                                             np.nan)}),
                "the optimiser's v array of fc1.b holds NaN or Inf"),
        "dtype": (dict(arrays, **{"optim/m/fc1.M": arrays["optim/m/fc1.M"].astype(np.float32)}),
                  r"the optimiser's m array of fc1.M is float32 \(4, 3\), the parameter is "
                  r"float64 \(4, 3\)"),
    }
    for name, (broken, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **broken)
        with pytest.raises(ModelFileError, match=message):
            io.load_checkpoint(tmp_path / f"{name}.npz")
        io.load(tmp_path / f"{name}.npz")  # the model itself is still readable


def test_save_refuses_a_state_without_optimiser_slots_and_writes_nothing(tmp_path):
    for state in ({"epochs_done": 1}, {"optimizer": {"name": "adam"}}):
        with pytest.raises(ConfigError, match="a training state needs an 'optimizer' dict"):
            io.save(tmp_path / "m.npz", mlp((4, 3)), {}, state=state)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_no_file_when_interrupted_and_gives_usual_permissions(tmp_path):
    target = tmp_path / "new.bin"

    def interrupted(f):
        f.write(b"part")
        raise KeyboardInterrupt  # not an Exception: the clean-up must still run

    with pytest.raises(KeyboardInterrupt):
        io.atomic_write(target, interrupted)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file
    io.atomic_write(target, lambda f: f.write(b"whole"))
    assert target.read_bytes() == b"whole"
    assert list(tmp_path.iterdir()) == [target]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
