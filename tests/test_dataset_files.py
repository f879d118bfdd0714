"""tinybnn.dataset_files: finding the shipped files, their checksums and every way a file can be
wrong (each exercised through data.load, which users call)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from tinybnn import data, dataset_files
from tinybnn.errors import DataError


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty folder that TINYBNN_DATA points at."""
    monkeypatch.setenv("TINYBNN_DATA", str(tmp_path))
    return tmp_path


def copy_shipped(name, folder):
    """Copy the shipped file of ``name`` into ``folder``; return the copy's path."""
    return Path(shutil.copy(dataset_files.find_file(name), folder))


def test_tinybnn_data_takes_precedence(data_dir):
    copy = copy_shipped("digits", data_dir)
    assert dataset_files.find_file("digits") == copy
    assert dataset_files.search_dirs()[0] == ("TINYBNN_DATA", data_dir)
    assert len(data.load("digits").train) == 1347


def test_tinybnn_data_must_be_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYBNN_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="TINYBNN_DATA must name a folder"):
        data.load("digits")


def test_missing_file_lists_every_place_looked(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_files, "_INSTALLED_DIR", tmp_path / "site-packages" / "tinybnn")
    monkeypatch.setattr(dataset_files, "_CHECKOUT_DIR", tmp_path / "checkout" / "datasets")
    with pytest.raises(DataError) as err:
        data.load("digits")
    message = str(err.value)
    assert "digits.npz not found" in message
    for place in (data_dir, dataset_files._INSTALLED_DIR, dataset_files._CHECKOUT_DIR):
        assert str(place / "digits.npz") in message
    assert "\n" not in message


def test_one_flipped_byte_is_refused_and_never_read(data_dir, monkeypatch):
    copy = copy_shipped("digits", data_dir)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy.write_bytes(bytes(raw))

    def must_not_read(*args):
        raise AssertionError("a file whose checksum differs was read")
    monkeypatch.setattr(dataset_files, "_read_npz", must_not_read)
    with pytest.raises(DataError) as err:
        data.load("digits")
    message = str(err.value)
    assert "checksum mismatch" in message and str(copy) in message
    assert dataset_files.SHA256["digits.npz"] in message                 # expected
    assert dataset_files.sha256_of(bytes(raw)) in message                # found
    with pytest.raises(DataError, match="checksum mismatch"):   # a mismatch is not cached
        data.load("digits")


def test_a_file_changed_after_a_good_load_is_checked_again(data_dir):
    copy = copy_shipped("digits", data_dir)
    data.load("digits")
    raw = bytearray(copy.read_bytes())
    raw[100] ^= 0x01
    copy.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum mismatch"):
        data.load("digits")


def test_status_reports_places_and_hashes(data_dir):
    copy = copy_shipped("digits", data_dir)
    copy.write_bytes(copy.read_bytes()[:-1])                    # truncated
    rows = {r.name: r for r in dataset_files.status(verify=True)}
    assert rows["digits"].place == "TINYBNN_DATA" and rows["digits"].path == copy
    assert rows["digits"].ok is False
    assert rows["mnist"].ok is True
    assert dataset_files.status(verify=False)[0].ok is None


def fake_file(folder, name, **arrays):
    """Write ``arrays`` as ``name`` in ``folder`` and accept its sha256 (monkeypatch it first)."""
    path = Path(folder) / name
    np.savez(path, **arrays)
    dataset_files.SHA256[name] = dataset_files.sha256_of(path.read_bytes())
    return path


def good_digits():
    return {"x": np.zeros((20, 8, 8), np.uint8), "y": np.arange(20, dtype=np.uint8) % 10}


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(z=a.pop("y")), r"should hold arrays \['x', 'y'\], found \['x', 'z'\]"),
    (lambda a: a.update(x=a["x"].astype(np.float32)), "x should be uint8, found float32"),
    (lambda a: a.update(x=np.zeros((20, 28, 28), np.uint8)), r"shape \(n, 8, 8\)"),
    (lambda a: a.update(y=a["y"][:19]), r"y should have shape \(20,\)"),
    (lambda a: a.update(y=a["y"] + 1), "labels should be in 0..9, found 10"),
    (lambda a: a.update(x=a["x"] + 17), "pixels should be in 0..16, found a maximum of 17"),
])
def test_wrong_content_is_refused(data_dir, monkeypatch, change, message):
    monkeypatch.setattr(dataset_files, "SHA256", dict(dataset_files.SHA256))
    arrays = good_digits()
    change(arrays)
    fake_file(data_dir, "digits.npz", **arrays)
    with pytest.raises(DataError, match=message):
        data.load("digits")


def test_a_hand_made_file_with_the_right_content_loads(data_dir, monkeypatch):
    monkeypatch.setattr(dataset_files, "SHA256", dict(dataset_files.SHA256))
    arrays = good_digits()
    arrays["x"] = np.full((1797, 8, 8), 16, np.uint8)
    arrays["y"] = np.arange(1797, dtype=np.uint8) % 10
    fake_file(data_dir, "digits.npz", **arrays)
    ds = data.load("digits")
    assert ds.train.x.shape == (1347, 1, 8, 8) and np.all(ds.train.x == 1.0)


def test_pickled_arrays_are_refused(data_dir, monkeypatch):
    monkeypatch.setattr(dataset_files, "SHA256", dict(dataset_files.SHA256))
    fake_file(data_dir, "digits.npz", x=np.array([{"evil": 1}], dtype=object),
              y=np.zeros(1, np.uint8))
    with pytest.raises(DataError, match="cannot read .* as an .npz file"):
        data.load("digits")


def not_a_zip(raw):
    return b"not a zip file"


def truncated(raw):
    return raw[: len(raw) // 2]                         # zip magic, no central directory


def damaged(raw):
    return raw[:200] + bytes(100) + raw[300:]           # a broken compressed stream


@pytest.mark.parametrize("spoil", [not_a_zip, truncated, damaged])
def test_an_unreadable_file_is_refused(tmp_path, monkeypatch, spoil):
    path = tmp_path / "digits.npz"
    path.write_bytes(spoil(dataset_files.find_file("digits").read_bytes()))
    monkeypatch.setenv("TINYBNN_DATA", str(tmp_path))
    monkeypatch.setattr(dataset_files, "SHA256", dict(dataset_files.SHA256))
    dataset_files.SHA256["digits.npz"] = dataset_files.sha256_of(path.read_bytes())
    with pytest.raises(DataError, match="cannot read .* as an .npz file"):
        data.load("digits")


def test_readme_lists_the_same_checksums():
    readme = (Path(__file__).resolve().parents[1] / "datasets" / "README.md").read_text()
    for file, sha in dataset_files.SHA256.items():
        assert f"{sha}  {file}" in readme
