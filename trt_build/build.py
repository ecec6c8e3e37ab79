"""ONNX -> FP16 TensorRT engine with FP32 islands for normalisation/softmax/reductions and batch-bucket profiles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from trt_build.cache import Profile

# TensorRT layer types whose FP16 versions overflow or lose too much in diffusion U-Nets.
KEEP_FP32_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")
# ONNX node-name fragments (case-insensitive) also kept in FP32: the ops a decomposed GroupNorm /
# LayerNorm exports to (Sub, Pow, Sqrt, Div under ".../norm1/...") and the sinusoidal timestep
# embedding, whose sin/cos of arguments up to ~200 rad are meaningless at FP16 resolution.
KEEP_FP32_NAMES = ("norm", "time_proj", "time_embed", "softmax")


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or a CUDA device) is not present on this machine."""


def import_trt():
    """The tensorrt module, or a clear error saying where this code runs."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not installed: engines are built on the Jetson/CUDA box (pip install 'lpbf-edge[trt]' there)"
        ) from exc
    return trt


def device_facts() -> tuple[str, str]:
    """(TensorRT version, GPU compute capability like '8.7') of this machine."""
    trt = import_trt()
    try:
        import torch

        if not torch.cuda.is_available():
            raise TensorRTUnavailable("no CUDA device visible to torch")
        major, minor = torch.cuda.get_device_capability(0)
    except ImportError:
        import pycuda.autoinit  # noqa: F401  (creates the context)
        import pycuda.driver as cuda

        major, minor = cuda.Device(0).compute_capability()
    return trt.__version__, f"{major}.{minor}"


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


def bucket_profiles(onnx_path: Path, buckets: Sequence[int]) -> list[Profile]:
    """One optimisation profile per batch bucket (min=opt=max); a static graph gets one fixed profile."""
    shapes = onnx_input_shapes(onnx_path)
    for name, dims in shapes.items():
        if any(d is None for d in dims[1:]):
            raise ValueError(f"{onnx_path}: input {name!r} has dynamic non-batch dims {dims}; export with static spatial shapes")
    if all(dims and dims[0] is not None for dims in shapes.values()):
        return [{n: (tuple(d), tuple(d), tuple(d)) for n, d in shapes.items()}]
    if not buckets or any(b < 1 for b in buckets):
        raise ValueError(f"batch buckets must be positive integers, got {list(buckets)}")
    out = []
    for b in sorted(set(buckets)):
        prof = {}
        for name, dims in shapes.items():
            shp = tuple([b if dims[0] is None else dims[0], *dims[1:]]) if dims else ()
            prof[name] = (shp, shp, shp)
        out.append(prof)
    return out


def fp32_layers(layers: Iterable[tuple[str, str]], keep_types: Iterable[str] = KEEP_FP32_TYPES,
                keep_names: Iterable[str] = KEEP_FP32_NAMES) -> list[int]:
    """Indices of (layer type name, layer name) pairs that must stay in FP32."""
    types = {t.upper() for t in keep_types}
    names = [n.lower() for n in keep_names]
    return [i for i, (typ, name) in enumerate(layers) if typ.upper() in types or any(n in name.lower() for n in names)]


def _network_flags(trt) -> int:
    """Network creation flags: explicit batch on TensorRT 8.x, the default since 10."""
    if int(trt.__version__.split(".")[0]) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def build_engine(
    onnx_path: Path,
    profiles: list[Profile],
    fp16: bool = True,
    keep_types: Iterable[str] = KEEP_FP32_TYPES,
    keep_names: Iterable[str] = KEEP_FP32_NAMES,
    workspace_mb: int = 1024,
) -> bytes:
    """Parse an ONNX file and build a serialized engine (FP16 with FP32-pinned layers)."""
    trt = import_trt()
    if int(trt.__version__.split(".")[0]) >= 11:
        raise TensorRTUnavailable("TensorRT >= 11 is strongly typed only: convert the ONNX to FP16 with FP32 islands first")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16:
        if not builder.platform_has_fast_fp16:
            raise TensorRTUnavailable("this GPU has no fast FP16; build with fp16=False")
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        for i in fp32_layers([(layer.type.name, layer.name) for layer in layers], keep_types, keep_names):
            layer = layers[i]
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float32, trt.float16):
                    layer.set_output_type(j, trt.float32)
    for prof in profiles:
        p = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prof.items():
            p.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(p)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    return bytes(blob)


def build_torch2trt(module, example_inputs: Sequence, fp16: bool = True) -> bytes:
    """Optional path: convert a torch module with torch2trt and return the serialized engine."""
    try:
        from torch2trt import torch2trt
    except ImportError as exc:
        raise TensorRTUnavailable("torch2trt is not installed (optional; the ONNX path needs only TensorRT)") from exc
    trt_module = torch2trt(module.eval().cuda(), [x.cuda() for x in example_inputs], fp16_mode=fp16)
    return bytes(trt_module.engine.serialize())
