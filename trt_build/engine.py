"""A deserialized TensorRT 10 engine with one execution context per optimisation profile and checked setters.

Each profile gets its own context (created on first use), so no two contexts of one engine ever share a
profile. Every bool a setter returns is checked: a refused profile, a shape outside the profile or a refused
address raises TrtCallFailed naming the tensor, never a silent garbage run. A caller that captures a CUDA
graph (edge.sr.trt_loop) deserializes its own TrtEngine so that nobody else rebinds its addresses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trt_build.cudart import DeviceBuffer, Stream
from trt_build.device import import_trt


class TrtCallFailed(RuntimeError):
    """A TensorRT setter or enqueue returned False; the message names the call and the tensor."""


def numpy_dtypes(trt) -> dict:
    """TensorRT DataType -> numpy dtype, for the types these graphs use."""
    table = {trt.float32: np.float32, trt.float16: np.float16, trt.int32: np.int32, trt.int8: np.int8,
             trt.bool: np.bool_}
    if hasattr(trt, "int64"):
        table[trt.int64] = np.int64
    return table


class TrtEngine:
    """One engine file: I/O names and dtypes, its batch buckets, contexts per profile, run-once helper."""

    def __init__(self, engine_path: Path | str):
        trt = import_trt()
        self.trt, self.path = trt, Path(engine_path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise TrtCallFailed(f"{self.path}: TensorRT could not deserialize the engine (another TensorRT version "
                                "or device built it?); rebuild with `lpbf-edge trt build`")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_in = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_in[n]]
        self.outputs = [n for n in names if not is_in[n]]
        self._np = numpy_dtypes(trt)
        self._contexts: dict[int, object] = {}
        self._shapes: dict[int, dict[str, tuple[int, ...]]] = {}
        self._run_buffers: dict[tuple[str, int], DeviceBuffer] = {}
        self._stream: Stream | None = None

    def dtype(self, name: str) -> np.dtype:
        """numpy dtype of an I/O tensor."""
        dt = self.engine.get_tensor_dtype(name)
        if dt not in self._np:
            raise TypeError(f"{self.path.name}: tensor {name!r} has TensorRT dtype {dt}, which this runtime does not "
                            "handle")
        return np.dtype(self._np[dt])

    def profile_shapes(self, index: int) -> dict[str, tuple[int, ...]]:
        """Input name -> the fixed shape of profile `index` (built with min = opt = max)."""
        out = {}
        for name in self.inputs:
            lo, _opt, hi = (tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(name, index))
            if lo != hi:
                raise ValueError(f"{self.path.name}: profile {index} of {name!r} spans {lo}..{hi}; engines here are "
                                 "built with one fixed shape per batch bucket")
            out[name] = hi
        return out

    @property
    def buckets(self) -> tuple[int, ...]:
        """Batch size of each optimisation profile, in profile order."""
        first = self.inputs[0]
        return tuple(self.profile_shapes(i)[first][0] for i in range(self.engine.num_optimization_profiles))

    def profile_for(self, batch: int) -> int:
        """Index of the profile built for exactly this batch size."""
        try:
            return self.buckets.index(batch)
        except ValueError:
            raise ValueError(f"{self.path.name} has no profile for batch {batch} (buckets {self.buckets}); "
                             "pad to a bucket or rebuild with it") from None

    def context(self, batch: int, stream: Stream):
        """(context, {tensor: shape}) for this batch: the profile's own context, profile and shapes set once."""
        idx = self.profile_for(batch)
        if idx not in self._contexts:
            ctx = self.engine.create_execution_context()
            if ctx is None:
                raise TrtCallFailed(f"{self.path.name}: create_execution_context failed (out of device memory?)")
            if not ctx.set_optimization_profile_async(idx, stream.handle):
                raise TrtCallFailed(f"{self.path.name}: set_optimization_profile_async({idx}) refused")
            for name, shape in self.profile_shapes(idx).items():
                if not ctx.set_input_shape(name, shape):
                    raise TrtCallFailed(f"{self.path.name}: set_input_shape({name!r}, {shape}) refused by "
                                        f"profile {idx}")
            shapes = {n: tuple(int(d) for d in ctx.get_tensor_shape(n)) for n in self.inputs + self.outputs}
            bad = {n: s for n, s in shapes.items() if any(d < 0 for d in s)}
            if bad:
                raise TrtCallFailed(f"{self.path.name}: shapes still unknown after setting the inputs: {bad}")
            self._contexts[idx], self._shapes[idx] = ctx, shapes
        return self._contexts[idx], self._shapes[idx]

    def bind(self, ctx, name: str, ptr: int) -> None:
        """Point an I/O tensor of a context at a device address (checked)."""
        if not ctx.set_tensor_address(name, int(ptr)):
            raise TrtCallFailed(f"{self.path.name}: set_tensor_address({name!r}, {int(ptr):#x}) refused")

    def enqueue(self, ctx, stream: Stream) -> None:
        """Enqueue one inference of a context on a stream (checked)."""
        if not ctx.execute_async_v3(stream.handle):
            raise TrtCallFailed(f"{self.path.name}: execute_async_v3 failed (see the TensorRT log)")

    def _buffer(self, name: str, batch: int, shape, dtype) -> DeviceBuffer:
        """Device buffer of run() for one tensor and bucket (allocated once)."""
        key = (name, batch)
        if key not in self._run_buffers:
            self._run_buffers[key] = DeviceBuffer.like(shape, dtype)
        return self._run_buffers[key]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One inference on host arrays whose batch is one of the buckets; returns the outputs in engine order."""
        if set(feeds) != set(self.inputs):
            raise ValueError(f"{self.path.name}: feeds {sorted(feeds)} != engine inputs {self.inputs}")
        if self._stream is None:
            self._stream = Stream()
        stream = self._stream
        batch = int(next(iter(feeds.values())).shape[0])
        ctx, shapes = self.context(batch, stream)
        keep = []
        for name in self.inputs:
            host = np.ascontiguousarray(feeds[name], dtype=self.dtype(name))
            if host.shape != shapes[name]:
                raise ValueError(f"{self.path.name}: input {name!r} has shape {host.shape}, the engine needs "
                                 f"{shapes[name]}")
            buf = self._buffer(name, batch, shapes[name], host.dtype)
            buf.upload(host, stream)
            self.bind(ctx, name, buf.ptr)
            keep.append(host)
        outs = [np.empty(shapes[n], self.dtype(n)) for n in self.outputs]
        for name, host in zip(self.outputs, outs, strict=False):
            self.bind(ctx, name, self._buffer(name, batch, host.shape, host.dtype).ptr)
        self.enqueue(ctx, stream)
        for name, host in zip(self.outputs, outs, strict=False):
            self._run_buffers[(name, batch)].download(host, stream)
        stream.synchronize()
        return outs
