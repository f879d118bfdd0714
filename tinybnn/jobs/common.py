"""What the jobs share: option metadata for the command line, the options several jobs
declare alike, the schedule options of the jobs that train, output folders, JSON files, and the
parsing of comma-separated sizes (lists are parsed here, at the command line's edge)."""

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import io
from ..errors import ConfigError


#: The networks a job builds: the paper's CNN or an MLP.
ARCHITECTURES = ("cnn", "mlp")


def option(help, **kw):
    """Field metadata read by the command line: the help text and argparse extras."""
    return {"help": help, **kw}


def dataset_field(help="dataset: mnist, fashion_mnist or digits"):
    """The ``dataset`` option of a job: MNIST unless it is named (tinybnn.dataset_files)."""
    return field(default="mnist", metadata=option(help))


def validation_field(help):
    """The ``validation`` option of a job that trains: the fraction of the training images
    held out, 1/12 unless it is given (5,000 of MNIST's 60,000, as the authors)."""
    return field(default=1 / 12, metadata=option(help))


@dataclass
class ScheduleOptions:
    """A preset's schedule as the jobs that train may override it (``tinybnn train``,
    ``tinybnn compress``); None means the preset's value (tinybnn/presets.py)."""

    epochs: int | None = field(default=None, metadata=option("epochs of training"))
    batch_size: int | None = field(default=None, metadata=option("minibatch size"))
    lr: float | None = field(default=None, metadata=option("initial Adam learning rate"))
    final_lr: float | None = field(default=None, metadata=option(
        "learning rate at the end of each training (exponential decay)"))
    rho_init: str | None = field(default=None, metadata=option(
        "initial rho drawn from U[low, high]: write --rho-init=low,high, e.g. "
        "--rho-init=-12,-2.2"))
    last_variance: float | None = field(default=None, metadata=option(
        "initial variance of the last layer's units (0: drawn like the others)"))
    reg_scale: float | None = field(default=None, metadata=option(
        "multiply the preset's regulariser by this"))

    def schedule(self):
        """These overrides as keywords of :func:`tinybnn.presets.resolve`."""
        return {f.name: getattr(self, f.name) for f in fields(ScheduleOptions)}


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
