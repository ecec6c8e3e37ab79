"""Inference backends for the four bundle graphs: ONNX Runtime (CPU reference), OpenVINO, torch (eager reference).

Every runner exposes encode_lr, encode_hr, denoise(x, t, cond) and decode on float32 numpy NCHW arrays
(images in [-1, 1], latents already scaled). Heavy libraries are imported inside the classes.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.sr.bundle import OPTIONAL_GRAPHS, Bundle, BundleError

BACKENDS = ("ort", "openvino", "torch", "tensorrt")


class BackendUnavailable(RuntimeError):
    """The requested inference backend cannot run on this machine; the message says why and what to use."""


class Runner(Protocol):
    """What the samplers and the SuperResolver need from a backend."""

    name: str

    def encode_lr(self, lr: np.ndarray) -> np.ndarray: ...  # [B,1,h,w] -> [B,C,h,w]
    def encode_hr(self, hr: np.ndarray) -> np.ndarray: ...  # [B,1,sh,sw] -> [B,C,h,w]
    def denoise(self, x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray: ...
    def decode(self, z: np.ndarray, graph: str = "hr_decoder") -> np.ndarray: ...  # [B,C,h,w] -> [B,1,sh,sw]


def physical_cores() -> int:
    """Physical cores available to this process (distinct core ids among the allowed CPUs)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for c in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{c}/topology")
        try:
            cores.add((base / "physical_package_id").read_text().strip() + ":" + (base / "core_id").read_text().strip())
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def inference_threads(threads: int | None = None) -> int:
    """The runtime's thread policy, in one place: intra-op threads = the physical cores this process may use.

    Hyper-threads share a core's vector units, so more threads than cores only adds contention; ONNX Runtime and
    OpenVINO run with spinning off and one stream. The torch runner keeps the process's torch setting unless given.
    """
    return int(threads) if threads else physical_cores()


def ort_session_options(threads: int | None = None) -> Any:
    """ONNX Runtime session options with the runtime's thread policy: intra-op threads per inference_threads, one
    inter-op thread, sequential execution, all graph optimisations, no spinning."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = inference_threads(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


def ort_session(path: Path | str | bytes, threads: int | None = None, options: Any = None) -> Any:
    """An ONNX Runtime CPU session of an ONNX file (or serialized model) with the runtime's settings."""
    import onnxruntime as ort

    src = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(src, options or ort_session_options(threads), providers=["CPUExecutionProvider"])


def _f32(a: np.ndarray) -> np.ndarray:
    """Contiguous float32 view/copy for a backend call."""
    return np.ascontiguousarray(a, dtype=np.float32)


class PositionalGraphRunner:
    """The four graph calls over a subclass's `_run(graph, *arrays)` (torch and TensorRT runners)."""

    def _run(self, graph: str, *arrays: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode_lr(self, lr: np.ndarray) -> np.ndarray:
        """LR image [B,1,h,w] in [-1,1] -> scaled condition latent [B,C,h,w]."""
        return self._run("lr_encoder", lr)

    def encode_hr(self, hr: np.ndarray) -> np.ndarray:
        """HR image [B,1,sh,sw] in [-1,1] -> scaled HR latent [B,C,h,w]."""
        return self._run("hr_encoder", hr)

    def denoise(self, x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Denoiser output for (x, t, cond) in the bundle's prediction type."""
        return self._run("denoiser", x, t, cond)

    def decode(self, z: np.ndarray, graph: str = "hr_decoder") -> np.ndarray:
        """Scaled HR latent [B,C,h,w] -> HR image [B,1,sh,sw] in [-1,1] (graph: hr_decoder or hr_decoder_sample)."""
        return self._run(graph, z)


class OrtRunner:
    """ONNX Runtime on the CPU: the exact reference (threads = physical cores, no spinning, preallocated outputs)."""

    name = "ort"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        self.bundle = bundle
        self.threads = inference_threads(threads)
        self.session_options = ort_session_options(self.threads)
        self.sessions = {g: self.open(bundle.graph(g)) for g in _graphs(bundle)}
        self._bind = {g: s.io_binding() for g, s in self.sessions.items()}
        self._out: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
        self.scale = bundle.scale

    def open(self, path: Path) -> Any:
        """An ORT CPU session of any ONNX file with this runner's settings (threads, no spinning)."""
        return ort_session(path, options=self.session_options)

    def _run(self, graph: str, feeds: dict[str, np.ndarray], out_shape: tuple[int, ...]) -> np.ndarray:
        """One call through IOBinding into a preallocated output buffer (reused per graph and shape)."""
        sess, b = self.sessions[graph], self._bind[graph]
        key = (graph, out_shape)
        out = self._out.get(key)
        if out is None:
            out = self._out[key] = np.empty(out_shape, np.float32)
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        for name, arr in feeds.items():
            b.bind_cpu_input(name, arr)
        b.bind_output(sess.get_outputs()[0].name, "cpu", 0, np.float32, out.shape, out.ctypes.data)
        sess.run_with_iobinding(b)
        return out

    def encode_lr(self, lr: np.ndarray) -> np.ndarray:
        """LR image [B,1,h,w] in [-1,1] -> scaled condition latent [B,C,h,w]."""
        lr = _f32(lr)
        return self._run("lr_encoder", {"lr": lr}, (lr.shape[0], self.bundle.latent_channels, *lr.shape[2:])).copy()

    def encode_hr(self, hr: np.ndarray) -> np.ndarray:
        """HR image [B,1,sh,sw] in [-1,1] -> scaled HR latent [B,C,h,w]."""
        hr, s = _f32(hr), self.scale
        return self._run("hr_encoder", {"hr": hr},
                         (hr.shape[0], self.bundle.latent_channels, hr.shape[2] // s, hr.shape[3] // s)).copy()

    def denoise(self, x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Model output for (x, t, cond); the returned buffer is reused by the next call of the same shape."""
        x = _f32(x)
        return self._run("denoiser", {"x": x, "t": _f32(t), "cond": _f32(cond)}, x.shape)

    def decode(self, z: np.ndarray, graph: str = "hr_decoder") -> np.ndarray:
        """Scaled HR latent [B,C,h,w] -> HR image [B,1,sh,sw] in [-1,1] (graph: hr_decoder or hr_decoder_sample)."""
        z, s = _f32(z), self.scale
        return self._run(graph, {"latent": z}, (z.shape[0], 1, z.shape[2] * s, z.shape[3] * s)).copy()

    def estimate(self, cond: np.ndarray) -> np.ndarray:
        """Deterministic HR-latent estimate from the condition (the bundle's optional regression graph)."""
        _need_regression(self.bundle, self.sessions)
        cond = _f32(cond)
        return self._run("regression", {"cond": cond}, cond.shape).copy()


def openvino_bf16_supported() -> bool:
    """True when OpenVINO reports native bf16 on this CPU."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OvGraph:
    """One ONNX graph read by OpenVINO, compiled per static input shape with the runner's settings."""

    def __init__(self, core, path: Path, precision: str, threads: int):
        self.core, self.path, self.precision, self.threads = core, path, precision, threads
        self.model = core.read_model(str(path))

    def input_names(self) -> list[str]:
        """Names of the graph inputs, in order."""
        return [i.get_any_name() for i in self.model.inputs]

    def compile(self, shapes: dict[str, list[int]]):
        """The graph compiled for exactly these input shapes (explicit precision hint, latency, one stream)."""
        model = self.model.clone()
        model.reshape(shapes)
        return self.core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": self.precision,
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        })


class OpenVinoRunner:
    """OpenVINO on the CPU: each graph reshaped to the static shape it is called with, explicit precision hint."""

    name = "openvino"

    def __init__(self, bundle: Bundle, precision: str = "f32", threads: int | None = None):
        import openvino as ov

        if precision not in ("f32", "bf16"):
            raise ValueError(f"OpenVINO precision must be 'f32' or 'bf16', got {precision!r}")
        self.core = ov.Core()
        if precision == "bf16" and "BF16" not in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise BackendUnavailable("this CPU does not report bf16 support to OpenVINO; use precision 'f32'")
        self.bundle, self.precision = bundle, precision
        self.threads = inference_threads(threads)
        self.scale = bundle.scale
        self._graphs = {g: self.open(bundle.graph(g)) for g in _graphs(bundle)}
        self._compiled: dict[tuple, object] = {}

    def open(self, path: Path) -> OvGraph:
        """Any ONNX file as an OvGraph with this runner's precision and threads."""
        return OvGraph(self.core, Path(path), self.precision, self.threads)

    def _request(self, graph: str, feeds: dict[str, np.ndarray]):
        """Infer request of `graph` compiled for exactly these input shapes (compiled once per shape)."""
        key = (graph, tuple((k, v.shape) for k, v in feeds.items()))
        req = self._compiled.get(key)
        if req is None:
            compiled = self._graphs[graph].compile({k: list(v.shape) for k, v in feeds.items()})
            req = self._compiled[key] = compiled.create_infer_request()
        return req

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {k: _f32(v) for k, v in feeds.items()}
        req = self._request(graph, feeds)
        req.infer(feeds)
        return req.get_output_tensor(0).data.copy()

    def encode_lr(self, lr: np.ndarray) -> np.ndarray:
        """LR image [B,1,h,w] in [-1,1] -> scaled condition latent [B,C,h,w]."""
        return self._run("lr_encoder", {"lr": lr})

    def encode_hr(self, hr: np.ndarray) -> np.ndarray:
        """HR image [B,1,sh,sw] in [-1,1] -> scaled HR latent [B,C,h,w]."""
        return self._run("hr_encoder", {"hr": hr})

    def denoise(self, x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Denoiser output for (x, t, cond) in the bundle's prediction type."""
        return self._run("denoiser", {"x": x, "t": t, "cond": cond})

    def decode(self, z: np.ndarray, graph: str = "hr_decoder") -> np.ndarray:
        """Scaled HR latent [B,C,h,w] -> HR image [B,1,sh,sw] in [-1,1] (graph: hr_decoder or hr_decoder_sample)."""
        return self._run(graph, {"latent": z})

    def estimate(self, cond: np.ndarray) -> np.ndarray:
        """Deterministic HR-latent estimate from the condition (the bundle's optional regression graph)."""
        _need_regression(self.bundle, self._graphs)
        return self._run("regression", {"cond": cond})


class TorchRunner(PositionalGraphRunner):
    """torch eager on the CPU: the reference path over the bundle's torch modules."""

    name = "torch"

    def __init__(self, modules: dict, threads: int | None = None):
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        missing = [g for g in ("lr_encoder", "hr_encoder", "denoiser", "hr_decoder") if g not in modules]
        if missing:
            raise BundleError(f"torch runner needs modules {', '.join(missing)}")
        self.modules = {k: (m.eval() if hasattr(m, "eval") else m) for k, m in modules.items()}

    @classmethod
    def from_bundle(cls, bundle: Bundle, threads: int | None = None) -> TorchRunner:
        """Rebuild the torch modules from the bundle's arch + safetensors (via edge.models.bundle_modules)."""
        if importlib.util.find_spec("torch") is None:
            raise BackendUnavailable("--backend torch needs torch, which is not installed here; use --backend ort")
        from edge.sr.torch_modules import load_torch_modules

        return cls(load_torch_modules(bundle), threads)

    def _run(self, graph: str, *arrays: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.modules[graph](*(self.torch.from_numpy(_f32(a)) for a in arrays))
        return out.numpy()

    def estimate(self, cond: np.ndarray) -> np.ndarray:
        """Deterministic HR-latent estimate from the condition (regression module, when the bundle has one)."""
        if "regression" not in self.modules:
            raise BundleError("this model has no regression module; use sampler estimate 'bicubic'")
        return self._run("regression", cond)


def _graphs(bundle: Bundle) -> tuple[str, ...]:
    """The graphs a runner loads: the four required ones, plus the optional ones the bundle has."""
    extra = tuple(g for g in OPTIONAL_GRAPHS if bundle.has_graph(g))
    return ("lr_encoder", "hr_encoder", "denoiser", "hr_decoder", *extra)


def _need_regression(bundle: Bundle, loaded: dict) -> None:
    """Raise a clear BundleError when the bundle has no regression graph."""
    if "regression" not in loaded:
        raise BundleError(f"{bundle.path}: bundle has no regression.onnx; use sampler estimate 'bicubic'")


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT and cuda-python import here, else a sentence saying what is missing."""
    for mod, what in (("tensorrt", "TensorRT (JetPack's python3-libnvinfer)"), ("cuda", "cuda-python")):
        if importlib.util.find_spec(mod) is None:
            return (f"--backend tensorrt needs {what}, which is not installed on this machine; it runs on the "
                    "Jetson/CUDA box. Use --backend ort or --backend openvino here.")
    return None


def make_runner(bundle: Bundle, backend: str = "ort", **options) -> Runner:
    """The runner for `backend` over a verified bundle; unavailable backends raise BackendUnavailable."""
    if backend == "ort":
        return OrtRunner(bundle, **options)
    if backend == "openvino":
        return OpenVinoRunner(bundle, **options)
    if backend == "torch":
        return TorchRunner.from_bundle(bundle, **options)
    if backend == "tensorrt":
        reason = tensorrt_unavailable_reason()
        if reason:
            raise BackendUnavailable(reason)
        from edge.sr.runners_trt import TrtRunner  # TensorRT + cuda-python; imported only here

        return TrtRunner.from_bundle(bundle, **options)
    raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
