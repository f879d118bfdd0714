"""What the jobs share: option metadata for the command line, output folders, JSON files,
and the parsing of comma-separated sizes (lists are parsed here, at the command line's edge)."""

import json
import os
from pathlib import Path

import numpy as np

from .. import io
from ..errors import ConfigError


def option(help, **kw):
    """Field metadata read by the command line: the help text and argparse extras."""
    return {"help": help, **kw}


def hidden_sizes(text):
    """'400,400' -> (400, 400); anything else is a ConfigError."""
    try:
        sizes = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"hidden must be comma-separated positive integers, found {text!r}")
    return sizes


def prepare_output(folder):
    """Create ``folder`` (and parents) and check that a file can be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".tinybnn-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write to the output folder {folder}: "
                          f"{err.strerror or err}") from None
    return folder


def write_json(path, obj):
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, default=_jsonable) + "\n"
    io.atomic_write(path, lambda f: f.write(text.encode()))


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, os.PathLike):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")
