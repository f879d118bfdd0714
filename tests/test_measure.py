"""What self-compression records of a network (tinybnn.measure): ``inference_ms`` is the median
of the timed ``predict`` calls, per 100 examples, after one warm-up (checked with a scripted
clock; real timings are measured in benchmarks/, not asserted here); ``accuracies`` matches
``evaluate`` and the argmax of ``predict``; ``measure`` records the kernels and their norms,
the switched-off count, the sizes, the flops and the metrics of each split as the modules that
compute them do, and passes the timing images to ``inference_ms``."""

import numpy as np
import pytest

from tinybnn import data, io, measure
from tinybnn.architectures import paper_cnn
from tinybnn.cost import forward_flops
from tinybnn.evaluate import evaluate, predict


def tiny_cnn():
    return paper_cnn(3, input_shape=(1, 6, 6), kernel_size=3, n_classes=3, seed=1)


def split(rng, n):
    return data.Split(rng.random((n, 1, 6, 6)), rng.integers(0, 3, size=n))


@pytest.fixture
def ds():
    rng = np.random.default_rng(0)
    return data.Dataset("tiny", split(rng, 12), split(rng, 10), split(rng, 14), ("a", "b", "c"))


class ScriptedClock:
    """perf_counter returning 0, d1, d1, d1 + d2, ...: the calls come in pairs around a call."""

    def __init__(self, durations):
        self.times = list(np.cumsum([0.0] + [t for d in durations for t in (d, 0.0)]))[:-1]

    def perf_counter(self):
        return self.times.pop(0)


def test_inference_ms_is_the_median_per_100_examples_after_one_warm_up(monkeypatch):
    calls = []
    monkeypatch.setattr(measure, "predict", lambda model, x: calls.append(len(x)))
    monkeypatch.setattr(measure, "time", ScriptedClock([0.5, 0.1, 0.3, 0.9, 0.2]))
    x = np.zeros((20, 1, 6, 6))
    # median 0.3 s for 20 examples = 1500 ms per 100
    assert measure.inference_ms(None, x) == pytest.approx(1500.0, rel=1e-12)
    assert calls == [10, 20, 20, 20, 20, 20]  # the warm-up on 10 examples, then 5 timings
    calls.clear()
    monkeypatch.setattr(measure, "time", ScriptedClock([0.4, 0.2, 0.6]))
    assert measure.inference_ms(None, x, repeats=3) == pytest.approx(2000.0, rel=1e-12)
    assert calls == [10, 20, 20, 20]


def test_accuracies_match_evaluate_and_predict(ds):
    model = tiny_cnn()
    got = measure.accuracies(model, ds)
    assert got == {"val_accuracy": evaluate(model, ds.val)["accuracy"],
                   "test_accuracy": evaluate(model, ds.test)["accuracy"]}
    for name in ("val", "test"):
        part = getattr(ds, name)
        by_hand = float((predict(model, part.x)[0].argmax(axis=1) == part.y).mean())
        assert got[f"{name}_accuracy"] == by_hand
    no_val = data.Dataset("tiny", ds.train, None, ds.test, ds.classes)
    assert measure.accuracies(model, no_val) == {"test_accuracy": got["test_accuracy"]}


def test_measure_records_what_the_modules_compute(ds, monkeypatch):
    model = tiny_cnn()
    model.params["conv.M"][1] = 0.0  # kernel 1 switched off
    M = model.params["conv.M"]
    norms = [float(np.sqrt((M[k] ** 2).sum())) for k in range(3)]
    out = measure.measure(model, "conv", ds)
    assert out["kernels"] == 3 and out["switched_off"] == 1
    assert out["smallest_kernel_norm"] == 0.0
    np.testing.assert_allclose(out["kernel_norms"], norms, rtol=1e-14)
    # conv.M 3x1x3x3 + conv.rho 3 + fc.M (3 * 2 * 2)x3 + fc.rho 3 + fc.b 3 = 27 + 3 + 36 + 6
    assert out["n_parameters"] == {"means": 63, "variances": 6, "biases": 3, "total": 72}
    assert out["parameter_bytes"] == 72 * 8
    assert out["model_file_bytes"] == io.file_size(model)
    assert out["flops_per_example"] == forward_flops(model)["total"]
    for name in ("val", "test"):
        m = evaluate(model, getattr(ds, name))
        for k in ("accuracy", "nll", "log_loss", "mean_predictive_variance"):
            assert out[f"{name}_{k}"] == m[k], (name, k)
    assert not {"val_n", "test_n", "val_per_class_accuracy", "inference_ms_per_100"} & set(out)
    timings = []  # the timing itself is the benchmarks' business; here only its wiring
    monkeypatch.setattr(measure, "inference_ms", lambda m, x: timings.append((m, x)) or 12.5)
    timed = measure.measure(model, "conv", data.Dataset("tiny", ds.train, None, ds.test, ()),
                            timing_x=ds.test.x[:4])
    assert timed["inference_ms_per_100"] == 12.5
    assert timings[0][0] is model and np.array_equal(timings[0][1], ds.test.x[:4])
    assert not any(k.startswith("val_") for k in timed)
