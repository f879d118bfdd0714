"""The shipped dataset files: which they are, where they are looked for, and their checks.

Where the files are looked for, in this order (the first folder holding the file wins):

1. the folder named by the environment variable ``TINYBNN_DATA``, if it is set;
2. ``tinybnn/datasets/`` inside the installed package (a wheel carries the files there);
3. ``datasets/`` beside the ``tinybnn/`` folder (a source checkout or an editable install).

Every file's sha256 is checked against :data:`SHA256` before numpy reads a byte of it, so a
corrupted or foreign file is refused and never used.
A file whose sha256 matched is hashed again only when it changes.
"""

import hashlib
import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinybnn.errors import DataError

#: sha256 of each shipped file, as listed in ``datasets/README.md``.
SHA256 = {
    "mnist.npz": "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64",
    "fashion_mnist.npz": "5b6d2c4c694a91887af8ab7d039c04f80af3c29378d731c93a538d2e831aa469",
    "digits.npz": "6f801551877abf69fbf3711373bb642a18dc933430a3385cd6febc235225ea6f",
}

DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

@dataclass(frozen=True)
class Source:
    """What one dataset file must hold: ``pairs`` of (images key, labels key)."""

    file: str
    pairs: tuple            # (("x_train", "y_train"), ("x_test", "y_test")) or (("x", "y"),)
    image_shape: tuple      # (H, W)
    max_value: int          # largest pixel value; images are divided by it
    classes: tuple          # class names, index = label


SOURCES = {
    "mnist": Source("mnist.npz", (("x_train", "y_train"), ("x_test", "y_test")),
                     (28, 28), 255, DIGIT_NAMES),
    "fashion_mnist": Source("fashion_mnist.npz", (("x_train", "y_train"), ("x_test", "y_test")),
                             (28, 28), 255, FASHION_NAMES),
    "digits": Source("digits.npz", (("x", "y"),), (8, 8), 16, DIGIT_NAMES),
}


def available():
    """Names accepted by :func:`load`, e.g. ``("mnist", "fashion_mnist", "digits")``."""
    return tuple(SOURCES)


ENV_VAR = "TINYBNN_DATA"
_PACKAGE_DIR = Path(__file__).resolve().parent
_INSTALLED_DIR = _PACKAGE_DIR / "datasets"          # a wheel install: tinybnn/datasets/
_CHECKOUT_DIR = _PACKAGE_DIR.parent / "datasets"    # a source tree: datasets/ beside tinybnn/


def search_dirs():
    """The folders searched for data files, in order, as ``[(label, Path), ...]``."""
    places = []
    env = os.environ.get(ENV_VAR, "")
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise DataError(f"{ENV_VAR} must name a folder holding the dataset files; "
                            f"found {ENV_VAR}={env!r}, which is not a folder")
        places.append((ENV_VAR, folder))
    places.append(("installed package", _INSTALLED_DIR))
    places.append(("source checkout", _CHECKOUT_DIR))
    return places


def find_file(name):
    """Path of the file of dataset ``name``; :class:`DataError` lists every place looked."""
    file = source(name).file
    looked = []
    for label, folder in search_dirs():
        path = folder / file
        if path.is_file():
            return path
        looked.append(f"{label}: {path}")
    raise DataError(f"dataset file {file} not found; looked in " + "; ".join(looked))


def sha256_of(data):
    """Hex sha256 of ``bytes``."""
    return hashlib.sha256(data).hexdigest()


# Files whose sha256 matched, keyed by (path, size, mtime): a file is hashed once per process
# unless it changes. Only matches are remembered; a mismatch is checked again every time.
_VERIFIED = set()


def _stat_key(path):
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _check_sha256(path, data):
    """Raise :class:`DataError` unless ``data`` (the bytes of ``path``) has the expected hash."""
    expected = SHA256[path.name]
    found = sha256_of(data)
    if found != expected:
        raise DataError(f"checksum mismatch for {path}: expected sha256 {expected}, "
                        f"found {found}; the file is corrupted or not the one tinybnn ships, "
                        f"so it was not used")


def _read_npz(source, path):
    """All arrays of an ``.npz`` (``source``: a path or a file object read from ``path``).

    Read without pickle. It does NOT check the sha256: it is the step after
    :func:`_check_sha256`, kept separate so that tests can feed the validator a hand-made file.
    """
    try:
        with np.load(source, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"cannot read {path} as an .npz file: {err}") from err


def read_arrays(name):
    """The raw uint8 arrays of dataset ``name``, after checking the file's sha256 and content.

    Returns a dict keyed like the file (``x_train``, ``y_train``, ... or ``x``, ``y``).
    """
    path = find_file(name)
    key = _stat_key(path)
    if key in _VERIFIED:
        arrays = _read_npz(path, path)
    else:
        data = path.read_bytes()           # hash exactly the bytes that numpy will read
        _check_sha256(path, data)
        _VERIFIED.add(key)
        arrays = _read_npz(io.BytesIO(data), path)
    _check_arrays(name, arrays, path)
    return arrays


def _check_arrays(name, arrays, path):
    """Raise :class:`DataError` unless ``arrays`` hold what dataset ``name`` should hold."""
    src = SOURCES[name]
    expected_keys = sorted(k for pair in src.pairs for k in pair)
    if sorted(arrays) != expected_keys:
        raise DataError(f"{path} should hold arrays {expected_keys}, found {sorted(arrays)}")
    for x_key, y_key in src.pairs:
        x, y = arrays[x_key], arrays[y_key]
        for key, a in ((x_key, x), (y_key, y)):
            if a.dtype != np.uint8:
                raise DataError(f"{path}: {key} should be uint8, found {a.dtype}")
        if x.ndim != 3 or x.shape[1:] != src.image_shape:
            raise DataError(f"{path}: {x_key} should have shape (n, {src.image_shape[0]}, "
                            f"{src.image_shape[1]}), found {x.shape}")
        if y.shape != (x.shape[0],):
            raise DataError(f"{path}: {y_key} should have shape ({x.shape[0]},) to match "
                            f"{x_key}, found {y.shape}")
        if x.size and x.max() > src.max_value:
            raise DataError(f"{path}: {x_key} pixels should be in 0..{src.max_value}, "
                            f"found a maximum of {x.max()}")
        n_classes = len(src.classes)
        if y.size and y.max() >= n_classes:
            raise DataError(f"{path}: {y_key} labels should be in 0..{n_classes - 1}, "
                            f"found {y.max()}")


@dataclass(frozen=True)
class FileStatus:
    """Where a dataset file was found and whether its sha256 matches (``None``: not checked)."""

    name: str
    file: str
    place: str | None       # which search place held it, e.g. "source checkout"; None: missing
    path: Path | None
    expected_sha256: str
    found_sha256: str | None

    @property
    def ok(self):
        """True: found and matches; False: missing or mismatch; None: found, not checked."""
        if self.path is None:
            return False
        if self.found_sha256 is None:
            return None
        return self.found_sha256 == self.expected_sha256


def status(verify=True):
    """One :class:`FileStatus` per dataset; with ``verify`` every file found is hashed."""
    places = search_dirs()
    result = []
    for name, src in SOURCES.items():
        place, path, found = None, None, None
        for label, folder in places:
            if (folder / src.file).is_file():
                place, path = label, folder / src.file
                break
        if path is not None and verify:
            found = sha256_of(path.read_bytes())
            if found == SHA256[src.file]:
                _VERIFIED.add(_stat_key(path))
        result.append(FileStatus(name, src.file, place, path, SHA256[src.file], found))
    return result


def source(name):
    """The :class:`Source` of dataset ``name``; an unknown name lists the available ones."""
    if not isinstance(name, str) or name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(SOURCES)}")
    return SOURCES[name]
