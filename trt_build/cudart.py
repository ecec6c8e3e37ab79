"""The CUDA runtime API through cuda-python (no torch, no pycuda): device buffers, streams, copies, graph capture.

Every call's cudaError_t is checked. cuda-python 12.x returns `(err, *values)` from each runtime function
(cuda.bindings.runtime; `cuda.cudart` before 12.6); `check` unpacks that and raises CudaError naming the call.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np


class CudaUnavailable(RuntimeError):
    """No CUDA binding or device on this machine; the message says where this code runs."""


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message names the call and the CUDA error."""


_RT: Any = None


def runtime():
    """The cuda-python runtime module (cuda.bindings.runtime, or cuda.cudart for cuda-python < 12.6)."""
    global _RT
    if _RT is None:
        for name in ("cuda.bindings.runtime", "cuda.cudart"):
            try:
                _RT = importlib.import_module(name)
                break
            except ImportError:
                continue
        else:
            raise CudaUnavailable("cuda-python is not installed: the TensorRT backend runs on the Jetson/CUDA box "
                                  "(pip install 'lpbf-edge[jetson]' there)")
    return _RT


def reset_runtime() -> None:
    """Forget the imported runtime module (tests swap the CUDA layer)."""
    global _RT
    _RT = None


def check(result, what: str):
    """Raise CudaError unless result[0] is cudaSuccess; return the single value, a tuple of values, or None."""
    rt = runtime()
    err, values = result[0], tuple(result[1:])
    if err != rt.cudaError_t.cudaSuccess:
        name = getattr(err, "name", str(err))
        try:
            text = rt.cudaGetErrorString(err)[1]
            text = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # the error string is a courtesy; never hide the original failure behind it
            text = ""
        raise CudaError(f"{what} failed: {name} {text}".strip())
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class Stream:
    """A non-blocking CUDA stream; `handle` is the integer TensorRT's execute_async_v3 takes."""

    def __init__(self):
        rt = runtime()
        self._stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self.handle = int(self._stream)

    def synchronize(self) -> None:
        """Wait for all work queued on the stream."""
        check(runtime().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        """Destroy the stream (idempotent)."""
        if self._stream is not None:
            check(runtime().cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None


class DeviceBuffer:
    """nbytes of device memory at integer address `ptr`, with typed host<->device copies on a stream."""

    def __init__(self, nbytes: int):
        if nbytes <= 0:
            raise ValueError(f"device buffer size must be positive, got {nbytes}")
        self.nbytes = int(nbytes)
        self.ptr = int(check(runtime().cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))

    @classmethod
    def like(cls, shape, dtype) -> DeviceBuffer:
        """A buffer big enough for an array of this shape and dtype."""
        return cls(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)

    def _fits(self, nbytes: int, what: str) -> None:
        if nbytes > self.nbytes:
            raise ValueError(f"{what}: {nbytes} bytes do not fit a {self.nbytes}-byte device buffer")

    def upload(self, host: np.ndarray, stream: Stream) -> None:
        """Copy a contiguous host array to the start of the buffer (the caller keeps host alive until sync)."""
        if not host.flags.c_contiguous:
            raise ValueError("host array must be C-contiguous")
        self._fits(host.nbytes, "upload")
        rt = runtime()
        check(rt.cudaMemcpyAsync(self.ptr, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                 stream.handle), "cudaMemcpyAsync(host to device)")

    def download(self, host: np.ndarray, stream: Stream) -> None:
        """Copy the start of the buffer into a contiguous host array (valid after stream.synchronize())."""
        if not host.flags.c_contiguous or not host.flags.writeable:
            raise ValueError("host array must be C-contiguous and writeable")
        self._fits(host.nbytes, "download")
        rt = runtime()
        check(rt.cudaMemcpyAsync(host.ctypes.data, self.ptr, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                 stream.handle), "cudaMemcpyAsync(device to host)")

    def free(self) -> None:
        """Release the memory (idempotent)."""
        if self.ptr:
            check(runtime().cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


def copy_device(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    """Device-to-device copy of nbytes on a stream (legal inside a graph capture)."""
    rt = runtime()
    check(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.handle),
          "cudaMemcpyAsync(device to device)")


class CudaGraph:
    """Work captured from one stream into an executable CUDA graph, replayed with `launch`."""

    def __init__(self, stream: Stream, enqueue) -> None:
        """Capture everything `enqueue()` puts on `stream` (thread-local capture mode), then instantiate it."""
        rt = runtime()
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(rt.cudaStreamBeginCapture(stream.handle, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            rt.cudaStreamEndCapture(stream.handle)  # leave the stream usable; the enqueue error is the one to see
            raise
        graph = check(rt.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        self._graph = graph
        self._exec = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        self.stream = stream

    def launch(self) -> None:
        """Replay the captured work on the capture stream."""
        check(runtime().cudaGraphLaunch(self._exec, self.stream.handle), "cudaGraphLaunch")

    def close(self) -> None:
        """Destroy the executable and the graph (idempotent)."""
        rt = runtime()
        if self._exec is not None:
            check(rt.cudaGraphExecDestroy(self._exec), "cudaGraphExecDestroy")
            check(rt.cudaGraphDestroy(self._graph), "cudaGraphDestroy")
            self._exec = self._graph = None
