"""Prepared ONNX -> serialized TensorRT 10 engine: FP16 with the prepared graph's FP32 islands pinned, one
optimisation profile per batch bucket (min = opt = max)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trt_build.cache import Profile
from trt_build.convert import FP32_MARK, marked_fp32
from trt_build.device import TensorRTUnavailable, import_trt

# TensorRT layer types kept FP32 wherever they compute on floats, as a second net under the op-pattern marks.
KEEP_FP32_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")
# Layer types that hold or move data without arithmetic worth pinning (and CONSTANT/SHAPE are never float math).
NEVER_PIN_TYPES = ("CONSTANT", "SHAPE", "ASSERTION", "CAST")


class EngineBuildError(RuntimeError):
    """The parser or builder refused the graph; the message carries TensorRT's own errors."""


@dataclass(frozen=True)
class LayerInfo:
    """What pinning needs to know about one network layer."""

    name: str
    type: str
    output_names: tuple[str, ...]
    float_outputs: bool  # every output is FP32/FP16


def onnx_input_shapes(onnx_path: Path) -> dict[str, list[int | None]]:
    """Input name -> dims of an ONNX graph (None for a symbolic or unknown dim)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    shapes = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        shapes[inp.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    return shapes


def profiles_for(shapes_at: Callable[[int], Mapping[str, Sequence[int]]], buckets: Iterable[int]) -> list[Profile]:
    """One fixed profile per batch bucket from a function batch -> {input: shape}."""
    out = []
    for b in sorted(set(int(x) for x in buckets)):
        if b < 1:
            raise ValueError(f"batch buckets must be positive integers, got {b}")
        out.append({n: (tuple(s), tuple(s), tuple(s)) for n, s in shapes_at(b).items()})
    return out


def bucket_profiles(onnx_path: Path, buckets: Sequence[int]) -> list[Profile]:
    """Profiles of an ONNX file whose only free dim is the batch; a fully static graph gets its one shape."""
    shapes = onnx_input_shapes(onnx_path)
    for name, dims in shapes.items():
        if any(d is None for d in dims[1:]):
            raise ValueError(f"{onnx_path}: input {name!r} has dynamic non-batch dims {dims}; give the shapes per "
                             "bucket (profiles_for) or export with static spatial shapes")
    if all(dims and dims[0] is not None for dims in shapes.values()):
        return [{n: (tuple(d), tuple(d), tuple(d)) for n, d in shapes.items()}]
    return profiles_for(lambda b: {n: [b if d[0] is None else d[0], *d[1:]] for n, d in shapes.items()}, buckets)


def fp32_layers(layers: Iterable[LayerInfo], marked_outputs: Iterable[str] = (),
                keep_types: Iterable[str] = KEEP_FP32_TYPES) -> list[int]:
    """Indices of the float layers to pin: from an fp32.-marked node, writing a marked tensor, or of a kept type."""
    types = {t.upper() for t in keep_types}
    outs = set(marked_outputs)
    picked = []
    for i, layer in enumerate(layers):
        if not layer.float_outputs or layer.type.upper() in NEVER_PIN_TYPES:
            continue
        if layer.name.startswith(FP32_MARK) or outs.intersection(layer.output_names) or layer.type.upper() in types:
            picked.append(i)
    return picked


def _marked_outputs(onnx_path: Path) -> set[str]:
    """Output tensor names of the prepared graph's FP32-marked nodes (the parser keeps ONNX tensor names)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = set(marked_fp32(model))
    return {o for n in model.graph.node if n.name in names for o in n.output}


def _layer_infos(network, trt) -> list[LayerInfo]:
    """LayerInfo of every layer of a parsed network."""
    floats = (trt.float32, trt.float16)
    infos = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        infos.append(LayerInfo(layer.name, layer.type.name, tuple(o.name for o in outs),
                               bool(outs) and all(o.dtype in floats for o in outs)))
    return infos


def pin_fp32(network, trt, marked_outputs: Iterable[str]) -> list[str]:
    """Set precision and output types of the chosen layers to FP32; returns their names."""
    infos = _layer_infos(network, trt)
    names = []
    for i in fp32_layers(infos, marked_outputs):
        layer = network.get_layer(i)
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        names.append(infos[i].name)
    return names


def build_engine(onnx_path: Path, profiles: list[Profile], precision: str = "fp16", workspace_mb: int = 1024,
                 log: Callable[[str], None] = print) -> bytes:
    """Parse a prepared ONNX file and build a serialized engine (FP16 + FP32 islands, or FP32)."""
    trt = import_trt()
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
    if not profiles:
        raise ValueError("at least one optimisation profile is needed")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT could not parse the graph: {errors} "
                               "(run `lpbf-edge trt lint` on it)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = pin_fp32(network, trt, _marked_outputs(Path(onnx_path)))
        log(f"{Path(onnx_path).name}: {len(pinned)} of {network.num_layers} layers pinned to FP32")
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default on Ampere (Orin): FP32 must mean FP32
    for prof in profiles:
        p = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prof.items():
            p.set_shape(name, lo, opt, hi)
        if config.add_optimization_profile(p) < 0:
            raise EngineBuildError(f"{onnx_path}: TensorRT refused optimisation profile {prof}")
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    return bytes(blob)


__all__ = ["EngineBuildError", "LayerInfo", "TensorRTUnavailable", "bucket_profiles", "build_engine", "fp32_layers",
           "import_trt", "onnx_input_shapes", "pin_fp32", "profiles_for"]
