"""The factored forward loop equals its NumPy twin (tinybnn.kernels.factored)."""

import numpy as np
import pytest

from tinybnn.kernels import factored as kf
from vdp_helpers import KERNEL_DTYPES as DTYPES, factored_inputs, kernel_close as close


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B", [3, 1])
def test_factored_project(dtype, B):
    patches, rows, scale, M3, _, _, s, _, _ = factored_inputs(np.random.default_rng(2), dtype, B=B)
    for got, want in zip(kf.factored_project(patches, rows, scale, M3, s),
                         kf.factored_project_numpy(patches, rows, scale, M3, s)):
        close(got, want, dtype)
        assert got.dtype == dtype
