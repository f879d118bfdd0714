"""The baseline curves: the size grid, and networks pruned by kernel norm without retraining
(the lowest-norm kernels go first; at the full size the network itself is measured)."""

import numpy as np

from tinybnn import baselines
from tinybnn.architectures import paper_cnn
from tinybnn.baselines import pruned_without_retraining, size_grid
from tinybnn.compress import Target
from tinybnn.data import Split
from tinybnn.evaluate import evaluate
from tinybnn.prune import remove


def test_size_grid_holds_the_stages_the_neighbours_and_fractions():
    assert size_grid(32, [18, 14]) == [4, 8, 14, 16, 18, 24, 28, 29, 30, 31, 32]
    assert size_grid(2, []) == [1, 2]  # never below one kernel


def test_pruned_without_retraining_removes_the_lowest_norms_first(monkeypatch):
    removed = []

    def recording_remove(model, layer, ids):
        removed.append(sorted(int(k) for k in ids))
        return remove(model, layer, ids)

    monkeypatch.setattr(baselines, "remove", recording_remove)
    rng = np.random.default_rng(0)
    model = paper_cnn(5, input_shape=(1, 8, 8), kernel_size=3, n_classes=3, seed=2)
    model.params["conv.M"] *= np.array([3.0, 0.1, 2.0, 0.01, 1.0])[:, None, None, None]
    test = Split(rng.random((12, 1, 8, 8)), rng.integers(0, 3, 12))
    target = Target("cnn", (1, 8, 8), 3)
    points = pruned_without_retraining(model, target, [5, 3], test)
    assert [k for k, _ in points] == [5, 3]
    assert points[0][1] == evaluate(model, test)["accuracy"]
    assert removed == [[1, 3]]  # the full size is measured as it is; then norms 0.01 and 0.1 go
    assert points[1][1] == evaluate(remove(model, "conv", [3, 1]), test)["accuracy"]
