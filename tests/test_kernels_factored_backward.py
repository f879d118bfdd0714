"""The factored backward loops equal their NumPy twins, for any number of per-thread partial
sums (tinybnn.kernels.factored_backward)."""

import numpy as np
import pytest

from tinybnn.kernels import factored_backward as kfb
from vdp_helpers import KERNEL_DTYPES as DTYPES, factored_inputs, kernel_close as close


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B", [3, 1])
def test_factored_backward_kernels(dtype, B):
    patches, rows, scale, M3, At, G, s, c, tau = factored_inputs(np.random.default_rng(2), dtype,
                                                                 B=B)
    for got, want in zip(kfb.factored_project_backward(patches, rows, scale, At, G, s, c, tau),
                         kfb.factored_project_backward_numpy(patches, rows, scale, At, G, s, c,
                                                             tau)):
        close(got, want, dtype)
        assert got.dtype == dtype
    GAt = G[:, None] @ At
    close(kfb.factored_patch_grad(patches, rows, scale, M3, GAt, s, c),
          kfb.factored_patch_grad_numpy(patches, rows, scale, M3, GAt, s, c), dtype)


@pytest.mark.parametrize("compiled", ["parallel", "serial"])
def test_factored_backward_partial_sums_do_not_depend_on_the_thread_count(compiled):
    """The per-thread partial sums of dM3 add up to the same result for any number of chunks,
    in the parallel and the serial compilation of the loop (tinybnn.kernels.loops.BatchLoop)."""
    patches, rows, scale, M3, At, G, s, c, tau = factored_inputs(np.random.default_rng(6),
                                                                 np.float64, B=5)
    want = kfb.factored_project_backward_numpy(patches, rows, scale, At, G, s, c, tau)
    loop = getattr(kfb._factored_project_backward, compiled)
    for chunks in (1, 2, 3, 7):
        buffers = kfb.backward_buffers(chunks, patches, At, rows)
        loop(patches, rows, scale, At, G, s, c, tau, *buffers)
        partial, ds = buffers[-2:]
        for a, b in zip((partial[0], ds), want):
            close(a, b, np.float64)
