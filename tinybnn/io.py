"""Model files: one ``.npz`` holding the architecture, the parameters and free-form metadata,
and, in a training checkpoint, the state that lets the training continue.

Layout (no pickle anywhere; JSON travels as a 0-d unicode array)::

    __format__     "tinybnn-model"
    __version__    FORMAT_VERSION (an int)
    __spec__       JSON of Sequential.spec(): task, input shape, layers
    __meta__       JSON: preset, training settings, metrics, anything the caller adds
    param/<name>   one array per parameter, e.g. param/conv.M

    only in a checkpoint that :func:`tinybnn.train.fit` can resume (:func:`load_checkpoint`):
    __train__      JSON of the training state: its own version (TRAIN_STATE_VERSION), the
                   optimiser's scalars (name, step count t, hyperparameters, the names of its
                   array slots), the shuffle's numpy Generator state (bit_generator.state), the
                   position (complete epochs, updates done in the next one), that epoch's
                   running sums and unit snapshots so far, and the settings the numbers
                   depend on (fit refuses to resume with others)
    optim/<slot>/<name>   the optimiser's per-parameter arrays: optim/m/conv.M and
                   optim/v/conv.M for Adam, optim/u/conv.M for SGD (the parameter's dtype)

The training state is optional and a reader ignores entries it does not know, so it does not
change FORMAT_VERSION: every file written before it existed loads as a model, as before, and
:func:`load` reads a checkpoint as a model (a finished run is saved without the state). A state
whose arrays do not match the model's parameters (names, shapes, dtype) is refused.

Files are written atomically: to a temporary file ``.<name>.<random>.tmp`` in the same folder,
flushed to disk, then renamed over the target, so an interrupted run never leaves a half-written
model: a process killed at any moment (even by SIGKILL, which runs no clean-up) leaves the old
file or the complete new one. A kill before the rename leaves the temporary file behind; it
never has the target's name, so loading ignores it, and the next successful write of the same
target removes such leftovers that are more than a minute old (a younger one may belong to a
writer still at work). Loading a missing, truncated, corrupted (zip CRC), foreign or
newer-version file raises :class:`~tinybnn.errors.ModelFileError` saying what was expected and
what was found.
"""

import glob
import io
import json
import os
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import ConfigError, ModelFileError, TinyBNNError
from .model import Sequential, from_arrays

FORMAT = "tinybnn-model"
FORMAT_VERSION = 1
TRAIN_STATE_VERSION = 1  # of the __train__ entry; bumped when its layout changes

#: Temporary files left by a killed writer are removed by the next write once this old (s).
STALE_TMP_SECONDS = 60.0


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns: the model, its metadata, the training state (None
    for a file without one) and the path it was read from."""

    model: Sequential
    meta: dict
    state: dict | None
    path: Path


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it over
    ``path``. The target is either the old file or the complete new one, never half of one."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"cannot write {path}: the folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise ConfigError(f"cannot write in {folder}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _remove_stale_temporaries(folder, path.name)


def _remove_stale_temporaries(folder, name):
    """Delete the ``.<name>.*.tmp`` files in ``folder`` older than STALE_TMP_SECONDS: what
    writers killed before their rename left behind (a younger one may be another writer's)."""
    cutoff = time.time() - STALE_TMP_SECONDS
    for tmp in folder.glob(f".{glob.escape(name)}.*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:  # gone already, or not ours to remove: leave it
            pass


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _arrays(model, meta, state=None):
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays["__format__"] = np.array(FORMAT)
    arrays["__version__"] = np.array(FORMAT_VERSION)
    arrays["__spec__"] = np.array(json.dumps(model.spec()))
    arrays["__meta__"] = np.array(json.dumps(meta or {}))
    if state is not None:
        arrays.update(_state_arrays(state))
    return arrays


def _state_arrays(state):
    """The __train__ JSON and the optim/<slot>/<name> arrays of a training state."""
    opt = state.get("optimizer")
    if not isinstance(opt, dict) or not isinstance(opt.get("slots"), dict):
        raise ConfigError(f"a training state needs an 'optimizer' dict with 'slots' {{slot: "
                          f"{{name: array}}}}, found {type(opt).__name__}")
    arrays = {f"optim/{slot}/{k}": np.asarray(v)
              for slot, named in opt["slots"].items() for k, v in named.items()}
    scalars = dict(state, version=TRAIN_STATE_VERSION,
                   optimizer=dict(opt, slots=sorted(opt["slots"])))
    arrays["__train__"] = np.array(json.dumps(scalars))
    return arrays


def save(path, model, meta=None, state=None):
    """Write ``model`` and the JSON-able dict ``meta`` to ``path`` (atomically); with
    ``state`` (a training state from :func:`tinybnn.train.fit`: JSON-able, but for the arrays
    in ``state["optimizer"]["slots"]``), a checkpoint that fit can resume."""
    arrays = _arrays(model, meta, state)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def file_size(model, meta=None):
    """Bytes the model file of ``model`` takes (written to memory, not to disk)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **_arrays(model, meta))
    return buffer.tell()


def load(path):
    """Read a model file -> (Sequential with the stored parameters, meta dict). A checkpoint's
    training state is not read (:func:`load_checkpoint` reads it)."""
    model, meta, _ = _read(path)
    return model, meta


def load_checkpoint(path):
    """Read a model file with its training state -> :class:`Checkpoint` (model, meta, state,
    path); state is None for a file without one (a finished run, or one written before
    checkpoints could be resumed). The state's arrays are checked against the model's
    parameters: the same names, shapes and dtype, finite values."""
    model, meta, arrays = _read(path)
    path = Path(path)
    slots = {}
    for key, v in arrays.items():
        if key.startswith("optim/"):
            slot, _, name = key[len("optim/"):].partition("/")
            slots.setdefault(slot, {})[name] = v
    if "__train__" not in arrays:
        if slots:
            raise ModelFileError(f"{path} holds optimiser arrays ({sorted(slots)}) but no "
                                 f"__train__ state: the file is damaged")
        return Checkpoint(model, meta, None, path)
    try:
        state = json.loads(str(arrays["__train__"]))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: the training state (__train__) is damaged ({err})") from None
    version = state.get("version", -1) if isinstance(state, dict) else -1
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: the training state has an invalid version {version!r}")
    if version > TRAIN_STATE_VERSION:
        raise ModelFileError(f"{path}: its training state was written by a newer tinybnn "
                             f"(version {version}); this tinybnn resumes versions up to "
                             f"{TRAIN_STATE_VERSION}")
    opt = state.get("optimizer")
    listed = opt.get("slots") if isinstance(opt, dict) else None
    if not isinstance(listed, list) or not set(slots) <= set(listed):
        raise ModelFileError(f"{path}: the training state lists the optimiser arrays {listed}, "
                             f"the file holds {sorted(slots)}")
    params = model.params
    for slot in listed:
        named = slots.get(slot, {})
        if named and named.keys() != params.keys():
            raise ModelFileError(f"{path}: the optimiser's {slot} arrays are for the parameters "
                                 f"{sorted(named)}, the model has {sorted(params)}")
        for k, v in named.items():
            if v.shape != params[k].shape or v.dtype != params[k].dtype:
                raise ModelFileError(f"{path}: the optimiser's {slot} array of {k} is "
                                     f"{v.dtype} {v.shape}, the parameter is "
                                     f"{params[k].dtype} {params[k].shape}")
            if not np.all(np.isfinite(v)):
                raise ModelFileError(f"{path}: the optimiser's {slot} array of {k} holds NaN "
                                     f"or Inf")
    state["optimizer"] = dict(opt, slots={slot: slots.get(slot, {}) for slot in listed})
    return Checkpoint(model, meta, state, path)


def _read(path):
    """(model, meta, every array of the file by name), checked."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise ModelFileError(f"{path} is not a readable tinybnn model file (truncated or "
                             f"corrupted?): {err}") from None
    fmt = str(arrays.get("__format__", ""))
    if fmt != FORMAT:
        raise ModelFileError(f"{path} is not a tinybnn model file: expected __format__ "
                             f"{FORMAT!r}, found {fmt or 'none'}")
    version = int(arrays.get("__version__", -1))
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer tinybnn (format version {version});"
                             f" this tinybnn reads versions up to {FORMAT_VERSION}")
    if version < 1:
        raise ModelFileError(f"{path} has an invalid format version {version}")
    try:
        spec, meta = json.loads(str(arrays["__spec__"])), json.loads(str(arrays["__meta__"]))
    except (KeyError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: the architecture or metadata is missing or damaged "
                             f"({err})") from None
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    try:  # the architecture rebuilt, and the parameters checked against it, by from_arrays
        model = from_arrays(spec, params)
    except TinyBNNError as err:
        raise ModelFileError(f"{path}: {err}") from None
    return model, meta, arrays


def parameter_bytes(model):
    """Bytes the parameters take in memory, at their dtype (the model file is compressed and
    holds the architecture and metadata too: :func:`file_size`)."""
    return int(sum(v.nbytes for v in model.params.values()))
