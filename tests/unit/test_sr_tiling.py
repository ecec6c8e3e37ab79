"""Tiling: full coverage, seamless blending, tiled == untiled for a translation-equivariant model, fixed batches."""

from __future__ import annotations

import numpy as np
import pytest

from edge.sr.bundle import Bundle
from edge.sr.manifest import Manifest
from edge.sr.resolver import SuperResolver
from edge.sr.samplers import SamplerSpec
from edge.sr.tiling import blend_window, tile_starts, tiled_upscale

S = 4


def nearest(tiles: np.ndarray, origins) -> np.ndarray:
    """Translation-equivariant test model: nearest-neighbour x4 of each tile."""
    return tiles.repeat(S, 1).repeat(S, 2)[:, None]


@pytest.mark.parametrize("size, tile, overlap", [(1, 8, 2), (8, 8, 2), (9, 8, 2), (37, 8, 3), (100, 16, 4),
                                                 (64, 16, 0)])
def test_tile_starts_cover_with_overlap(size, tile, overlap):
    s = tile_starts(size, tile, overlap)
    assert s[0] == 0 and s == sorted(set(s))
    assert s[-1] + tile >= size
    if size > tile:
        assert s[-1] + tile == size
        assert all(b - a <= tile - overlap for a, b in zip(s, s[1:], strict=False))


@pytest.mark.parametrize("shape", [(5, 7), (16, 16), (23, 41), (40, 33)])
def test_tiled_equals_untiled_for_equivariant_model(shape):
    img = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    out = tiled_upscale(img, nearest, S, tile=8, overlap=3, batch=3)
    assert out.shape == (1, shape[0] * S, shape[1] * S)
    np.testing.assert_allclose(out[0], img.repeat(S, 0).repeat(S, 1), atol=1e-6)


def test_constant_input_gives_constant_output():
    out = tiled_upscale(np.full((30, 50), 0.25, np.float32), nearest, S, tile=8, overlap=2)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


def test_blending_removes_seams():
    """Each tile is offset by its own constant (like independent samples): blended output has no jumps."""
    rng = np.random.default_rng(1)
    offsets: dict = {}

    def per_tile_offset(tiles, origins):
        out = nearest(tiles, origins).copy()
        for k, o in enumerate(origins):
            out[k] += offsets.setdefault(o, rng.uniform(-0.3, 0.3))
        return out

    ramp = np.linspace(-0.5, 0.5, 48, dtype=np.float32)[None].repeat(48, 0)  # smooth input
    blended = tiled_upscale(ramp, per_tile_offset, S, tile=16, overlap=8)[0]
    spread = max(offsets.values()) - min(offsets.values())
    jumps = max(np.abs(np.diff(blended, axis=0)).max(), np.abs(np.diff(blended, axis=1)).max())
    assert jumps < 0.15 * spread, (jumps, spread)
    offsets.clear()
    hard = tiled_upscale(ramp, per_tile_offset, S, tile=16, overlap=0)[0]  # no overlap: seams are the offsets
    hard_jumps = max(np.abs(np.diff(hard, axis=0)).max(), np.abs(np.diff(hard, axis=1)).max())
    assert hard_jumps > 3 * jumps


def test_window_is_smooth_and_positive():
    w = blend_window(32, 8, True, True)
    assert (w > 0).all() and w.max() == 1.0 and np.abs(np.diff(w)).max() < 0.2
    np.testing.assert_array_equal(blend_window(32, 8, False, False), 1.0)


def test_batches_are_full_and_row_major_across_tile_rows():
    calls = []

    def rec(tiles, origins):
        calls.append(origins)
        return nearest(tiles, origins)

    tiled_upscale(np.zeros((50, 70), np.float32), rec, S, tile=16, overlap=4, batch=4)
    assert all(len(c) == 4 for c in calls[:-1]) and 1 <= len(calls[-1]) <= 4  # fixed size, whatever the row length
    assert any(len({y for y, _ in c}) > 1 for c in calls)  # a batch may span tile rows
    flat = [o for c in calls for o in c]
    assert flat == sorted(flat) and len(flat) == len(set(flat))  # row-major, every tile once
    with pytest.raises(ValueError, match="2-D"):
        tiled_upscale(np.zeros((0, 5), np.float32), rec, S, 16, 4)


class PointwiseRunner:
    """Test-only runner whose graphs are pointwise in the latent grid (translation-equivariant)."""

    name = "pointwise-test"

    def encode_lr(self, lr):
        return np.repeat(lr, 4, axis=1) * np.array([1, -0.5, 0.25, 0.1], np.float32)[None, :, None, None]

    def encode_hr(self, hr):
        b, _, h, w = hr.shape
        return np.repeat(hr.reshape(b, 1, h // S, S, w // S, S).mean((3, 5)), 4, axis=1)

    def denoise(self, x, t, cond):
        return 0.3 * x + 0.2 * cond * (1 + t[:, None, None, None] / 50)

    def decode(self, z, graph="hr_decoder"):
        return np.tanh(z.mean(1, keepdims=True)).repeat(S, 2).repeat(S, 3)


@pytest.mark.parametrize("spec", [SamplerSpec("ddpm", 10, "leading"), SamplerSpec("dpmpp_2m", 4),
                                  SamplerSpec("ddim", 5, eta=1.0)])
def test_resolver_tiled_equals_untiled_with_position_keyed_noise(spec):
    """Noise is keyed by absolute LR position, so overlapping tiles see the same noise: tiles == one big tile."""
    manifest = {"model_id": "pointwise", "scale": S, "latent_channels": 4, "latent_scale_factor": 1.0, "lr_patch": 8,
                "prediction": "epsilon",
                "schedule": {"kind": "linear", "timesteps": 50}, "sampler": {}, "files": {}}
    b = Bundle(path=None, manifest=Manifest.from_dict(manifest))  # type: ignore[arg-type]
    img = (np.random.default_rng(3).random((19, 26)) * 255).astype(np.uint8)
    small = SuperResolver(b, PointwiseRunner(), spec, seed=5, tile=8, overlap=2).upscale(
        img, samples=2, reduce="mean", uncertainty=True)
    big = SuperResolver(b, PointwiseRunner(), spec, seed=5, tile=32, overlap=0).upscale(
        img, samples=2, reduce="mean", uncertainty=True)
    assert small.sr.shape == (19 * S, 26 * S)
    assert np.abs(small.sr.astype(int) - big.sr.astype(int)).max() <= 1  # uint8 rounding of float-identical values
    np.testing.assert_allclose(small.std, big.std, atol=0.05)
    assert small.std.max() > 1.0  # two samples really differ


class LinearRunner(PointwiseRunner):
    """Test-only runner with a linear decoder: a deterministic sampler's output is then affine in its start noise."""

    def decode(self, z, graph="hr_decoder"):
        return (0.1 * z.mean(1, keepdims=True)).repeat(S, 2).repeat(S, 3)


def test_antithetic_pairs_cancel_in_the_mean():
    """Chain 2j+1 starts from -noise of chain 2j: with an affine sampler the pair mean is the noise-free output."""
    manifest = {"model_id": "linear", "scale": S, "latent_channels": 4, "latent_scale_factor": 1.0, "lr_patch": 8,
                "prediction": "epsilon",
                "schedule": {"kind": "linear", "timesteps": 50}, "sampler": {}, "files": {}}
    b = Bundle(path=None, manifest=Manifest.from_dict(manifest))  # type: ignore[arg-type]
    img = (np.random.default_rng(4).random((10, 12)) * 200 + 20).astype(np.uint8)
    spec = SamplerSpec("ddim", 4)
    anti = SuperResolver(b, LinearRunner(), spec, seed=1, tile=8, overlap=2)
    indep = SuperResolver(b, LinearRunner(), spec, seed=1, tile=8, overlap=2, antithetic=False)
    m2, m4 = (anti.upscale(img, samples=k, reduce="mean", uncertainty=True) for k in (2, 4))
    assert np.abs(m2.sr.astype(int) - m4.sr.astype(int)).max() <= 1  # both are the noise-free output
    i2, i4 = (indep.upscale(img, samples=k, reduce="mean").sr.astype(int) for k in (2, 4))
    assert np.abs(i2 - i4).max() > 3  # independent chains leave noise in a mean of 2 or 4
    assert m2.std is not None and m2.std.max() > 1.0  # the two chains of a pair really differ
    first = [r.upscale(img, samples=2, reduce="sample").sr for r in (anti, indep)]
    np.testing.assert_array_equal(first[0], first[1])  # sample 0 does not depend on the pairing
