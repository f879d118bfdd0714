"""``tinybnn data``: the shipped datasets, where each file was found (tinybnn/dataset_files.py
says where it looks) and, with ``verify``, whether its sha256 is the one tinybnn expects.

``data_run`` echoes a table (or JSON) and raises a :class:`~tinybnn.errors.DataError` naming
every file that is missing or differs from its checksum; it writes no files.
"""

import json

from .. import dataset_files
from ..errors import DataError

#: What the table says of a file that was found: by its check (None: not verified).
VERDICTS = {True: "sha256 ok", False: "MISMATCH", None: "found (not verified)"}


def data_run(*, verify=False, as_json=False, echo=print):
    """Echo the status of every dataset file (:func:`tinybnn.dataset_files.status`) as a table,
    or as JSON with ``as_json``; with ``verify``, hash every file first. Returns the rows; after
    the echo, a DataError if any file is missing or (hashed) differs from its checksum."""
    rows = dataset_files.status(verify=verify)
    for line in (json_lines(rows) if as_json else table_lines(rows, verify)):
        echo(line)
    bad = [r for r in rows if r.ok is False]
    if bad:
        what = ", ".join(f"{r.name} ({'missing' if r.path is None else 'checksum mismatch'})"
                         for r in bad)
        raise DataError(f"{len(bad)} of {len(rows)} dataset files failed: {what}")
    return rows


def json_lines(rows):
    """The rows as one indented JSON list (one string)."""
    return [json.dumps([{
        "name": r.name, "file": r.file, "found_in": r.place,
        "path": None if r.path is None else str(r.path),
        "expected_sha256": r.expected_sha256, "found_sha256": r.found_sha256,
        "ok": r.ok} for r in rows], indent=2)]


def table_lines(rows, verified):
    """The rows as a table; unless ``verified``, a last line on how to check the checksums."""
    lines = [f"{'dataset':<14} {'status':<21} {'found in':<18} path"]
    for r in rows:
        verdict = "MISSING" if r.path is None else VERDICTS[r.ok]
        lines.append(f"{r.name:<14} {verdict:<21} {r.place or '-':<18} {r.path or '-'}")
    if not verified:
        lines.append("(run 'tinybnn data --verify' to check the sha256 of each file)")
    return lines
