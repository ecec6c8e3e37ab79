"""Engine cache keyed by model/TensorRT/GPU/shapes; refusal and rebuild of mismatched engines (pure Python)."""

from __future__ import annotations

import json

import pytest

from trt_build.build import LayerInfo, bucket_profiles, fp32_layers
from trt_build.cache import EngineCache, EngineKey, EngineMismatch, sha256_file
from trt_build.recipe import DeviceFacts, Recipe

PROF = [{"x": ((1, 4, 16, 16), (1, 4, 16, 16), (1, 4, 16, 16))}]
ORIN = DeviceFacts("Orin", "8.7", "10.3.0", "12.6", "36.4.0")


def _key(**kw) -> EngineKey:
    base = dict(name="denoiser", model_sha256="a" * 64, recipe_sha256=Recipe().digest(), device_name="Orin",
                compute_capability="8.7", trt_version="10.3.0", cuda_version="12.6", l4t_version="36.4.0",
                profiles=PROF)
    base.update(kw)
    return EngineKey(**base)


def test_key_make_equals_the_explicit_key_and_the_recipe_is_part_of_it():
    assert EngineKey.make("denoiser", "a" * 64, Recipe(), ORIN, PROF) == _key()
    assert EngineKey.make("denoiser", "a" * 64, Recipe(buckets=(1, 2)), ORIN, PROF) != _key()
    assert EngineKey.make("denoiser", "a" * 64, Recipe(precision="fp32"), ORIN, PROF).precision == "fp32"


def test_store_then_check_roundtrip(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.store(_key(), b"engine-bytes")
    assert cache.check(_key()) == path
    entry = json.loads((tmp_path / "manifest.json").read_text())["engines"]["denoiser"]
    assert entry["engine_sha256"] == sha256_file(path)
    assert entry["key"]["compute_capability"] == "8.7"
    # profiles survive the JSON round trip (tuples vs lists) and still compare equal
    assert EngineKey(**entry["key"]) == _key()


@pytest.mark.parametrize("field,value,words", [
    ("trt_version", "10.7.0", "trt_version"),
    ("compute_capability", "7.2", "compute_capability"),
    ("device_name", "Xavier", "device_name"),
    ("cuda_version", "12.2", "cuda_version"),
    ("l4t_version", "36.3.0", "l4t_version"),
    ("recipe_sha256", Recipe(transform="fused-step/2").digest(), "recipe_sha256"),
    ("model_sha256", "b" * 64, "model_sha256"),
    ("profiles", [{"x": ((2, 4, 16, 16),) * 3}], "profiles"),
])
def test_mismatch_is_refused_with_reason(tmp_path, field, value, words):
    cache = EngineCache(tmp_path)
    cache.store(_key(), b"old")
    with pytest.raises(EngineMismatch, match=words):
        cache.check(_key(**{field: value}))


def test_get_or_build_rebuilds_mismatch_and_removes_old(tmp_path):
    cache, logs, builds = EngineCache(tmp_path), [], []

    def build(tag):
        return lambda: builds.append(tag) or tag.encode()

    p1 = cache.get_or_build(_key(), build("v1"), log=logs.append)
    assert cache.get_or_build(_key(), build("again"), log=logs.append) == p1 and builds == ["v1"]
    p2 = cache.get_or_build(_key(trt_version="10.4.0"), build("v2"), log=logs.append)
    assert builds == ["v1", "v2"] and p2.read_bytes() == b"v2" and not p1.exists()
    assert any("building" in m and "trt_version" in m for m in logs)


def test_corrupt_engine_is_refused(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.store(_key(), b"good")
    path.write_bytes(b"tampered")
    with pytest.raises(EngineMismatch, match="corrupt"):
        cache.check(_key())
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(EngineMismatch, match="unreadable"):
        cache.check(_key())


def _onnx(path, batch):
    import onnx
    from onnx import TensorProto, helper

    dims = [batch, 4, 16, 16]
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    onnx.save(helper.make_model(g, ir_version=9), str(path))
    return path


def test_bucket_profiles(tmp_path):
    dyn = bucket_profiles(_onnx(tmp_path / "d.onnx", "B"), [4, 1, 2, 2])
    assert [p["x"][0][0] for p in dyn] == [1, 2, 4]
    assert all(p["x"][0] == p["x"][2] for p in dyn)
    static = bucket_profiles(_onnx(tmp_path / "s.onnx", 2), [1, 8])
    assert static == [{"x": ((2, 4, 16, 16),) * 3}]
    with pytest.raises(ValueError, match="positive"):
        bucket_profiles(tmp_path / "d.onnx", [0])


def test_fp32_layer_selection():
    """Marked layers (fp32. prefix or a marked output tensor) and kept types are pinned, but only when all-float."""
    layers = [LayerInfo("/conv_in/Conv", "CONVOLUTION", ("a",), True),
              LayerInfo("fp32.node_sin", "UNARY", ("sin",), True),
              LayerInfo("fp32.node_sin_1", "UNARY", ("sin_1",), True),  # a second layer the parser made for the node
              LayerInfo("node_shape", "SHAPE", ("s",), False),
              LayerInfo("fp32.norm/reshape_int", "SHUFFLE", ("i",), False),  # marked but integer: never pinned
              LayerInfo("layer_7", "ELEMENTWISE", ("x0",), True),  # writes a marked tensor
              LayerInfo("ln", "NORMALIZATION", ("n",), True),
              LayerInfo("const", "CONSTANT", ("w",), True)]
    assert fp32_layers(layers, marked_outputs={"x0"}) == [1, 2, 5, 6]
    assert fp32_layers(layers, keep_types=[]) == [1, 2]
