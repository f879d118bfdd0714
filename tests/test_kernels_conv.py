"""im2col and col2im equal their NumPy twins and are adjoint (tinybnn.kernels.conv)."""

import numpy as np
import pytest

from tinybnn.kernels import conv as kn
from vdp_helpers import KERNEL_DTYPES as DTYPES, KERNEL_TOL as TOL, kernel_close as close


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,r", [((2, 1, 7, 6), 3), ((3, 2, 5, 5), 2), ((1, 3, 4, 4), 4)])
def test_im2col_col2im(dtype, shape, r):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    X = kn.im2col(x, r)
    close(X, kn.im2col_numpy(x, r), dtype)
    B, C, H, W = shape
    assert X.shape == (B, (H - r + 1) * (W - r + 1), C * r * r)
    if X.shape[1] > 1:
        assert X[0, 1, 0] == x[0, 0, 0, 1]  # row-major positions, (c, i, j) patch order
    g = rng.normal(size=X.shape).astype(dtype)
    close(kn.col2im(g, shape, r), kn.col2im_numpy(g, shape, r), dtype)
    # adjoint: <im2col(x), g> == <x, col2im(g)>
    assert np.isclose((X * g).sum(), (x * kn.col2im(g, shape, r)).sum(), rtol=TOL[dtype] * 10)
