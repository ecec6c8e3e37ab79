"""SuperResolver over the tiny bundle on ONNX Runtime.

Covers shapes, determinism, samples/mean/std, sampler choice, bad input.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from edge.sr.bundle import BundleError  # noqa: E402
from edge.sr.resolver import SRResult, SuperResolver  # noqa: E402
from tests.sr_fixtures import tiny_bundle  # noqa: E402

IMG = (np.random.default_rng(0).random((13, 21)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def resolver():
    return SuperResolver.from_bundle(tiny_bundle(), backend="ort", seed=3)


def test_upscale_any_size_deterministic(resolver):
    a = resolver.upscale(IMG)
    assert isinstance(a, SRResult) and a.sr.dtype == np.uint8 and a.sr.shape == (52, 84) and a.std is None
    assert a.model_id == resolver.bundle.model_id and a.timings_s["total"] > 0
    np.testing.assert_array_equal(a.sr, resolver.upscale(IMG).sr)
    other = SuperResolver(resolver.bundle, resolver.runner, resolver.spec, seed=4).upscale(IMG)
    assert np.abs(other.sr.astype(int) - a.sr.astype(int)).max() > 0
    tiny = resolver.upscale(IMG[:3, :2])  # smaller than one tile: reflection padded, cropped back
    assert tiny.sr.shape == (12, 8)


def test_inputs_smaller_than_a_tile_with_the_grain_cap():
    """A 2x3 input is padded to a tile before the model and the grain cap: finite, not blank, and the top-left of
    the output matches the same pixels super-resolved inside the padded image (the cap used to give NaN -> all 0)."""
    from edge.sr.grain import GrainCap, n_features
    from edge.sr.tiling import pad_to_tile

    base = SuperResolver.from_bundle(tiny_bundle(), backend="ort", seed=3)
    cap = GrainCap(weights=((0.0,) * n_features(),), bias=(1.0,), sigmas=(1.5,), window=32)
    capped = SuperResolver(base.bundle, base.runner, base.spec, seed=3)
    capped.grain_cap = cap
    img = IMG[:2, :3]
    out = capped.upscale(img).sr
    assert out.shape == (8, 12) and 0 < out.mean() < 255 and out.std() > 0
    padded = capped.upscale(pad_to_tile(img, capped.tile)).sr
    np.testing.assert_array_equal(out, padded[:8, :12])


def test_non_finite_model_output_is_refused(resolver):
    nan = SuperResolver(resolver.bundle, resolver.runner, resolver.spec)
    nan.runner = type("NaNRunner", (), {"name": "nan", "encode_lr": resolver.runner.encode_lr,
                                        "denoise": resolver.runner.denoise,
                                        "decode": lambda self, z, g="hr_decoder": np.full(
                                            (z.shape[0], 1, z.shape[2] * 4, z.shape[3] * 4), np.nan, np.float32)})()
    with pytest.raises(RuntimeError, match="non-finite"):
        nan.upscale(IMG)


def test_batches_span_images_and_rows_with_static_shapes(resolver):
    """Tiles of several images share fixed-size batches; each result equals upscale() of its own image."""
    seen = []
    r = SuperResolver(resolver.bundle, resolver.runner, resolver.spec, seed=3, batch=8)
    enc = r.runner.encode_lr
    r.condition = lambda lr, images: seen.append(lr.shape[0]) or enc(lr)  # type: ignore[method-assign]
    imgs = [IMG, IMG[:9, :11], np.flipud(IMG).copy()]
    many = r.upscale_many(imgs)
    assert set(seen) <= {1, 2, 4, 8} and seen[:-1] == [8] * (len(seen) - 1)  # full batches, one bucketed remainder
    for img, res in zip(imgs, many, strict=False):
        np.testing.assert_array_equal(res.sr, resolver.upscale(img).sr)
    done = []
    r.upscale(IMG, progress=lambda d, t: done.append((d, t)))
    assert done[-1][0] == done[-1][1] and [d for d, _ in done] == sorted(d for d, _ in done)


def test_prefetch_off_gives_the_same_image(resolver):
    off = SuperResolver(resolver.bundle, resolver.runner, resolver.spec, seed=3, prefetch=False)
    np.testing.assert_array_equal(off.upscale(IMG).sr, resolver.upscale(IMG).sr)


def test_samples_mean_and_std(resolver):
    one = resolver.upscale(IMG)
    r = resolver.upscale(IMG, samples=3, reduce="mean", uncertainty=True)
    assert r.std is not None and r.std.shape == r.sr.shape and r.std.dtype == np.float32
    assert r.std.min() >= 0 and r.std.mean() > 0.1
    assert np.abs(r.sr.astype(int) - one.sr.astype(int)).max() > 0  # the mean is not the first sample
    first = resolver.upscale(IMG, samples=3, reduce="sample")
    np.testing.assert_array_equal(first.sr, one.sr)  # reduce=sample keeps sample 0 whatever K is


def test_sampler_selection():
    r = SuperResolver.from_bundle(tiny_bundle(), sampler="reference")
    assert r.spec.name == "ddpm" and r.spec.steps == 50
    r = SuperResolver.from_bundle(tiny_bundle(), sampler="ddim", steps=3)
    assert (r.spec.name, r.spec.steps) == ("ddim", 3)
    with pytest.raises(ValueError, match="unknown sampler"):
        SuperResolver.from_bundle(tiny_bundle(), sampler="euler")


def test_noised_estimate_fast_path():
    b = tiny_bundle(prediction="epsilon", schedule="linear",
                    sampler={"name": "ddim", "steps": 2, "init": "noised_estimate", "t_start": 20})
    r = SuperResolver.from_bundle(b)
    assert r.spec.init == "noised_estimate" and r.spec.t_start == 20
    out = r.upscale(IMG)
    assert out.sr.shape == (52, 84)


def test_regression_estimate_start():
    b = tiny_bundle(sampler={"name": "dpmpp_2m", "steps": 2, "init": "noised_estimate", "t_start": 10,
                             "estimate": "regression"})
    r = SuperResolver.from_bundle(b)
    assert r.spec.estimate == "regression"
    calls = []
    est = r.runner.estimate
    r.runner.estimate = lambda c: calls.append(c.shape) or est(c)  # type: ignore[method-assign]
    assert r.upscale(IMG).sr.shape == (52, 84) and calls


@pytest.mark.parametrize("bad, match", [
    (np.zeros((4, 4), np.uint16), "uint8"),
    (np.zeros((0, 4), np.uint8), "non-empty"),
    (np.zeros((4, 4, 3), np.uint8), "2-D"),
])
def test_bad_arrays(resolver, bad, match):
    with pytest.raises(ValueError, match=match):
        resolver.upscale(bad)


def test_bad_tiling_options():
    with pytest.raises(ValueError, match="overlap"):
        SuperResolver.from_bundle(tiny_bundle(), tile=8, overlap=8)
    with pytest.raises(ValueError, match="multiple of 2"):
        SuperResolver.from_bundle(tiny_bundle(), tile=9)
    thin = SuperResolver.from_bundle(tiny_bundle(), tile=8, overlap=0).upscale(IMG[:1, :5])  # 1-px-high image
    assert thin.sr.shape == (4, 20)


def test_bad_options(resolver):
    with pytest.raises(ValueError, match="2 samples"):
        resolver.upscale(IMG, uncertainty=True)
    with pytest.raises(ValueError, match="reduce"):
        resolver.upscale(IMG, samples=2, reduce="median")  # type: ignore[arg-type]


def test_missing_default_bundle(monkeypatch, tmp_path):
    monkeypatch.setenv("LPBF_MODEL", str(tmp_path / "absent"))
    with pytest.raises(BundleError, match="LPBF_MODEL"):
        SuperResolver.from_bundle()


def test_from_config():
    from edge.sr.config import SRConfig

    cfg = SRConfig(model=str(tiny_bundle()), backend="openvino", steps=2, sampler="ddim", tile=12, overlap=2, seed=9)
    r = SuperResolver.from_config(cfg)
    assert (r.runner.name, r.spec.name, r.spec.steps, r.tile, r.overlap, r.seed) == ("openvino", "ddim", 2, 12, 2, 9)
    assert r.upscale(IMG).sr.shape == (52, 84)


@pytest.mark.parametrize("sampler", [{"name": "dpmpp_2m", "steps": 3}, {"name": "ddim", "steps": 3, "eta": 1.0}])
def test_fused_step_path_equals_plain_sampler(tmp_path, monkeypatch, sampler):
    """FAST's fused step graph (sampler update inside ONNX) gives the same image as the numpy sampler loop."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    b = tiny_bundle(sampler=sampler)
    plain = SuperResolver.from_bundle(b, seed=2).upscale(IMG, samples=2, reduce="mean")
    fused_r = SuperResolver.from_bundle(b, seed=2, fused=True)
    assert fused_r._fused is not None and list((tmp_path / "lpbf-edge" / "fused").glob("*.fused.onnx"))
    fused = fused_r.upscale(IMG, samples=2, reduce="mean")
    assert np.abs(plain.sr.astype(int) - fused.sr.astype(int)).max() <= 1
    ov = SuperResolver.from_bundle(b, seed=2, backend="openvino", fused=True)  # the same plan in OpenVINO's loop
    assert ov._fused is not None
    assert np.abs(ov.upscale(IMG, samples=2, reduce="mean").sr.astype(int) - plain.sr.astype(int)).max() <= 1
    from edge.sr.resolver import _fused_sampler

    with pytest.raises(ValueError, match="ONNX Runtime or OpenVINO only"):
        _fused_sampler(b, type("R", (), {"name": "torch"})())


def _bundle_with_student(tmp_path, timesteps):
    """Copy of the tiny bundle shipping a 'student2'.

    Here it is a copy of its own denoiser, so results must match DDIM-2."""
    import json
    import shutil

    from edge.sr.bundle import MANIFEST, write_bundle

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle(), out)
    (out / "denoiser.onnx").replace(out / "denoiser_student2.onnx")
    shutil.copy(out / "denoiser_student2.onnx", out / "denoiser.onnx")
    m = json.loads((out / MANIFEST).read_text())
    m["distilled"] = {"student2": {"file": "denoiser_student2.onnx", "steps": 2, "timesteps": timesteps,
                                   "sampler": "ddim"}}
    write_bundle(out, m)
    return out


def test_distilled_student_is_a_sampler_choice(tmp_path):
    bundle = _bundle_with_student(tmp_path, [49, 24])
    student = SuperResolver.from_bundle(bundle, backend="ort", seed=3, sampler="student2")
    plain = SuperResolver.from_bundle(bundle, backend="ort", seed=3, sampler="ddim", steps=2)
    assert student.model_id.endswith("+student2") and (student.spec.name, student.spec.steps) == ("ddim", 2)
    assert student.bundle.graph("denoiser").name == "denoiser_student2.onnx"
    np.testing.assert_array_equal(student.upscale(IMG).sr, plain.upscale(IMG).sr)
    (bundle / "denoiser_student2.onnx").write_bytes(b"corrupt")
    with pytest.raises(BundleError, match="denoiser_student2.onnx"):
        SuperResolver.from_bundle(bundle, sampler="student2")


def test_student_distilled_at_other_timesteps_or_absent_is_refused(tmp_path):
    bundle = _bundle_with_student(tmp_path, [49, 10])
    with pytest.raises(BundleError, match="trailing timesteps"):
        SuperResolver.from_bundle(bundle, sampler="student2")
    with pytest.raises(BundleError, match="no distilled student 'student4'"):
        SuperResolver.from_bundle(tiny_bundle(), sampler="student4")
