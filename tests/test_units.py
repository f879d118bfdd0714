"""tinybnn.units: a layer's kernels (units) one at a time, checked against direct computations
on a small CNN and MLP, and the reading of training histories."""

import numpy as np
import pytest

from tinybnn import units
from tinybnn.architectures import mlp, paper_cnn
from tinybnn.errors import ConfigError


@pytest.fixture
def cnn():
    return paper_cnn(5, input_shape=(1, 12, 12), kernel_size=3, n_classes=4, seed=1)


def test_kernel_norms_are_the_frobenius_norms_of_each_kernel(cnn):
    M = cnn["conv"].params["M"]                          # (5, 1, 3, 3)
    want = [np.sqrt((M[k] ** 2).sum()) for k in range(5)]
    np.testing.assert_allclose(units.unit_norms(cnn["conv"]), want, rtol=1e-14)
    assert units.n_units(cnn["conv"]) == 5
    assert units.prunable_layers(cnn) == ["conv"] and units.weight_layers(cnn) == ["conv", "fc"]


def test_a_linear_units_mean_is_its_column_of_incoming_weights():
    net = mlp((6, 4, 3), seed=2)
    M = net["fc1"].params["M"]                           # (6, 4): column k feeds unit k
    np.testing.assert_allclose(units.unit_norms(net["fc1"]), np.linalg.norm(M, axis=0))
    np.testing.assert_allclose(units.outgoing_norms(net, "fc1"),
                               np.linalg.norm(net["fc2"].params["M"], axis=1))


def test_outgoing_norms_are_the_fc_blocks_that_read_each_pooled_map(cnn):
    W = cnn["fc"].params["M"]                            # (5 * L, 4), channel-major rows
    L = W.shape[0] // 5
    want = [np.linalg.norm(W[k * L:(k + 1) * L]) for k in range(5)]
    np.testing.assert_allclose(units.outgoing_norms(cnn, "conv"), want, rtol=1e-14)
    np.testing.assert_array_equal(units.reading_rows(cnn, "conv", [3]), np.arange(3 * L, 4 * L))


def test_the_last_layer_has_nothing_reading_it(cnn):
    with pytest.raises(ConfigError, match=r"layer 'fc' has no layer reading its units; layers "
                                          r"that do: \['conv'\]"):
        units.outgoing_norms(cnn, "fc")


def test_a_unit_record_is_json_ready_and_vanilla_has_no_variances(cnn):
    rec = units.unit_record(cnn)["conv"]
    assert set(rec) == {"norms", "outgoing_norms", "variances"}
    assert all(isinstance(v, float) for v in rec["norms"] + rec["variances"])
    np.testing.assert_allclose(rec["variances"], cnn["conv"].s)
    vanilla = paper_cnn(5, bayesian=False, input_shape=(1, 12, 12), kernel_size=3, n_classes=4)
    assert units.unit_record(vanilla)["conv"]["variances"] is None


def test_switched_off_takes_the_threshold_strictly():
    assert units.NEAR_ZERO == 1e-3
    assert units.switched_off([0.5, 1e-5, 1e-3, 9.9e-4]) == [1, 3]
    assert units.switched_off([0.5, 0.2], threshold=0.3) == [1]


def history(*norms_per_epoch, snapshots=()):
    rows = [{"epoch": e + 1, "units": {"conv": {"norms": list(n)}}}
            for e, n in enumerate(norms_per_epoch)]
    for e, snap in snapshots:
        rows[e]["snapshots"] = [snap]
    return rows


def test_switch_off_counts_per_epoch():
    h = history([0.4, 0.3, 0.2], [0.4, 1e-5, 0.2], [1e-6, 1e-5, 0.2])
    assert units.switch_off_counts(h, "conv") == [0, 1, 2]


def test_trajectory_joins_stages_and_marks_removed_kernels_nan():
    first = {"kernel_ids": [0, 1, 2], "start_units": {"conv": {"norms": [0.5, 0.5, 0.5]}},
             "history": history([0.4, 1e-5, 0.2],
                                snapshots=[(0, {"epoch": 0.5, "units": {"conv": {
                                    "norms": [0.45, 0.1, 0.3]}}})])}
    second = {"kernel_ids": [0, 2], "history": history([0.35, 0.25])}  # kernel 1 removed
    epochs, norms = units.trajectory([first, second], "conv")
    np.testing.assert_array_equal(epochs, [0, 0.5, 1, 2])
    np.testing.assert_array_equal(norms[:3], [[0.5, 0.5, 0.5], [0.45, 0.1, 0.3],
                                              [0.4, 1e-5, 0.2]])
    assert np.isnan(norms[3, 1]) and norms[3, 0] == 0.35 and norms[3, 2] == 0.25
