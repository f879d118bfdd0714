"""`tinybnn data` (tinybnn/jobs/data.py): the table, the JSON, and a corrupted file named in one
line with exit code 2, after the table."""

import json

import pytest

from tinybnn import cli, dataset_files
from tinybnn.errors import DataError
from tinybnn.jobs.data import data_run


def corrupted_digits(tmp_path, monkeypatch):
    """A truncated copy of digits.npz, found first (TINYBNN_DATA); returns its path."""
    copy = tmp_path / "digits.npz"
    copy.write_bytes(dataset_files.find_file("digits").read_bytes()[:-10])
    monkeypatch.setenv("TINYBNN_DATA", str(tmp_path))
    return copy


def test_data_verify_table(capsys):
    assert cli.main(["data", "--verify"]) == 0
    out = capsys.readouterr().out
    for name in dataset_files.available():
        assert any(line.startswith(name + " ") and "sha256 ok" in line
                   for line in out.splitlines()), out


def test_data_json_without_verify(capsys):
    assert cli.main(["data", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(dataset_files.available())
    assert all(r["ok"] is None and r["found_sha256"] is None and r["path"] for r in rows)


def test_data_verify_reports_a_corrupted_file(tmp_path, monkeypatch, capsys):
    copy = corrupted_digits(tmp_path, monkeypatch)
    assert cli.main(["data", "--verify", "--json"]) == 2
    captured = capsys.readouterr()
    rows = {r["name"]: r for r in json.loads(captured.out)}
    assert rows["digits"]["ok"] is False and rows["digits"]["path"] == str(copy)
    assert rows["mnist"]["ok"] is True
    assert captured.err == ("tinybnn: error: 1 of 3 dataset files failed: "
                            "digits (checksum mismatch)\n")


def test_data_run_echoes_every_line_before_it_raises(tmp_path, monkeypatch):
    corrupted_digits(tmp_path, monkeypatch)
    lines = []
    with pytest.raises(DataError, match="1 of 3 dataset files failed: digits"):
        data_run(verify=True, echo=lines.append)
    assert lines[0].split() == ["dataset", "status", "found", "in", "path"]
    verdicts = {line.split()[0]: line for line in lines[1:]}
    assert "MISMATCH" in verdicts["digits"] and "sha256 ok" in verdicts["mnist"]
    assert len(lines) == 1 + len(dataset_files.available())  # verified: no hint to verify


def test_data_run_without_verify_hashes_nothing_and_returns_the_rows():
    lines = []
    rows = data_run(echo=lines.append)
    assert [r.name for r in rows] == list(dataset_files.available())
    assert all(r.found_sha256 is None for r in rows)
    assert lines[-1] == "(run 'tinybnn data --verify' to check the sha256 of each file)"
