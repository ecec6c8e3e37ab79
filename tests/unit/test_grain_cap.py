"""Grain cap: the LR-spectrum predictor of HR detail energy, the cap that only lowers detail, the manifest entry."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.data.degrade import paper_degrade
from edge.sr.bundle import Bundle
from edge.sr.grain import (
    GrainCap,
    apply_grain_cap,
    band_energies,
    default_sigmas,
    detail_energy,
    fit_grain_cap,
    n_features,
    predict_log_energy,
    split_bands,
)
from edge.sr.manifest import Manifest, ManifestError
from edge.sr.resolver import SuperResolver
from edge.sr.samplers import SamplerSpec

S = 4


def _grainy(amplitude: float, seed: int, size: int = 128) -> np.ndarray:
    """A smooth gradient plus 1-2 px grain of the given amplitude (gray levels)."""
    rng = np.random.default_rng(seed)
    base = np.linspace(90, 150, size)[None, :] + np.zeros((size, 1))
    grain = cv2.GaussianBlur(rng.normal(0, 1, (size, size)), (0, 0), 0.7)
    grain *= amplitude / grain.std()
    return np.clip(base + grain, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cap() -> GrainCap:
    """A four-band cap fitted on HR windows whose grain amplitude spans 1..16 gray levels."""
    amps = np.exp(np.random.default_rng(0).uniform(np.log(1), np.log(16), 160))
    hrs = [_grainy(a, i) for i, a in enumerate(amps)]
    return fit_grain_cap([paper_degrade(h, 4, 3) for h in hrs], hrs, sigmas=default_sigmas(S))


def test_bands_sum_to_the_image():
    img = _grainy(6.0, 3)
    base, bands = split_bands(img, default_sigmas(S))
    assert len(bands) == 4 and np.allclose(base + sum(bands), img, atol=1e-3)
    e = band_energies(img, default_sigmas(S))
    assert e.shape == (4,) and (e > 0).all()


def test_predictor_reads_the_grain_amount_from_the_lr(cap):
    assert cap.bands == 4 and all(len(w) == n_features() for w in cap.weights) and cap.window == 32
    for amp, seed in ((2.0, 1000), (6.0, 1001), (14.0, 1002)):
        hr = _grainy(amp, seed)
        pred = np.exp(predict_log_energy(cap, paper_degrade(hr, 4, 3)))
        true = band_energies(hr, cap.sigmas)
        assert pred.shape == (4,)
        assert 0.5 < pred.sum() / true.sum() < 2.0  # held-out windows, within a factor of 2
        assert np.all((pred / true > 0.33) & (pred / true < 3.0))  # and in every band within a factor of 3


def test_cap_only_lowers_detail_and_keeps_the_base(cap):
    hr_true = _grainy(3.0, 7, 256)
    lr = paper_degrade(hr_true, 4, 3)
    painted = _grainy(12.0, 8, 256).astype(np.float32) - _grainy(0.0, 8, 256) + hr_true  # 4x the grain amplitude
    out, gain = apply_grain_cap(cap, lr, painted, S)
    assert gain.shape[0] == 4 and gain.max() <= 1.0 and gain.min() < 0.6
    assert detail_energy(out, 1.5) < 0.5 * detail_energy(painted, 1.5)
    s0 = cap.sigmas[0]  # below the coarsest split the output is untouched
    base = cv2.GaussianBlur(painted, (0, 0), s0, borderType=cv2.BORDER_REFLECT_101)
    assert np.abs(cv2.GaussianBlur(out, (0, 0), s0, borderType=cv2.BORDER_REFLECT_101) - base).mean() < 1.0
    smooth = cv2.GaussianBlur(hr_true.astype(np.float32), (0, 0), 3.0)  # less detail than predicted: unchanged
    kept, g2 = apply_grain_cap(cap, lr, smooth, S)
    assert g2.min() == 1.0 and np.allclose(kept, smooth, atol=1e-3)
    with pytest.raises(ValueError, match="not 4 x the LR shape"):
        apply_grain_cap(cap, lr, painted[:-4], S)


def test_cap_handles_images_smaller_than_its_window(cap):
    lr = paper_degrade(_grainy(4.0, 3, 40), 4, 3)  # 10x10 LR
    out, gain = apply_grain_cap(cap, lr, _grainy(12.0, 4, 40).astype(np.float32), S)
    assert out.shape == (40, 40) and gain.shape == (4, 1, 1)


def test_cap_json_round_trip_and_clear_errors(cap):
    back = GrainCap.from_json(json.loads(json.dumps(cap.to_json())))
    assert np.allclose(back.weights, cap.weights) and np.allclose(back.bias, cap.bias) and back.sigmas == cap.sigmas
    with pytest.raises(ValueError, match="grain_cap is malformed"):
        GrainCap.from_json({"bias": 1.0})
    with pytest.raises(ValueError, match="weights"):
        GrainCap.from_json({**cap.to_json(), "weights": [[1.0, 2.0]] * 4})
    with pytest.raises(ValueError, match="4 bands"):
        GrainCap.from_json({**cap.to_json(), "bias": [0.0]})
    with pytest.raises(ValueError, match="descending"):
        GrainCap.from_json({**cap.to_json(), "sigmas": [0.6, 1.0, 1.5, 2.0]})


def test_one_band_manifest_format_still_loads_and_caps_the_same():
    """Bundles written before the per-band cap (flat weights, scalar bias, split_sigma) load as a one-band cap."""
    amps = np.exp(np.random.default_rng(1).uniform(np.log(1), np.log(16), 80))
    hrs = [_grainy(a, 100 + i) for i, a in enumerate(amps)]
    one = fit_grain_cap([paper_degrade(h, 4, 3) for h in hrs], hrs, sigmas=(1.5,))
    old = {"weights": list(one.weights[0]), "bias": one.bias[0], "window": 32, "split_sigma": 1.5, "max_gain": 1.0,
           "margin": 1.0}
    back = GrainCap.from_json(old)
    assert back.bands == 1 and back.sigmas == (1.5,) and np.allclose(back.weights, one.weights)
    lr = paper_degrade(_grainy(3.0, 7, 128), 4, 3)
    painted = _grainy(12.0, 8, 128).astype(np.float32)
    assert np.allclose(apply_grain_cap(back, lr, painted, S)[0], apply_grain_cap(one, lr, painted, S)[0])


class _GrainyRunner:
    """Test-only runner whose decoder paints strong pixel grain on a flat latent image."""

    name = "grainy-test"

    def encode_lr(self, lr):
        return np.repeat(lr, 4, axis=1)

    def encode_hr(self, hr):
        return np.repeat(hr[:, :, ::S, ::S], 4, axis=1)

    def denoise(self, x, t, cond):
        return 0.0 * x + cond

    def decode(self, z, graph="hr_decoder"):
        up = z.mean(1, keepdims=True).repeat(S, 2).repeat(S, 3)
        chk = (np.indices(up.shape[-2:]).sum(0) % 2 * 2 - 1).astype(np.float32) * 0.2  # +-25 gray levels
        return np.clip(up + chk, -1, 1)


def test_resolver_applies_the_bundles_cap_unless_switched_off(cap):
    manifest = {"model_id": "grainy", "scale": S, "latent_channels": 4, "latent_scale_factor": 1.0, "lr_patch": 8,
                "prediction": "sample",
                "schedule": {"kind": "linear", "timesteps": 50}, "sampler": {}, "files": {},
                "grain_cap": cap.to_json()}
    b = Bundle(path=None, manifest=Manifest.from_dict(manifest))  # type: ignore[arg-type]
    lr = paper_degrade(_grainy(2.0, 5, 96), 4, 3)
    spec = SamplerSpec("ddim", 2)
    capped = SuperResolver(b, _GrainyRunner(), spec, tile=8, overlap=2).upscale(lr)
    raw = SuperResolver(b, _GrainyRunner(), spec, tile=8, overlap=2, grain_cap=False).upscale(lr)
    assert detail_energy(capped.sr, 1.5) < 0.3 * detail_energy(raw.sr, 1.5)
    assert "grain_cap" in capped.timings_s and "grain_cap" not in raw.timings_s
    with pytest.raises(ManifestError, match="grain_cap"):  # refused when the manifest is read, not at first use
        Manifest.from_dict({**manifest, "grain_cap": {"weights": [1.0]}})


def test_set_grain_cap_puts_it_into_a_verified_bundle(cap, tmp_path):
    pytest.importorskip("torch")
    import shutil

    from edge.sr.bundle import load_bundle
    from edge.train.bundle import set_grain_cap
    from tests.sr_fixtures import tiny_bundle

    d = tmp_path / "b"
    shutil.copytree(tiny_bundle(), d)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"grain_cap": {"weights": [1.0], "bias": 0.0}}))
    before = (d / "manifest.json").read_text()
    with pytest.raises(ValueError, match="weights"):
        set_grain_cap(d, bad)
    assert (d / "manifest.json").read_text() == before  # nothing written
    good = tmp_path / "cap.json"
    good.write_text(json.dumps({"grain_cap": cap.to_json()}))
    set_grain_cap(d, good)
    b = load_bundle(d)  # still verifies (re-hashed)
    assert b.manifest.grain_cap is not None and np.allclose(b.manifest.grain_cap.weights, cap.weights)


def test_gain_interpolation_is_bilinear_between_window_centres_and_clamped():
    from edge.sr.grain import _interp_matrix

    centres = np.array([16.0, 48.0, 80.0])
    m = _interp_matrix(96, centres)
    assert m.shape == (96, 3) and np.allclose(m.sum(1), 1.0)
    g = np.array([1.0, 0.5, 0.2], np.float32)
    line = m @ g
    assert np.allclose(line[:16], 1.0) and np.allclose(line[80:], 0.2)  # clamped outside the first/last centre
    assert line[32] == pytest.approx(1.0 + (32.5 - 16) / 32 * (0.5 - 1.0), abs=1e-6)  # linear in between
