"""edge.analyze.morph and the vectorised medians give what scipy / numpy give, on random masks and images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from edge.analyze import morph
from edge.analyze.powder import block_nanmedians, nanmedian_last

DISK2 = np.hypot(*np.mgrid[-2:3, -2:3]) <= 2


@pytest.mark.parametrize("structure", [None, np.ones((3, 3), bool), DISK2])
@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_binary_morphology_matches_scipy(structure, iterations):
    """Dilation, erosion (background beyond the border), opening and closing equal scipy's, pixel for pixel."""
    rng = np.random.default_rng(iterations)
    kw = {} if structure is None else {"structure": structure}
    for trial in range(6):
        h, w = rng.integers(5, 70, 2)
        m = rng.random((h, w)) < rng.uniform(0.05, 0.7)
        m[0, :] |= trial % 2 == 0  # set pixels on the border: where erosion's border rule shows
        for ours, theirs in ((morph.dilate, ndimage.binary_dilation), (morph.erode, ndimage.binary_erosion),
                             (morph.opening, ndimage.binary_opening), (morph.closing, ndimage.binary_closing)):
            np.testing.assert_array_equal(ours(m, iterations, structure), theirs(m, iterations=iterations, **kw),
                                          err_msg=f"{ours.__name__} trial {trial}")


def test_gaussian_matches_scipy_and_keeps_dtype():
    """Same blur as ndimage.gaussian_filter in float32 and float64, also when the kernel outgrows the image."""
    rng = np.random.default_rng(0)
    for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-12)):
        x = rng.random((40, 70)).astype(dtype)
        for sigma in (0.5, 1.5, 3.3, 12.0):
            got = morph.gaussian(x, sigma)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, ndimage.gaussian_filter(x, sigma), atol=tol)
    with pytest.raises(TypeError, match="float image"):
        morph.gaussian(np.zeros((4, 4), np.uint8), 1.0)


def test_vectorised_medians_match_numpy():
    """nanmedian_last equals np.nanmedian (all-NaN rows give NaN); block medians equal the array_split loop."""
    rng = np.random.default_rng(1)
    x = rng.random((9, 1001)).astype(np.float32)
    x[x < 0.3] = np.nan
    x[4] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmedian(x, axis=-1)
    np.testing.assert_allclose(nanmedian_last(x), want, rtol=1e-6, equal_nan=True)
    q = rng.random((103, 77)).astype(np.float32)
    q[rng.random(q.shape) < 0.4] = np.nan
    want = np.array([[np.nanmedian(b) for b in np.array_split(r, 9, axis=1)] for r in np.array_split(q, 8, axis=0)])
    np.testing.assert_allclose(block_nanmedians(q, (8, 9)), want, rtol=1e-6)
