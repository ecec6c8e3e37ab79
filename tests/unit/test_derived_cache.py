"""Derived-file cache: keyed by the source's sha256, verified by its own before use, rebuilt with a warning."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from edge.derived_cache import DerivedCache, sha256_file
from tests.reliability import record


def _builder(calls: list, payload: bytes = b"derived-bytes"):
    def build(tmp):
        calls.append(tmp)
        tmp.write_bytes(payload)
    return build


def test_built_once_then_reused(tmp_path):
    cache, calls = DerivedCache(tmp_path), []
    p1 = cache.get("g", "a" * 64, _builder(calls), "r1", ".bin")
    p2 = cache.get("g", "a" * 64, _builder(calls), "r1", ".bin")
    assert p1 == p2 and len(calls) == 1 and p1.read_bytes() == b"derived-bytes"
    rec = json.loads(cache.record_path(p1).read_text())
    assert rec["sha256"] == sha256_file(p1) and rec["source_sha256"] == "a" * 64 and rec["recipe"] == "r1"
    assert cache.get("g", "b" * 64, _builder(calls), "r1", ".bin") != p1  # another source: another file
    assert cache.get("g", "a" * 64, _builder(calls), "r2", ".bin") != p1  # another recipe: another file
    assert len(calls) == 3 and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("damage", ["changed", "truncated", "record_deleted", "record_garbage", "file_deleted"])
def test_damaged_file_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    cache, calls = DerivedCache(tmp_path), []
    p = cache.get("g", "a" * 64, _builder(calls), suffix=".bin")
    rec = cache.record_path(p)
    if damage == "changed":
        p.write_bytes(b"derived-bytez")
    elif damage == "truncated":
        p.write_bytes(b"der")
    elif damage == "record_deleted":
        rec.unlink()
    elif damage == "record_garbage":
        rec.write_text("{nope")
    else:
        p.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge.cache"):
        assert cache.get("g", "a" * 64, _builder(calls), suffix=".bin") == p
    assert len(calls) == 2 and p.read_bytes() == b"derived-bytes"
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.event for r in warned] == ["cache_rebuild"] and str(p) in warned[0].getMessage()


def test_fused_graph_cache_tampered_or_corrupt_is_rebuilt(tmp_path, monkeypatch, caplog):
    """Issue 16.5: negated weights in the cached fused graph used to change the output by 54 grey levels with
    exit 0, a truncated one gave a raw InvalidProtobuf traceback. Now both are rebuilt and the output is unchanged."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from onnx import numpy_helper

    from edge.sr.resolver import SuperResolver
    from tests.sr_fixtures import tiny_bundle

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    b = tiny_bundle(sampler={"name": "ddim", "steps": 2})
    img = (np.random.default_rng(1).random((16, 16)) * 255).astype(np.uint8)
    want = SuperResolver.from_bundle(b, seed=2, fused=True).upscale(img).sr
    [cached] = list((tmp_path / "lpbf-edge" / "fused").glob("*.fused.onnx"))
    model = onnx.load(str(cached))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 16:
            init.CopyFrom(numpy_helper.from_array(-arr, init.name))
    onnx.save(model, str(cached))
    with caplog.at_level(logging.WARNING, logger="edge.cache"):
        got = SuperResolver.from_bundle(b, seed=2, fused=True).upscale(img).sr
    assert any(r.event == "cache_rebuild" and "differs" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(got, want)
    record("fused-ONNX cache file with negated weights", "derived files",
           next(r.getMessage() for r in caplog.records if r.event == "cache_rebuild"), exit_code=0)
    caplog.clear()
    cached.write_bytes(cached.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="edge.cache"):
        got = SuperResolver.from_bundle(b, seed=2, fused=True).upscale(img).sr
    np.testing.assert_array_equal(got, want)
    msg = next(r.getMessage() for r in caplog.records if r.event == "cache_rebuild")
    record("fused-ONNX cache file truncated", "derived files", msg, exit_code=0)


def test_fused_openvino_loop_uses_the_same_verified_cache(tmp_path, monkeypatch, caplog):
    """The fused OpenVINO loop opens the same derived file as ONNX Runtime: built once, verified, rebuilt when
    tampered with (the image is unchanged)."""
    pytest.importorskip("openvino")
    pytest.importorskip("torch")
    from edge.sr.resolver import SuperResolver
    from tests.sr_fixtures import tiny_bundle

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    b = tiny_bundle(sampler={"name": "ddim", "steps": 2})
    img = (np.random.default_rng(1).random((16, 16)) * 255).astype(np.uint8)
    want = SuperResolver.from_bundle(b, backend="openvino", seed=2, fused=True).upscale(img).sr
    [cached] = list((tmp_path / "lpbf-edge" / "fused").glob("*.fused.onnx"))
    SuperResolver.from_bundle(b, backend="ort", seed=2, fused=True)  # ORT finds the same file: no second build
    assert list((tmp_path / "lpbf-edge" / "fused").glob("*.fused.onnx")) == [cached]
    cached.write_bytes(cached.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="edge.cache"):
        got = SuperResolver.from_bundle(b, backend="openvino", seed=2, fused=True).upscale(img).sr
    assert any(r.event == "cache_rebuild" for r in caplog.records)
    np.testing.assert_array_equal(got, want)
