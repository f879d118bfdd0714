"""The exceptions tinybnn raises, so that callers (and the command line) can tell a user's
mistake from a bug.

Every message says what was expected and what was found. The command line turns a
:class:`TinyBNNError` into a one-line message and a non-zero exit code; any other exception is
a bug in tinybnn and keeps its traceback.
"""


class TinyBNNError(Exception):
    """Base class: something the user can fix (bad input, bad file, bad option)."""


class ShapeError(TinyBNNError, ValueError):
    """An array has the wrong shape, dtype, or holds NaN/Inf."""


class StructureError(TinyBNNError, TypeError):
    """A layer was given a covariance structure it cannot take."""


class DataError(TinyBNNError):
    """A dataset is unknown, missing, corrupted, or was asked for an impossible split."""


class ModelFileError(TinyBNNError):
    """A model file is missing, truncated, corrupted, foreign, or from a newer format."""


class ConfigError(TinyBNNError, ValueError):
    """An impossible hyperparameter or option value."""


class DivergenceError(TinyBNNError, FloatingPointError):
    """Training produced a NaN or Inf; the message names the step."""
