"""Degradation models: sizes, determinism, spectral fall-off, noise/JPEG really applied, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.data.degrade import (
    DegradeConfig,
    anisotropic_gaussian_kernel,
    opencv_default_sigma,
    paper_degrade,
    scale_fine_detail,
    shuffled_degrade,
)


def _texture(h: int = 256, w: int = 320, seed: int = 0) -> np.ndarray:
    """Broadband grain texture with some structure (white noise + edges)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(128, 40, size=(h, w))
    img[:, w // 3 : w // 3 + 8] += 60
    return np.clip(img, 0, 255).astype(np.uint8)


def _hf_fraction(img: np.ndarray, cutoff: float = 0.1) -> float:
    """Fraction of (mean-removed) spectral energy above `cutoff` cycles/pixel radius.

    `cutoff` is below the 8-bit rounding floor."""
    f = np.fft.fftshift(np.abs(np.fft.fft2(img.astype(np.float64) - img.mean())) ** 2)
    fy = np.fft.fftshift(np.fft.fftfreq(img.shape[0]))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(img.shape[1]))[None, :]
    r = np.hypot(fy, fx)
    return float(f[r > cutoff].sum() / f.sum())


@pytest.mark.parametrize("n,shape,expected", [(4, (256, 320), (64, 80)), (5.1, (256, 320), (50, 63)),
                                              (3, (100, 101), (33, 34))])
def test_paper_degrade_output_size_is_rounded_size_over_n(n, shape, expected):
    out = paper_degrade(_texture(*shape), n=n, k=3)
    assert out.shape == expected and out.dtype == np.uint8


def test_paper_degrade_spectrum_falls_off_as_kernel_grows():
    hr = _texture(512, 512)
    fractions = [_hf_fraction(paper_degrade(hr, n=2, k=k)) for k in (1, 3, 5, 9, 15)]
    assert all(a > b for a, b in zip(fractions, fractions[1:], strict=False)), fractions
    assert fractions[-1] < 0.2 * fractions[0]


def test_paper_degrade_explicit_sigma_and_default_sigma_differ():
    hr = _texture()
    assert opencv_default_sigma(3) == pytest.approx(0.8)
    a = paper_degrade(hr, n=2, k=9)
    b = paper_degrade(hr, n=2, k=9, sigma=4.0)
    assert _hf_fraction(b) < _hf_fraction(a)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shuffled_degrade_ends_exactly_at_hr_over_scale(scale):
    hr = _texture(257, 330)
    for seed in range(12):
        out = shuffled_degrade(hr, scale, np.random.default_rng(seed))
        assert out.shape == (257 // scale, 330 // scale) and out.dtype == np.uint8


def test_shuffled_degrade_is_deterministic_per_seed_and_varies_across_seeds():
    hr = _texture()
    a = shuffled_degrade(hr, 4, np.random.default_rng(7))
    b = shuffled_degrade(hr, 4, np.random.default_rng(7))
    assert np.array_equal(a, b)
    others = [shuffled_degrade(hr, 4, np.random.default_rng(s)) for s in range(8, 14)]
    assert any(not np.array_equal(a, o) for o in others)


def _only(**kw) -> DegradeConfig:
    base = dict(blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, intermediate_prob=0.0, resize_modes=("area",))
    base.update(kw)
    return DegradeConfig(**base)


def test_noise_and_jpeg_actually_change_the_image():
    hr = _texture(256, 256)
    clean = shuffled_degrade(hr, 2, np.random.default_rng(1), _only())
    noisy = shuffled_degrade(hr, 2, np.random.default_rng(1), _only(noise_prob=1.0, noise_sigma=(6.0, 6.0)))
    diff = noisy.astype(np.float64) - clean
    assert 4.0 < diff.std() < 8.0  # ~6 grey levels of noise, clipped and rounded
    smooth = np.tile(np.linspace(30, 220, 128, dtype=np.float64), (128, 1))
    smooth = (smooth + 40 * (np.indices((128, 128)).sum(0) % 16 < 8)).clip(0, 255).astype(np.uint8)
    q10 = shuffled_degrade(np.kron(smooth, np.ones((2, 2), np.uint8)), 2, np.random.default_rng(1),
                           _only(jpeg_prob=1.0, jpeg_quality=(10, 10)))
    ref = shuffled_degrade(np.kron(smooth, np.ones((2, 2), np.uint8)), 2, np.random.default_rng(1), _only())
    assert np.abs(q10.astype(int) - ref).mean() > 1.0


def test_blur_only_lowers_high_frequencies_and_anisotropic_kernel_is_directional():
    hr = _texture(256, 256)
    sharp = shuffled_degrade(hr, 2, np.random.default_rng(3), _only())
    blurred = shuffled_degrade(hr, 2, np.random.default_rng(3), _only(blur_prob=1.0, blur_sigma=(2.5, 2.5)))
    assert _hf_fraction(blurred) < 0.5 * _hf_fraction(sharp)
    k = anisotropic_gaussian_kernel(4.0, 0.5, 0.0)
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    var_x = (k.sum(0) * (np.arange(k.shape[1]) - k.shape[1] // 2) ** 2).sum()
    var_y = (k.sum(1) * (np.arange(k.shape[0]) - k.shape[0] // 2) ** 2).sum()
    assert var_x > 10 * var_y


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((8, 8), np.uint16), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "2-D"),
        ([[1, 2]], "numpy array"),
    ],
)
def test_bad_input_gives_one_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        paper_degrade(bad)
    with pytest.raises(ValueError, match=match):
        shuffled_degrade(bad, 2, np.random.default_rng(0))


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="odd"):
        paper_degrade(_texture(), k=4)
    with pytest.raises(ValueError, match="jpeg_quality"):
        DegradeConfig(jpeg_quality=(0, 120))
    with pytest.raises(ValueError, match="resize_modes"):
        DegradeConfig(resize_modes=("nearest",))
    with pytest.raises(ValueError, match="smaller than scale"):
        shuffled_degrade(np.zeros((3, 3), np.uint8), 4, np.random.default_rng(0))


@settings(max_examples=40, deadline=None)
@given(h=st.integers(8, 120), w=st.integers(8, 120), scale=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_shuffled_degrade_shape_holds_for_any_size_scale_and_seed(h, w, scale, seed):
    hr = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    if h // scale < 1 or w // scale < 1:
        with pytest.raises(ValueError):
            shuffled_degrade(hr, scale, np.random.default_rng(seed))
        return
    out = shuffled_degrade(hr, scale, np.random.default_rng(seed))
    assert out.shape == (h // scale, w // scale) and out.dtype == np.uint8


def test_scale_fine_detail_scales_the_band_above_the_lr_nyquist_and_keeps_the_low_band():
    hr = np.clip(_texture(256, 256, 4).astype(np.float32) * 0.5 + 64, 0, 255).astype(np.uint8)  # no clipping at 2x
    up, down = scale_fine_detail(hr, 2.0), scale_fine_detail(hr, 0.5)
    fine = lambda x: _hf_fraction(x, 0.2) * x.astype(np.float64).var()  # noqa: E731
    assert 3.0 < fine(up) / fine(hr) < 4.5  # amplitude x2 -> energy x~4 far above the split
    assert 0.2 < fine(down) / fine(hr) < 0.35
    lr, lr_up = paper_degrade(hr, 4, 3).astype(float), paper_degrade(up, 4, 3).astype(float)
    assert np.abs(lr - lr_up).mean() < 2.0  # the LR changes only by the small footprint of the grain
    assert np.array_equal(scale_fine_detail(hr, 1.0), hr)
    with pytest.raises(ValueError, match="gain must be >= 0"):
        scale_fine_detail(hr, -1.0)
