"""Bundle integrity: every file hashed on write, verified on load; missing/corrupt files refused with a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from edge.sr.bundle import (  # noqa: E402
    FORMAT,
    BundleError,
    default_bundle_path,
    load_bundle,
    resolve_bundle_path,
    sha256_file,
    write_bundle,
)
from tests.sr_fixtures import tiny_bundle  # noqa: E402


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle(), dst)
    return dst


def test_written_manifest_pins_every_file(bundle_copy: Path):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    assert m["format"] == FORMAT
    on_disk = {p.name for p in bundle_copy.iterdir() if p.name != "manifest.json"}
    assert set(m["files"]) == on_disk
    assert {"denoiser.onnx", "lr_encoder.onnx", "hr_encoder.onnx", "hr_decoder.onnx", "regression.onnx",
            "denoiser.safetensors"} <= on_disk
    for rel, digest in m["files"].items():
        assert sha256_file(bundle_copy / rel) == digest
    b = load_bundle(bundle_copy)
    assert b.scale == 4 and b.latent_channels == 4 and b.model_id == m["model_id"]


def test_corrupt_file_is_refused_naming_it(bundle_copy: Path):
    f = bundle_copy / "hr_decoder.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError) as e:
        load_bundle(bundle_copy)
    msg = str(e.value)
    assert "hr_decoder.onnx" in msg and "sha256" in msg and "restore" in msg


def test_missing_file_is_refused_naming_it(bundle_copy: Path):
    (bundle_copy / "denoiser.safetensors").unlink()
    with pytest.raises(BundleError, match=r"denoiser\.safetensors.*missing"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update(format="other/9"), "format"),
    (lambda m: m.pop("scale"), "scale"),
    (lambda m: m["files"].pop("denoiser.onnx"), "denoiser.onnx"),
])
def test_bad_manifest_is_refused(bundle_copy: Path, change, match):
    p = bundle_copy / "manifest.json"
    m = json.loads(p.read_text())
    change(m)
    p.write_text(json.dumps(m))
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle_copy)


def test_not_a_bundle(tmp_path: Path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="manifest.json: missing"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(tmp_path)


def test_write_refuses_incomplete_and_rehashes(bundle_copy: Path, tmp_path: Path):
    with pytest.raises(BundleError, match="export them first"):
        write_bundle(tmp_path, {"model_id": "x"})
    m = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / "notes.txt").write_text("hello")
    write_bundle(bundle_copy, m)
    assert "notes.txt" in load_bundle(bundle_copy).manifest.files


def test_default_bundle_path(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("LPBF_MODEL", raising=False)
    assert default_bundle_path() == Path(__file__).resolve().parents[2] / "models" / "default"
    monkeypatch.setenv("LPBF_MODEL", str(tmp_path))
    assert default_bundle_path() == tmp_path


def test_resolve_bundle_path_order_and_explicitness(monkeypatch, tmp_path):
    """--model, then $LPBF_MODEL, then the repo's models/default (the only implicit one); never the working dir."""
    monkeypatch.delenv("LPBF_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    repo_default = Path(__file__).resolve().parents[2] / "models" / "default"
    assert resolve_bundle_path(None) == (repo_default, False)
    monkeypatch.setenv("LPBF_MODEL", str(tmp_path / "env"))
    assert resolve_bundle_path(None) == (tmp_path / "env", True)
    assert resolve_bundle_path(tmp_path / "cli") == (tmp_path / "cli", True)
