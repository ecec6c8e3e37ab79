"""A bundle with a texture (sample) decoder.

Single samples decode with it, means with the L1 decoder, on every backend.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from edge.sr.bundle import MANIFEST, load_bundle, write_bundle  # noqa: E402
from edge.sr.resolver import SuperResolver  # noqa: E402
from tests.sr_fixtures import HR_SCALE, tiny_bundle, tiny_nets  # noqa: E402


@pytest.fixture(scope="module")
def bundle_with_sample_decoder(tmp_path_factory):
    """The tiny test bundle plus hr_decoder_sample.onnx/.safetensors from another seed's HR autoencoder."""
    from edge.models import ScaledDecoder
    from edge.sr.export import export_bundle_graphs

    out = tmp_path_factory.mktemp("sampledec") / "b"
    shutil.copytree(tiny_bundle(), out)
    m = json.loads((out / MANIFEST).read_text())
    other_hr = tiny_nets(seed=7)[0]
    export_bundle_graphs({"hr_decoder_sample": ScaledDecoder(other_hr, HR_SCALE).eval()}, out, lr_patch=m["lr_patch"],
                         scale=m["scale"], latent_channels=m["latent_channels"], exporter="legacy")
    write_bundle(out, m)
    return out


def _lr() -> np.ndarray:
    return np.random.default_rng(3).integers(60, 200, (12, 20), dtype=np.uint8)


def test_decoder_choice_follows_the_reduction(bundle_with_sample_decoder):
    b = load_bundle(bundle_with_sample_decoder)
    assert b.has_graph("hr_decoder_sample")
    assert b.decoder_for("sample") == "hr_decoder_sample" and b.decoder_for("mean") == "hr_decoder"
    plain = load_bundle(tiny_bundle())
    assert not plain.has_graph("hr_decoder_sample") and plain.decoder_for("sample") == "hr_decoder"


def test_single_sample_uses_the_sample_decoder(bundle_with_sample_decoder):
    lr = _lr()
    with_tex = SuperResolver.from_bundle(bundle_with_sample_decoder, backend="ort", seed=1)
    one, mean_of_one = with_tex.upscale(lr).sr, with_tex.upscale(lr, samples=1, reduce="mean").sr
    # same latent, two decoders: the outputs differ
    assert np.abs(one.astype(int) - mean_of_one.astype(int)).mean() > 1.0
    # without the sample decoder a mean of one sample IS that sample, and it equals the mean path above
    plain = SuperResolver.from_bundle(tiny_bundle(), backend="ort", seed=1)
    np.testing.assert_array_equal(plain.upscale(lr).sr, plain.upscale(lr, samples=1, reduce="mean").sr)
    np.testing.assert_array_equal(plain.upscale(lr).sr, mean_of_one)


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_other_backends_load_the_sample_decoder(bundle_with_sample_decoder, backend):
    lr = _lr()
    ref = SuperResolver.from_bundle(bundle_with_sample_decoder, backend="ort", seed=2).upscale(lr).sr
    got = SuperResolver.from_bundle(bundle_with_sample_decoder, backend=backend, seed=2).upscale(lr).sr
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 2


def test_light_decoder_replaces_the_single_sample_decoder(bundle_with_sample_decoder, tmp_path):
    from edge.sr.bundle import BundleError

    b = tmp_path / "light"
    shutil.copytree(bundle_with_sample_decoder, b)
    # stand-in light decoder: a copy of the mean decoder, so the light single sample must equal the mean of one sample
    shutil.copy(b / "hr_decoder.onnx", b / "hr_decoder_light.onnx")
    m = json.loads((b / MANIFEST).read_text())
    write_bundle(b, {**m, "distilled": {"light_decoder": {"file": "hr_decoder_light.onnx"}}})
    lr = _lr()
    light = SuperResolver.from_bundle(b, backend="ort", seed=4, decoder="light")
    full = SuperResolver.from_bundle(b, backend="ort", seed=4)
    assert light.model_id.endswith("+light_decoder")
    np.testing.assert_array_equal(light.upscale(lr).sr, full.upscale(lr, samples=1, reduce="mean").sr)
    assert np.abs(light.upscale(lr).sr.astype(int) - full.upscale(lr).sr.astype(int)).mean() > 1.0
    with pytest.raises(BundleError, match="no distilled light decoder"):
        SuperResolver.from_bundle(bundle_with_sample_decoder, backend="ort", decoder="light")
    with pytest.raises(ValueError, match="'full' or 'light'"):
        SuperResolver.from_bundle(b, backend="ort", decoder="tiny")


def test_fast_profile_takes_the_bundles_fast_path(bundle_with_sample_decoder, tmp_path):
    from edge.sr.bundle import BundleError
    from edge.sr.config import SRConfig
    from edge.sr.runners import openvino_bf16_supported

    b = tmp_path / "fast"
    shutil.copytree(bundle_with_sample_decoder, b)
    shutil.copy(b / "hr_decoder.onnx", b / "hr_decoder_light.onnx")
    m = json.loads((b / MANIFEST).read_text())
    entries = [{"backend": "openvino", "openvino_precision": "bf16", "decoder": "light"},
               {"backend": "ort", "decoder": "light"}]
    write_bundle(b, {**m, "distilled": {"light_decoder": {"file": "hr_decoder_light.onnx"}},
                     "fast_path": {"box_config": entries}})
    fast = SuperResolver.from_config(SRConfig(model=str(b)))  # profile fast is the default
    assert fast.model_id.endswith("+light_decoder") and "fast path" in fast.settings_note
    assert fast.runner.name == ("openvino" if openvino_bf16_supported() else "ort")
    quality = SuperResolver.from_config(SRConfig(model=str(b), profile="quality"))
    assert quality.model_id == m["model_id"] and quality.runner.name == "ort"  # quality profile: untouched
    # settings written in the config win over the fast path's; the rest still comes from it
    mine = SuperResolver.from_config(SRConfig(model=str(b), backend="ort"))
    assert mine.runner.name == "ort" and mine.model_id.endswith("+light_decoder")
    full = SuperResolver.from_config(SRConfig(model=str(b), decoder="full"))
    assert full.model_id == m["model_id"]
    # a bundle without a fast path runs its own sampler and says so
    own = SuperResolver.from_config(SRConfig(model=str(bundle_with_sample_decoder)))
    assert own.model_id == m["model_id"] and "names no fast path" in own.settings_note
    with pytest.raises(BundleError, match="names no fast path"):
        from edge.sr.bundle import load_bundle
        from edge.sr.profile import fast_path_settings

        fast_path_settings(load_bundle(bundle_with_sample_decoder))
