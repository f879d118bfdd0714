"""`tinybnn import` (tinybnn/jobs/imports.py): the model file it writes and the lines it prints.
The importer itself, its refusals and the command end to end: tests/test_importers.py."""

import pickle

import numpy as np

from tinybnn import io
from tinybnn.jobs.imports import import_report, import_run

N = 2


def authors_pickle(path):
    """A weights pickle in the authors' 2019 layout (six float32 arrays), with kernel 1 off."""
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(5, 5, 1, N)).astype(np.float32)
    conv[..., 1] = 0.0
    arrays = [conv, np.full(N, -6.0, np.float32),
              rng.normal(size=(144 * N, 10)).astype(np.float32), np.full(10, -6.0, np.float32),
              np.zeros(10, np.float32), np.full(10, 1e-5, np.float32)]
    path.write_bytes(pickle.dumps(arrays))
    return path


def test_import_run_writes_the_model_and_echoes_its_report(tmp_path):
    source, out = authors_pickle(tmp_path / "weights.pkl"), tmp_path / "imported.npz"
    lines = []
    model, meta = import_run("authors2019", source, out, echo=lines.append)
    assert lines == import_report(model, meta, out)
    loaded, loaded_meta = io.load(out)
    assert loaded.spec() == model.spec() and loaded_meta["imported"] == meta["imported"]
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v, err_msg=k)
    assert lines[0].startswith(f"read {source} (authors2019, a list of 6 float32 arrays")
    assert any("fc1_bias_sigma (10,) dropped" in line for line in lines)
    assert "kernels with a mean norm below 0.001: 1 of 2 (0)" in lines
    assert lines[-1].startswith(f"wrote {out}: the Bayesian paper CNN, N = 2, float32, for mnist")
