"""Strict stand-in for cuda-python's runtime API (cuda.bindings.runtime), tests only (see tests/standins/README.md).

Functions return `(cudaError_t, *values)` like cuda-python. Device memory is numpy arrays at fake addresses
above the host address space; work on a stream runs at once unless the stream is capturing, in which case it
is recorded and replayed by cudaGraphLaunch.
"""

from __future__ import annotations

import ctypes
import threading
from enum import IntEnum

import numpy as np

BASE = 1 << 48  # above every x86-64/aarch64 user-space address: a host pointer can never pass for a device one
ALIGN = 256


class cudaError_t(IntEnum):  # noqa: N801 (cuda-python's name)
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevicePointer = 17
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalState = 401
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureWrongThread = 908


class cudaMemcpyKind(IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


cudaStreamNonBlocking = 1


class _Handle:
    """cudaStream_t / cudaGraph_t / cudaGraphExec_t: an opaque handle that converts to int."""

    def __init__(self, value: int = 0):
        self._value = int(value)

    def __int__(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._value:#x}>"


class cudaStream_t(_Handle):  # noqa: N801
    pass


class cudaGraph_t(_Handle):  # noqa: N801
    pass


class cudaGraphExec_t(_Handle):  # noqa: N801
    pass


class cudaDeviceProp:  # noqa: N801
    """The fields trt_build.device reads."""

    def __init__(self):
        self.name = b"Stand-in Orin (ONNX Runtime)\0\0\0"
        self.major, self.minor = 8, 7


class _Stream:
    def __init__(self):
        self.capturing = False
        self.invalidated = False
        self.ops: list = []
        self.thread = None


class _State:
    def __init__(self):
        self.heap: dict[int, np.ndarray] = {}
        self.next = BASE
        self.streams: dict[int, _Stream] = {}
        self.graphs: dict[int, list] = {}
        self.execs: dict[int, list] = {}
        self.counter = 1
        self.stats = {"launches": 0, "graph_ops": 0, "eager_ops": 0}


STATE = _State()


def _reset() -> None:
    """Forget every allocation, stream and graph (a test's fresh device)."""
    global STATE
    STATE = _State()


def _find(ptr: int, nbytes: int):
    """(array, offset) of the allocation holding [ptr, ptr + nbytes), or None."""
    for base, arr in STATE.heap.items():
        if base <= ptr and ptr + nbytes <= base + arr.nbytes:
            return arr, ptr - base
    return None


def device_view(ptr: int, nbytes: int) -> np.ndarray:
    """uint8 view of device memory (AssertionError when the range is not inside one allocation)."""
    hit = _find(int(ptr), int(nbytes))
    assert hit is not None, f"device range {int(ptr):#x}+{nbytes} is not inside one cudaMalloc allocation"
    arr, off = hit
    return arr[off:off + nbytes]


def _is_device(ptr: int) -> bool:
    return int(ptr) >= BASE


def _stream(handle):
    """The _Stream of a handle (None for the legacy default stream 0)."""
    h = int(handle) if handle is not None else 0
    if h == 0:
        return None
    return STATE.streams.get(h, False)


def submit(handle, op, label: str = "op") -> cudaError_t:
    """Run `op()` now, or record it when the stream is capturing (used by the TensorRT stand-in's enqueue)."""
    st = _stream(handle)
    if st is False:
        return cudaError_t.cudaErrorInvalidResourceHandle
    if st is not None and st.capturing:
        st.ops.append((label, op))
        return cudaError_t.cudaSuccess
    STATE.stats["eager_ops"] += 1
    op()
    return cudaError_t.cudaSuccess


def is_capturing(handle) -> bool:
    """True when the stream is inside a capture."""
    st = _stream(handle)
    return bool(st) and st.capturing


def cudaGetErrorString(error):  # noqa: N802
    return cudaError_t.cudaSuccess, cudaError_t(error).name.encode()


def cudaGetDeviceProperties(device: int):  # noqa: N802
    if int(device) != 0:
        return cudaError_t.cudaErrorInvalidValue, None
    return cudaError_t.cudaSuccess, cudaDeviceProp()


def cudaRuntimeGetVersion():  # noqa: N802
    return cudaError_t.cudaSuccess, 12060


def cudaMalloc(size: int):  # noqa: N802
    if size <= 0:
        return cudaError_t.cudaErrorInvalidValue, 0
    if any(s.capturing for s in STATE.streams.values()):
        return cudaError_t.cudaErrorStreamCaptureUnsupported, 0
    ptr = STATE.next
    STATE.heap[ptr] = np.full(int(size), 0xCD, np.uint8)  # not zeroed, like real device memory
    STATE.next = ptr + (int(size) + ALIGN - 1) // ALIGN * ALIGN + 4 * ALIGN
    return cudaError_t.cudaSuccess, ptr


def cudaFree(ptr):  # noqa: N802
    if any(s.capturing for s in STATE.streams.values()):
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    if STATE.heap.pop(int(ptr), None) is None:
        return (cudaError_t.cudaErrorInvalidDevicePointer,)
    return (cudaError_t.cudaSuccess,)


def cudaStreamCreateWithFlags(flags: int):  # noqa: N802
    STATE.counter += 1
    handle = 0x5000 + STATE.counter
    STATE.streams[handle] = _Stream()
    return cudaError_t.cudaSuccess, cudaStream_t(handle)


def cudaStreamDestroy(stream):  # noqa: N802
    st = _stream(stream)
    if not st or st.capturing:
        return (cudaError_t.cudaErrorInvalidResourceHandle if not st else cudaError_t.cudaErrorIllegalState,)
    del STATE.streams[int(stream)]
    return (cudaError_t.cudaSuccess,)


def cudaStreamSynchronize(stream):  # noqa: N802
    st = _stream(stream)
    if st is False:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    if st is not None and st.capturing:
        st.invalidated = True
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    return (cudaError_t.cudaSuccess,)


def _copy_op(dst: int, src: int, count: int, kind: cudaMemcpyKind):
    """The memcpy as a closure after checking the pointers against the kind; (error, op)."""
    dev_dst, dev_src = _is_device(dst), _is_device(src)
    want = {cudaMemcpyKind.cudaMemcpyHostToDevice: (True, False), cudaMemcpyKind.cudaMemcpyDeviceToHost: (False, True),
            cudaMemcpyKind.cudaMemcpyDeviceToDevice: (True, True)}.get(kind)
    if want is None or (dev_dst, dev_src) != want:
        return cudaError_t.cudaErrorInvalidValue, None
    if (dev_dst and _find(dst, count) is None) or (dev_src and _find(src, count) is None):
        return cudaError_t.cudaErrorInvalidValue, None

    def op():
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            device_view(dst, count)[:] = np.ctypeslib.as_array((ctypes.c_uint8 * count).from_address(src))
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            ctypes.memmove(dst, device_view(src, count).ctypes.data, count)
        else:
            device_view(dst, count)[:] = device_view(src, count).copy()

    return cudaError_t.cudaSuccess, op


def cudaMemcpyAsync(dst, src, count: int, kind, stream):  # noqa: N802
    st = _stream(stream)
    if st is False:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    if st is not None and st.capturing and kind != cudaMemcpyKind.cudaMemcpyDeviceToDevice:
        st.invalidated = True  # pageable host memory cannot be captured
        return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    err, op = _copy_op(int(dst), int(src), int(count), cudaMemcpyKind(kind))
    if err != cudaError_t.cudaSuccess:
        return (err,)
    return (submit(stream, op, f"memcpy {cudaMemcpyKind(kind).name} {count}"),)


def cudaStreamBeginCapture(stream, mode):  # noqa: N802
    st = _stream(stream)
    if not st:
        legacy = st is None  # the legacy default stream cannot be captured
        err = cudaError_t.cudaErrorStreamCaptureUnsupported if legacy else cudaError_t.cudaErrorInvalidResourceHandle
        return (err,)
    if st.capturing:
        return (cudaError_t.cudaErrorIllegalState,)
    st.capturing, st.invalidated, st.ops, st.thread = True, False, [], threading.get_ident()
    return (cudaError_t.cudaSuccess,)


def cudaStreamEndCapture(stream):  # noqa: N802
    st = _stream(stream)
    if not st or not st.capturing:
        return cudaError_t.cudaErrorIllegalState, cudaGraph_t(0)
    if st.thread != threading.get_ident():
        return cudaError_t.cudaErrorStreamCaptureWrongThread, cudaGraph_t(0)
    st.capturing = False
    if st.invalidated:
        return cudaError_t.cudaErrorStreamCaptureInvalidated, cudaGraph_t(0)
    STATE.counter += 1
    handle = 0x6000 + STATE.counter
    STATE.graphs[handle] = list(st.ops)
    return cudaError_t.cudaSuccess, cudaGraph_t(handle)


def cudaGraphInstantiate(graph, flags: int):  # noqa: N802
    ops = STATE.graphs.get(int(graph))
    if ops is None:
        return cudaError_t.cudaErrorInvalidResourceHandle, cudaGraphExec_t(0)
    STATE.counter += 1
    handle = 0x7000 + STATE.counter
    STATE.execs[handle] = list(ops)
    return cudaError_t.cudaSuccess, cudaGraphExec_t(handle)


def cudaGraphLaunch(graph_exec, stream):  # noqa: N802
    ops = STATE.execs.get(int(graph_exec))
    st = _stream(stream)
    if ops is None or st is False:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)

    def replay():
        STATE.stats["launches"] += 1
        for _label, op in ops:
            STATE.stats["graph_ops"] += 1
            op()

    return (submit(stream, replay, "graph launch"),)


def cudaGraphExecDestroy(graph_exec):  # noqa: N802
    return (cudaError_t.cudaSuccess if STATE.execs.pop(int(graph_exec), None) is not None
            else cudaError_t.cudaErrorInvalidResourceHandle,)


def cudaGraphDestroy(graph):  # noqa: N802
    return (cudaError_t.cudaSuccess if STATE.graphs.pop(int(graph), None) is not None
            else cudaError_t.cudaErrorInvalidResourceHandle,)
