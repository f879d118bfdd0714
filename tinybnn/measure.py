"""What is recorded of a network at every stage of self-compression (tinybnn.compress): its
kernels and their norms, its size in parameters, bytes and flops, its accuracy and the other
metrics on the validation and the test split, and how fast it predicts."""

import time

import numpy as np

from .cost import forward_flops
from .evaluate import evaluate, predict
from .io import file_size, parameter_bytes
from .units import n_units, switched_off, unit_norms


def inference_ms(model, x, repeats=5):
    """Median wall time (ms) of ``predict`` on ``x``, per 100 examples, after one warm-up."""
    predict(model, x[:10])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(model, x)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)) * 100 / len(x)


def measure(model, layer, ds, *, timing_x=None):
    """What is recorded of a network at every stage of self-compression: the kernels (units) of
    ``layer``, its size and cost, and its metrics on the validation split (which decisions
    read) and the test split (reported); timing_x: images to time inference on (None: not)."""
    norms = unit_norms(model[layer])
    out = {
        "kernels": n_units(model[layer]),
        "switched_off": len(switched_off(norms)),
        "smallest_kernel_norm": float(norms.min()),
        "kernel_norms": norms.tolist(),
        "n_parameters": model.n_parameters(),
        "parameter_bytes": parameter_bytes(model),
        "model_file_bytes": file_size(model),
        "flops_per_example": forward_flops(model)["total"],
    }
    for split in ("val", "test"):
        part = getattr(ds, split)
        if part is None:
            continue
        m = evaluate(model, part)
        out.update({f"{split}_{k}": v for k, v in m.items() if k not in ("n", "per_class_accuracy")})
    if timing_x is not None:
        out["inference_ms_per_100"] = inference_ms(model, timing_x)
    return out


def accuracies(model, ds):
    """{"val_accuracy", "test_accuracy"} of ``model``."""
    return {f"{split}_accuracy": evaluate(model, getattr(ds, split))["accuracy"]
            for split in ("val", "test") if getattr(ds, split) is not None}
