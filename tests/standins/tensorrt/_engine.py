"""The stand-in engine and execution context: ONNX Runtime over stand-in device memory, with TensorRT's rules."""

from __future__ import annotations

import numpy as np

ALIGN = 256


def _np(dt) -> np.dtype:
    return np.dtype(dt.value)


def _cuda():
    """The stand-in CUDA runtime (the real one has no hooks for a fake engine)."""
    import cuda.bindings.runtime as rt

    if not hasattr(rt, "submit"):
        raise RuntimeError("the TensorRT stand-in needs the CUDA stand-in (tests/standins/cuda)")
    return rt


class ICudaEngine:
    def __init__(self, header: dict, model_bytes: bytes):
        import onnx
        import onnxruntime as ort

        import tensorrt as trt

        self._header, self._trt = header, trt
        model = onnx.load_from_string(model_bytes)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        self._session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        inits = {i.name for i in model.graph.initializer}
        self._io = [(v.name, trt.TensorIOMode.INPUT, trt._ONNX_TYPES[v.type.tensor_type.elem_type])
                    for v in model.graph.input if v.name not in inits]
        self._io += [(v.name, trt.TensorIOMode.OUTPUT, trt._ONNX_TYPES[v.type.tensor_type.elem_type])
                     for v in model.graph.output]
        self._model = model
        self._owners: dict[int, object] = {}  # profile index -> the context holding it
        self._out_shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}

    num_io_tensors = property(lambda self: len(self._io))
    num_optimization_profiles = property(lambda self: len(self._header["profiles"]))

    def get_tensor_name(self, i: int) -> str:
        return self._io[i][0]

    def _entry(self, name: str):
        for entry in self._io:
            if entry[0] == name:
                return entry
        raise KeyError(f"no I/O tensor {name!r}")

    def get_tensor_mode(self, name: str):
        return self._entry(name)[1]

    def get_tensor_dtype(self, name: str):
        return self._entry(name)[2]

    def get_tensor_profile_shape(self, name: str, index: int):
        if self.get_tensor_mode(name) != self._trt.TensorIOMode.INPUT:
            raise ValueError(f"{name!r} is not an input")
        return [tuple(s) for s in self._header["profiles"][index][name]]

    def create_execution_context(self):
        return IExecutionContext(self)

    def output_shapes(self, inputs: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Output shapes for these input shapes (ONNX shape inference on a static copy, cached)."""
        key = tuple(sorted(inputs.items()))
        if key not in self._out_shapes:
            import onnx
            from onnx import shape_inference

            m = onnx.ModelProto()
            m.CopyFrom(self._model)
            for v in m.graph.input:
                if v.name in inputs:
                    for d, size in zip(v.type.tensor_type.shape.dim, inputs[v.name], strict=False):
                        d.Clear()
                        d.dim_value = size
            for v in m.graph.output:
                for d in v.type.tensor_type.shape.dim:
                    d.Clear()
            out = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True).graph.output
            self._out_shapes[key] = {v.name: tuple(d.dim_value if d.HasField("dim_value") else -1
                                                   for d in v.type.tensor_type.shape.dim) for v in out}
        return self._out_shapes[key]


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self._engine = engine
        self._profile: int | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._warm = False  # an eager enqueue happened since the last profile/shape change
        self._captured: dict[str, int] | None = None  # addresses of the captured enqueues
        self.enqueues = 0

    def _strict(self, msg: str):
        from tensorrt import StrictViolation

        raise StrictViolation(msg)

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        cuda = _cuda()
        if not 0 <= index < self._engine.num_optimization_profiles or cuda._stream(stream) is False:
            return False
        owner = self._engine._owners.get(index)
        if owner is not None and owner is not self:
            return False  # another live context holds this profile
        if self._profile is not None:
            self._engine._owners.pop(self._profile, None)
        self._engine._owners[index] = self
        self._profile, self._shapes, self._warm = index, {}, False
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        if self._profile is None:
            self._strict(f"set_input_shape({name!r}) before set_optimization_profile_async")
        try:
            lo, _opt, hi = self._engine.get_tensor_profile_shape(name, self._profile)
        except (KeyError, ValueError):
            return False
        shape = tuple(int(d) for d in shape)
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi, strict=False)):
            return False
        self._shapes[name], self._warm = shape, False
        return True

    def _inputs(self) -> list[str]:
        trt = self._engine._trt
        return [n for n, mode, _ in self._engine._io if mode == trt.TensorIOMode.INPUT]

    def get_tensor_shape(self, name: str):
        inputs = self._inputs()
        if name in inputs:
            return self._shapes.get(name, tuple(-1 for _ in self._engine.get_tensor_profile_shape(name, 0)[0]))
        if any(n not in self._shapes for n in inputs):
            return (-1,)
        return self._engine.output_shapes({n: self._shapes[n] for n in inputs})[name]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        cuda = _cuda()
        try:
            self._engine._entry(name)
        except KeyError:
            return False
        memory = int(memory)
        if memory % ALIGN or not cuda._is_device(memory) or cuda._find(memory, 1) is None:
            return False
        if self._captured is not None and self._captured.get(name) != memory:
            self._strict(f"set_tensor_address({name!r}) moves a tensor of a context whose enqueues are captured in "
                         f"a CUDA graph ({self._captured.get(name, 0):#x} -> {memory:#x})")
        self._addresses[name] = memory
        return True

    def _nbytes(self, name: str) -> int:
        size = _np(self._engine.get_tensor_dtype(name)).itemsize
        return int(np.prod(self.get_tensor_shape(name), dtype=np.int64)) * size

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda, eng = _cuda(), self._engine
        names = [n for n, _, _ in eng._io]
        if self._profile is None or any(n not in self._shapes for n in self._inputs()):
            return False  # TensorRT logs "not all input shapes are specified"
        if any(n not in self._addresses or cuda._find(self._addresses[n], self._nbytes(n)) is None for n in names):
            return False  # an address unset, or a buffer too small for the tensor
        snapshot = dict(self._addresses)
        capturing = cuda.is_capturing(stream_handle)
        if capturing:
            if not self._warm:
                self._strict("execute_async_v3 inside a stream capture with no eager enqueue since the last "
                             "profile/shape change (TensorRT does deferred work on the first enqueue)")
            if self._captured is not None and snapshot != self._captured:
                moved = {n: (f"{self._captured.get(n, 0):#x}", f"{a:#x}") for n, a in snapshot.items()
                         if self._captured.get(n) != a}
                self._strict(f"addresses moved between captured enqueues: {moved}")
            self._captured = snapshot
        shapes = {n: self.get_tensor_shape(n) for n in names}
        err = cuda.submit(stream_handle, lambda: self._infer(snapshot, shapes), "execute_async_v3")
        if err != cuda.cudaError_t.cudaSuccess:
            return False
        self.enqueues += 1
        if not capturing:
            self._warm = True
        return True

    def _infer(self, addresses: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> None:
        """Run the graph on device memory (at enqueue time, or at graph replay with the captured addresses)."""
        cuda, eng = _cuda(), self._engine
        trt = eng._trt
        feeds = {}
        for name, mode, dt in eng._io:
            if mode == trt.TensorIOMode.INPUT:
                nbytes = int(np.prod(shapes[name], dtype=np.int64)) * _np(dt).itemsize
                feeds[name] = cuda.device_view(addresses[name], nbytes).view(_np(dt)).reshape(shapes[name]).copy()
        results = eng._session.run(None, feeds)
        outputs = [n for n, mode, _ in eng._io if mode == trt.TensorIOMode.OUTPUT]
        for name, value in zip(outputs, results, strict=False):
            value = np.ascontiguousarray(value, _np(eng.get_tensor_dtype(name)))
            assert value.shape == shapes[name], f"{name}: ran to {value.shape}, context promised {shapes[name]}"
            cuda.device_view(addresses[name], value.nbytes)[:] = value.reshape(-1).view(np.uint8)
