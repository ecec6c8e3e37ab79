"""Strict stand-in for the TensorRT 10.3 Python API, tests only (see tests/standins/README.md).

Only the surface trt_build and edge.sr.trt_* use exists; anything else is an AttributeError. The network is
the ONNX graph (one layer per node, named after it); the serialized "engine" is that graph (FP32, or the
onnxconverter-common FP16 conversion with the pinned layers blocked) plus its profiles; contexts run it
with ONNX Runtime on the stand-in CUDA device memory (cuda.bindings.runtime from tests/standins).
"""

from __future__ import annotations

import json
from enum import Enum

from tensorrt._fp16 import fp16_emulation
from tensorrt._graph import LayerType, onnx_layers, parser_errors

__version__ = "10.3.0"
_MAGIC = b"TRT-STANDIN\0"


class StrictViolation(AssertionError):
    """A use of the API that the real library would turn into wrong results or undefined behaviour."""


class DataType(Enum):
    FLOAT = "float32"
    HALF = "float16"
    INT32 = "int32"
    INT64 = "int64"
    INT8 = "int8"
    BOOL = "bool"
    UINT8 = "uint8"


float32, float16, int32, int64, int8, bool, uint8 = (DataType.FLOAT, DataType.HALF, DataType.INT32,  # noqa: A001
                                                     DataType.INT64, DataType.INT8, DataType.BOOL, DataType.UINT8)
_ONNX_TYPES = {1: float32, 10: float16, 6: int32, 7: int64, 3: int8, 9: bool, 2: uint8}


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity: int = 2):
        self.min_severity, self.messages = min_severity, []

    def log(self, severity: int, msg: str) -> None:
        self.messages.append((severity, msg))


class TensorIOMode(Enum):
    NONE, INPUT, OUTPUT = range(3)


class MemoryPoolType(Enum):
    WORKSPACE = 0


class BuilderFlag(Enum):
    FP16 = 0
    OBEY_PRECISION_CONSTRAINTS = 1
    TF32 = 2


class ITensor:
    def __init__(self, name: str, dtype: DataType):
        self.name, self.dtype = name, dtype


class ILayer:
    def __init__(self, name: str, type_: LayerType, inputs: list[ITensor], outputs: list[ITensor]):
        self.name, self.type = name, type_
        self._inputs, self._outputs = inputs, outputs
        self._precision = None
        self._output_types: dict[int, DataType] = {}

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, i: int) -> ITensor:
        return self._inputs[i]

    def get_output(self, i: int) -> ITensor:
        return self._outputs[i]

    @property
    def precision(self) -> DataType:
        return self._precision or float32

    @precision.setter
    def precision(self, dt: DataType) -> None:
        self._precision = dt

    def set_output_type(self, i: int, dt: DataType) -> None:
        if not 0 <= i < len(self._outputs):
            raise IndexError(f"layer {self.name!r} has {len(self._outputs)} outputs")
        self._output_types[i] = dt


class INetworkDefinition:
    def __init__(self):
        self._model, self._layers, self._inputs = None, [], []

    num_layers = property(lambda self: len(self._layers))
    num_inputs = property(lambda self: len(self._inputs))

    def get_layer(self, i: int) -> ILayer:
        return self._layers[i]

    def get_input(self, i: int) -> ITensor:
        return self._inputs[i]


class _ParserError:
    def __init__(self, desc: str):
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        return self._desc


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger):
        self.network, self.logger, self._errors = network, logger, []

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, i: int) -> _ParserError:
        return self._errors[i]

    def parse_from_file(self, path: str) -> bool:
        import onnx

        model = onnx.load(path)
        self._errors = [_ParserError(e) for e in parser_errors(model)]
        if self._errors:
            return False
        layers, inputs = onnx_layers(model, _ONNX_TYPES)
        self.network._model = model
        self.network._layers = [ILayer(n, t, [ITensor(*x) for x in ins], [ITensor(*x) for x in outs])
                                for n, t, ins, outs in layers]
        self.network._inputs = [ITensor(n, dt) for n, dt, _dims in inputs]
        self.network._input_dims = {n: dims for n, _dt, dims in inputs}
        return True


class IOptimizationProfile:
    def __init__(self):
        self._shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, min, opt, max) -> None:  # noqa: A002 (TensorRT's parameter names)
        self._shapes[name] = tuple(tuple(int(d) for d in s) for s in (min, opt, max))


class IBuilderConfig:
    def __init__(self):
        self._flags, self._profiles, self._pools = {BuilderFlag.TF32}, [], {}  # TF32 is on by default

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self._pools[pool] = int(size)

    def set_flag(self, flag: BuilderFlag) -> None:
        self._flags.add(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._flags.discard(flag)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        for lo, opt, hi in profile._shapes.values():
            if not (len(lo) == len(opt) == len(hi)) or any(
                    a > b or b > c for a, b, c in zip(lo, opt, hi, strict=False)):
                return -1
        self._profiles.append(dict(profile._shapes))
        return len(self._profiles) - 1


class Builder:
    def __init__(self, logger: Logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        if flags != 0:
            raise StrictViolation(f"create_network({flags}): explicit batch is implied in TensorRT 10, pass 0")
        return INetworkDefinition()

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _profile_problems(self, network: INetworkDefinition, config: IBuilderConfig) -> list[str]:
        if not config._profiles:
            return ["no optimisation profile"]
        out = []
        for k, prof in enumerate(config._profiles):
            for t in network._inputs:
                if t.name not in prof:
                    out.append(f"profile {k} has no shape for input {t.name!r}")
                    continue
                dims = network._input_dims[t.name]
                for shape in prof[t.name]:
                    if len(shape) != len(dims) or any(d and d != s for d, s in zip(dims, shape, strict=False)):
                        out.append(f"profile {k} shape {shape} of {t.name!r} does not fit the graph's {dims}")
        return out

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
        problems = self._profile_problems(network, config)
        obey = BuilderFlag.OBEY_PRECISION_CONSTRAINTS in config._flags
        pinned = [layer for layer in network._layers if layer._precision == float32]
        for layer in pinned:
            if obey and any(o.dtype not in (float32, float16) for o in layer._outputs):
                problems.append(f"no implementation of layer {layer.name!r} obeys the FP32 precision constraint "
                                "(it has a non-float output)")
        if problems:
            for p in problems:
                self.logger.log(Logger.ERROR, p)
            return None
        fp16 = BuilderFlag.FP16 in config._flags
        if not fp16 and BuilderFlag.TF32 in config._flags:
            self.logger.log(Logger.ERROR, "an FP32 build with TF32 left on would round matmul inputs to 10 bits")
            return None  # stricter than TensorRT (which would build): the recipe promises FP32
        model = fp16_emulation(network._model, [la.name for la in pinned]) if fp16 else network._model
        header = {"version": __version__, "fp16": fp16, "profiles": config._profiles,
                  "pinned": [la.name for la in pinned]}
        blob = json.dumps(header).encode()
        return _MAGIC + len(blob).to_bytes(8, "little") + blob + model.SerializeToString()


class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes):
        from tensorrt._engine import ICudaEngine

        data = bytes(data)
        if not data.startswith(_MAGIC):
            self.logger.log(Logger.ERROR, "not a serialized engine")
            return None
        n = int.from_bytes(data[len(_MAGIC):len(_MAGIC) + 8], "little")
        header = json.loads(data[len(_MAGIC) + 8:len(_MAGIC) + 8 + n])
        if header["version"] != __version__:
            self.logger.log(Logger.ERROR, f"engine built by TensorRT {header['version']}")
            return None
        return ICudaEngine(header, data[len(_MAGIC) + 8 + n:])
