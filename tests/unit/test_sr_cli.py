"""`lpbf-edge sr` end to end (real subprocess) on the tiny bundle: outputs, std maps, bad inputs reported per file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")

from tests.sr_fixtures import tiny_bundle  # noqa: E402


def _cli(*args: str | Path, env_model: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if env_model is not None:
        env["LPBF_MODEL"] = str(env_model)
    return subprocess.run([sys.executable, "-m", "edge.cli", "sr", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    p = {}
    p["good"] = d / "good.png"
    Image.fromarray((rng.random((10, 17)) * 255).astype(np.uint8)).save(p["good"])
    p["colour"] = d / "colour.jpg"
    Image.fromarray((rng.random((9, 12, 3)) * 255).astype(np.uint8)).save(p["colour"], quality=90)
    p["deep"] = d / "deep.png"
    Image.fromarray((rng.random((8, 8)) * 65535).astype(np.uint16)).save(p["deep"])
    p["trunc"] = d / "trunc.png"
    full = d / "full.png"
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(full)
    p["trunc"].write_bytes(full.read_bytes()[:200])
    p["empty"] = d / "empty.png"
    p["empty"].write_bytes(b"")
    p["text"] = d / "notes.png"
    p["text"].write_text("this is not an image\n")
    return p


def test_good_and_bad_inputs(tmp_path, inputs):
    out = tmp_path / "out"
    r = _cli(*inputs.values(), tmp_path / "missing.png", "--out", out, "--model", tiny_bundle())
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    bad = {"deep": "8-bit", "trunc": "truncated", "empty": "empty file", "text": "not an image"}
    for key, reason in bad.items():
        assert any(ln.startswith(f"{inputs[key]}: ") and reason in ln for ln in lines), (key, r.stderr)
    assert any(ln.startswith(f"{tmp_path / 'missing.png'}: no such file") for ln in lines)
    assert "5 of 7 input(s) failed" in r.stderr
    good = np.asarray(Image.open(out / "good.png"))
    assert good.dtype == np.uint8 and good.shape == (40, 68)
    colour = Image.open(out / "colour.png")
    assert colour.mode == "L" and colour.size == (48, 36)
    assert sorted(p.name for p in out.iterdir()) == ["colour.png", "good.png"]


def test_uncertainty_and_default_model_from_env(tmp_path, inputs):
    out = tmp_path / "out"
    r = _cli(inputs["good"], "--out", out, "--samples", "2", "--reduce", "mean", "--uncertainty", "--steps", "2",
             env_model=tiny_bundle())
    assert r.returncode == 0, r.stderr
    std = np.asarray(Image.open(out / "good.std.png"))
    assert std.shape == (40, 68) and std.dtype == np.uint8 and std.max() > 0


def test_model_and_backend_errors(tmp_path, inputs):
    bad = tmp_path / "bundle"
    shutil.copytree(tiny_bundle(), bad)
    (bad / "denoiser.onnx").write_bytes(b"tampered")
    r = _cli(inputs["good"], "--out", tmp_path / "o", "--model", bad)
    assert r.returncode == 2 and "denoiser.onnx" in r.stderr and "sha256" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _cli(inputs["good"], "--out", tmp_path / "o", "--model", tiny_bundle(), "--backend", "tensorrt")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert r.returncode == 2 and "TensorRT" in r.stderr and "--backend ort" in r.stderr
