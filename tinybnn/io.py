"""Model files: one ``.npz`` holding the architecture, the parameters and free-form metadata.

Layout (no pickle anywhere; JSON travels as a 0-d unicode array)::

    __format__     "tinybnn-model"
    __version__    FORMAT_VERSION (an int)
    __spec__       JSON of Sequential.spec(): task, input shape, layers
    __meta__       JSON: preset, training settings, metrics, anything the caller adds
    param/<name>   one array per parameter, e.g. param/conv.M

Files are written atomically: to a temporary file in the same folder, flushed to disk, then
renamed over the target, so an interrupted run never leaves a half-written model. Loading a
missing, truncated, corrupted (zip CRC), foreign or newer-version file raises
:class:`~tinybnn.errors.ModelFileError` saying what was expected and what was found.
"""

import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import ConfigError, ModelFileError, TinyBNNError
from .model import Sequential

FORMAT = "tinybnn-model"
FORMAT_VERSION = 1


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


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _arrays(model, meta):
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays["__format__"] = np.array(FORMAT)
    arrays["__version__"] = np.array(FORMAT_VERSION)
    arrays["__spec__"] = np.array(json.dumps(model.spec()))
    arrays["__meta__"] = np.array(json.dumps(meta or {}))
    return arrays


def save(path, model, meta=None):
    """Write ``model`` and the JSON-able dict ``meta`` to ``path`` (atomically)."""
    arrays = _arrays(model, meta)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def file_size(model, meta=None):
    """Bytes the model file of ``model`` takes (written to memory, not to disk)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **_arrays(model, meta))
    return buffer.tell()


def load(path):
    """Read a model file -> (Sequential with the stored parameters, meta dict)."""
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
    dtypes = {v.dtype for v in params.values()}
    if len(dtypes) != 1 or not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
        raise ModelFileError(f"{path}: parameters must share one dtype, float32 or float64; "
                             f"found {sorted(map(str, dtypes))}")
    try:
        model = Sequential.from_spec(spec, dtype=dtypes.pop())
    except (TinyBNNError, KeyError, TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: cannot rebuild the architecture: {err}") from None
    expected = model.params
    if expected.keys() != params.keys():
        raise ModelFileError(f"{path}: parameters {sorted(params)} do not match the "
                             f"architecture, which needs {sorted(expected)}")
    for k, v in params.items():
        if v.shape != expected[k].shape:
            raise ModelFileError(f"{path}: parameter {k} has shape {v.shape}, the architecture "
                                 f"needs {expected[k].shape}")
        if not np.all(np.isfinite(v)):
            raise ModelFileError(f"{path}: parameter {k} holds NaN or Inf")
        expected[k][...] = v
    return model, meta


def parameter_bytes(model):
    """Bytes the parameters take in memory, at their dtype (the model file is compressed and
    holds the architecture and metadata too: :func:`file_size`)."""
    return int(sum(v.nbytes for v in model.params.values()))
