"""The typed manifest: parsed and validated once at load, bad entries refused naming the key, variants are copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.sr.bundle import GRAPHS, BundleError, load_bundle, write_bundle
from edge.sr.grain import GrainCap
from edge.sr.manifest import Manifest, ManifestError
from edge.sr.schedule import timesteps_for

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "default" / "manifest.json"


def _minimal() -> dict:
    """A small valid manifest with one distilled student."""
    return {"model_id": "tiny", "scale": 4, "latent_channels": 4, "latent_scale_factor": 2.5, "lr_patch": 8,
            "schedule": {"kind": "cosine", "timesteps": 50}, "prediction": "v_prediction",
            "sampler": {"name": "dpmpp_2m", "steps": 10}, "files": {},
            "arch": {"unet": {"block_out_channels": [8, 16]}},
            "distilled": {"student2": {"file": "denoiser_student2.onnx", "steps": 2, "sampler": "ddim",
                                       "timesteps": [int(t) for t in timesteps_for(50, 2, "trailing")]}}}


def test_shipped_manifest_is_typed():
    m = Manifest.from_dict(json.loads(SHIPPED.read_text()))
    assert m.scale == 4 and m.latent_channels == 4 and isinstance(m.latent_scale_factor, float)
    assert m.make_schedule().T == m.timesteps == 200
    student = m.distilled["student2"]
    assert student.is_student and student.graph == "denoiser" and student.steps == 2
    assert m.distilled["light_decoder"].graph == "hr_decoder_sample"
    assert m.distilled["light_encoder"].graph == "lr_encoder"
    assert m.fast_path and m.fast_path[0]["sampler"] == "student2"
    assert isinstance(m.grain_cap, GrainCap)
    assert m.unet_levels == len(m.arch["unet"]["block_out_channels"])


@pytest.mark.parametrize("change, key", [
    ({"prediction": "x0"}, "prediction"),
    ({"scale": 0}, "scale"),
    ({"lr_patch": "8"}, "lr_patch"),
    ({"files": ["a.onnx"]}, "files"),
    ({"latent_scale_factor": "big"}, "latent_scale_factor"),
    ({"schedule": {"kind": "quadratic", "timesteps": 50}}, "schedule"),
    ({"sampler": {"name": "euler"}}, "sampler"),
    ({"distilled": {"student2": {"steps": 2}}}, "distilled.student2"),
    ({"distilled": {"student2": {"file": "s.onnx", "steps": "two"}}}, "distilled.student2"),
    ({"grain_cap": {"weights": [1.0]}}, "grain_cap"),
    ({"fast_path": {"box_config": ["openvino"]}}, "fast_path.box_config"),
])
def test_bad_entries_are_refused_naming_the_key(change, key):
    with pytest.raises(ManifestError, match=key.replace(".", r"\.")):
        Manifest.from_dict({**_minimal(), **change})


def test_missing_keys_are_listed():
    d = _minimal()
    del d["prediction"], d["sampler"]
    with pytest.raises(ManifestError, match="lacks prediction, sampler"):
        Manifest.from_dict(d)


def _dummy_bundle(d: Path, manifest: dict, student: bool = True) -> Path:
    """Placeholder graph files (hashing and listing do not parse them) under `d`."""
    d.mkdir(parents=True, exist_ok=True)
    for g in GRAPHS:
        (d / f"{g}.onnx").write_bytes(g.encode())
    if student:
        (d / "denoiser_student2.onnx").write_bytes(b"student")
    write_bundle(d, manifest)
    return d


def test_load_gives_the_typed_manifest_and_variants_are_copies(tmp_path: Path):
    b = load_bundle(_dummy_bundle(tmp_path / "b", _minimal()))
    assert isinstance(b.manifest, Manifest) and b.manifest.has_file("denoiser_student2.onnx")
    s = b.student("student2")
    assert s.manifest.sampler == {"name": "ddim", "steps": 2, "spacing": "trailing", "init": "noise"}
    assert s.model_id == "tiny+student2" and s.graph("denoiser").name == "denoiser_student2.onnx"
    assert b.manifest.sampler["name"] == "dpmpp_2m" and b.model_id == "tiny"  # the base bundle is unchanged


def test_write_refuses_an_invalid_manifest_and_writes_nothing(tmp_path: Path):
    d = _dummy_bundle(tmp_path / "b", _minimal())
    before = (d / "manifest.json").read_text()
    with pytest.raises(BundleError, match="prediction"):
        write_bundle(d, {**_minimal(), "prediction": "x0"})
    assert (d / "manifest.json").read_text() == before


def test_a_distilled_file_the_manifest_does_not_pin_is_refused_at_load(tmp_path: Path):
    d = _dummy_bundle(tmp_path / "b", _minimal(), student=False)  # student listed in `distilled`, file absent
    with pytest.raises(BundleError, match="does not list denoiser_student2.onnx"):
        load_bundle(d)
