"""TensorRT runtime: engines with named device buffers, and the whole N-step sampler loop in one CUDA graph.

Written against the TensorRT 8.5+/10.x Python API (IExecutionContext.set_input_shape,
set_tensor_address, execute_async_v3) and torch.cuda.CUDAGraph for stream capture. Runs on the
Jetson/CUDA box only; tests are in tests/gpu/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.sr.plan import StepPlan
from edge.sr.runners import PositionalGraphRunner
from trt_build.build import bucket_profiles, build_engine, device_facts, import_trt
from trt_build.cache import EngineCache, EngineKey, sha256_file


def _torch_dtype(trt, torch, dt):
    """torch dtype for a TensorRT tensor dtype."""
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
             trt.bool: torch.bool}
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if dt not in table:
        raise TypeError(f"unsupported TensorRT tensor dtype {dt}")
    return table[dt]


class TrtEngine:
    """One deserialized engine, its execution context, and its optimisation profiles by batch size."""

    def __init__(self, engine_path: Path | str | None = None, _share: TrtEngine | None = None):
        import torch

        trt = import_trt()
        self.trt, self.torch = trt, torch
        if _share is not None:  # same deserialized engine, own execution context
            self.logger, self.runtime, self.engine = _share.logger, _share.runtime, _share.engine
        else:
            self.logger = trt.Logger(trt.Logger.WARNING)
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self.engine is None:
                raise RuntimeError(f"{engine_path}: TensorRT could not deserialize the engine (built by another version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_in = lambda n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT  # noqa: E731
        self.inputs = [n for n in names if is_in(n)]
        self.outputs = [n for n in names if not is_in(n)]

    def fork(self) -> TrtEngine:
        """A second execution context on the same engine (a captured graph keeps its context to itself)."""
        return TrtEngine(_share=self)

    def dtype(self, name: str):
        """torch dtype of an I/O tensor."""
        return _torch_dtype(self.trt, self.torch, self.engine.get_tensor_dtype(name))

    def select(self, batch: int, stream: int) -> dict[str, tuple[int, ...]]:
        """Activate the profile for this batch size, set the input shapes; returns every I/O tensor's shape."""
        for idx in range(self.engine.num_optimization_profiles):
            first = self.inputs[0]
            lo, _, hi = self.engine.get_tensor_profile_shape(first, idx)
            if lo[0] <= batch <= hi[0]:
                break
        else:
            raise ValueError(f"engine has no optimisation profile for batch {batch}; rebuild with that bucket")
        self.context.set_optimization_profile_async(idx, stream)
        for name in self.inputs:
            shape = list(self.engine.get_tensor_profile_shape(name, idx)[2])
            shape[0] = batch
            self.context.set_input_shape(name, shape)
        return {n: tuple(self.context.get_tensor_shape(n)) for n in self.inputs + self.outputs}

    def bind(self, name: str, tensor) -> None:
        """Point an I/O tensor at a contiguous device buffer."""
        if not tensor.is_contiguous():
            raise ValueError(f"{name}: device buffer must be contiguous")
        self.context.set_tensor_address(name, tensor.data_ptr())

    def enqueue(self, stream: int) -> None:
        """Enqueue one inference on a CUDA stream handle."""
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def __call__(self, **feeds: np.ndarray) -> list[np.ndarray]:
        """Convenience: run once on numpy inputs (allocates; use TrtGraphLoop for the sampler loop)."""
        torch = self.torch
        stream = torch.cuda.current_stream()
        batch = next(iter(feeds.values())).shape[0]
        shapes = self.select(batch, stream.cuda_stream)
        keep = []
        for name in self.inputs:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name])).to("cuda", self.dtype(name))
            keep.append(t)
            self.bind(name, t)
        outs = [torch.empty(shapes[n], dtype=self.dtype(n), device="cuda") for n in self.outputs]
        for name, t in zip(self.outputs, outs):
            self.bind(name, t)
        self.enqueue(stream.cuda_stream)
        stream.synchronize()
        return [o.float().cpu().numpy() for o in outs]


class TrtGraphLoop:
    """The whole N-step sampler loop captured once in a CUDA graph and replayed per batch.

    Static device buffers; per step one denoiser enqueue (input t points at row i of a
    preallocated timestep table) plus the fused linear update; noise is drawn up front.
    """

    def __init__(self, denoiser: TrtEngine, plan: StepPlan, batch: int, latent_shape: tuple[int, int, int]):
        import torch

        denoiser = denoiser.fork()
        self.torch, self.engine, self.plan = torch, denoiser, plan
        dev = torch.device("cuda")
        shp = (batch, *latent_shape)
        self.stream = torch.cuda.Stream()
        x_name, t_name, c_name = denoiser.inputs[:3]
        self._t_name = t_name
        self.x = torch.zeros(shp, device=dev)
        self.cond = torch.zeros(shp, device=dev, dtype=denoiser.dtype(c_name))
        self.m = torch.zeros(shp, device=dev, dtype=denoiser.dtype(denoiser.outputs[0]))
        self.x0 = torch.zeros(shp, device=dev)
        self.x0_prev = torch.zeros(shp, device=dev)
        self.noise = torch.zeros((plan.steps, *shp), device=dev)
        self.t = torch.tensor(np.repeat(plan.timesteps[:, None], batch, 1), device=dev, dtype=denoiser.dtype(t_name))
        self.x_in = self.x if denoiser.dtype(x_name) == torch.float32 else torch.zeros_like(self.x, dtype=denoiser.dtype(x_name))
        self._x_name = x_name
        denoiser.select(batch, self.stream.cuda_stream)
        denoiser.bind(x_name, self.x_in)
        denoiser.bind(c_name, self.cond)
        denoiser.bind(denoiser.outputs[0], self.m)
        with torch.cuda.stream(self.stream):
            self._loop()  # eager warm-up: TensorRT finishes deferred work before capture
        self.stream.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=self.stream):
            self._loop()

    def _loop(self) -> None:
        """Enqueue all N steps on the current stream (captured into the graph)."""
        torch = self.torch
        handle = torch.cuda.current_stream().cuda_stream
        for i, (p0, p1, a, b, c, d) in enumerate(self.plan.coefs.tolist()):
            if self.x_in is not self.x:
                self.x_in.copy_(self.x)
            self.engine.bind(self._t_name, self.t[i])
            self.engine.enqueue(handle)
            torch.mul(self.x, p0, out=self.x0)
            self.x0.add_(self.m, alpha=p1)
            self.x.mul_(a).add_(self.x0, alpha=b)
            if c:
                self.x.add_(self.x0_prev, alpha=c)
            if d:
                self.x.add_(self.noise[i], alpha=d)
            self.x0_prev.copy_(self.x0)

    def run(self, x_init: np.ndarray, cond: np.ndarray, noise: np.ndarray | None = None, seed: int | None = None) -> np.ndarray:
        """Copy inputs into the static buffers, replay the graph, return the final latent."""
        torch = self.torch
        with torch.cuda.stream(self.stream):
            self.x.copy_(torch.from_numpy(np.ascontiguousarray(x_init, np.float32)))
            self.cond.copy_(torch.from_numpy(np.ascontiguousarray(cond)))
            self.x0_prev.zero_()
            if noise is not None:
                self.noise.copy_(torch.from_numpy(np.ascontiguousarray(noise, np.float32)))
            elif self.plan.stochastic:
                gen = torch.Generator(device="cuda").manual_seed(0 if seed is None else seed)
                self.noise.normal_(generator=gen)
            self.graph.replay()
            out = self.x.cpu().numpy()
        return out


def engine_for(onnx_path: Path, cache_dir: Path, buckets=(1,), fp16: bool = True, force: bool = False, log=print,
               profiles: list | None = None, name: str | None = None) -> Path:
    """Cached engine for an ONNX file on this device; built (and a stale one refused) when needed."""
    onnx_path = Path(onnx_path)
    trt_version, cc = device_facts()
    profiles = profiles or bucket_profiles(onnx_path, buckets)
    key = EngineKey(name=name or onnx_path.stem, model_sha256=sha256_file(onnx_path), trt_version=trt_version,
                    compute_capability=cc, profiles=profiles, precision="fp16" if fp16 else "fp32")
    return EngineCache(cache_dir).get_or_build(key, lambda: build_engine(onnx_path, profiles, fp16=fp16), log=log, force=force)


def bundle_profiles(bundle, graph: str, buckets) -> list:
    """One static profile per batch bucket at the bundle's LR tile size (the ONNX graphs are dynamic)."""
    from edge.sr.export import bucket_shapes

    out = []
    for b in sorted(set(buckets)):
        shapes = bucket_shapes(graph, b, bundle.lr_patch, bundle.scale, bundle.latent_channels)
        out.append({n: (tuple(s), tuple(s), tuple(s)) for n, s in shapes.items()})
    return out


class TrtRunner(PositionalGraphRunner):
    """The SR runner protocol (encode_lr / encode_hr / denoise / decode) over cached FP16 engines of a bundle."""

    name = "tensorrt"
    GRAPHS = ("lr_encoder", "hr_encoder", "denoiser", "hr_decoder")

    def __init__(self, bundle, cache_dir: Path | str | None = None, buckets=(1, 4, 8), fp16: bool = True, log=print):
        self.bundle, self.buckets = bundle, tuple(sorted(set(buckets)))
        cache = Path(cache_dir) if cache_dir else Path(bundle.path) / "engines"
        self.engines = {
            g: TrtEngine(engine_for(bundle.graph(g), cache, fp16=fp16, log=log, profiles=bundle_profiles(bundle, g, self.buckets),
                                    name=f"{bundle.model_id}.{g}"))
            for g in self.graphs_of(bundle)
        }

    @classmethod
    def graphs_of(cls, bundle) -> tuple[str, ...]:
        """The graphs that get engines: the four required ones plus the sample decoder when the bundle ships it."""
        return (*cls.GRAPHS, *(("hr_decoder_sample",) if bundle.has_graph("hr_decoder_sample") else ()))

    @classmethod
    def from_bundle(cls, bundle, **options) -> TrtRunner:
        """Open (building on first use) the engines of a verified bundle."""
        return cls(bundle, **options)

    def _run(self, graph: str, *arrays: np.ndarray) -> np.ndarray:
        """One call, the batch padded up to the next bucket."""
        n = arrays[0].shape[0]
        b = next((k for k in self.buckets if k >= n), None)
        if b is None:
            return np.concatenate([self._run(graph, *(a[i:i + self.buckets[-1]] for a in arrays))
                                   for i in range(0, n, self.buckets[-1])])
        eng = self.engines[graph]
        feeds = {}
        for name, a in zip(eng.inputs, arrays):
            a = np.ascontiguousarray(a, np.float32)
            if b > n:
                a = np.concatenate([a, np.repeat(a[-1:], b - n, axis=0)])
            feeds[name] = a
        return eng(**feeds)[0][:n]

    def graph_loop(self, plan: StepPlan, batch: int) -> TrtGraphLoop:
        """The whole sampler loop for this plan and batch bucket in one CUDA graph."""
        if batch not in self.buckets:
            raise ValueError(f"batch {batch} is not one of the engine buckets {self.buckets}")
        c, h = self.bundle.latent_channels, self.bundle.lr_patch
        return TrtGraphLoop(self.engines["denoiser"], plan, batch, (c, h, h))
