"""The Jetson runtime: the SR runner protocol over a bundle's prebuilt TensorRT engines, and the CUDA-graph sampler.

No torch: TensorRT 10 (JetPack's), cuda-python's runtime API and numpy. Engines are opened, never built (they
are built by `lpbf-edge trt build`, which Ansible runs at deploy, into trt_build.recipe.engine_dir(bundle)).
SuperResolver with backend "tensorrt" takes `graph_sampler()` and runs every sampler as one captured CUDA
graph per batch bucket (edge.sr.trt_loop) with the same coefficient plan as the CPU fused loop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.sr.fused import LoopSampler
from edge.sr.plan import StepPlan
from edge.sr.runners import BackendUnavailable, PositionalGraphRunner
from edge.sr.trt_engines import EnginesMissing, open_engines, spec_for
from edge.sr.trt_loop import TrtGraphLoop
from trt_build.engine import TrtEngine

ENGINE_GRAPHS = ("lr_encoder", "hr_encoder", "denoiser", "hr_decoder")
OPTIONAL_ENGINE_GRAPHS = ("hr_decoder_sample", "regression")
DENOISE_COEF = np.array([0, 1, 0, 0, 0, 0], np.float32)  # x0 = m: a fused step that returns the model output


def _pad_rows(a: np.ndarray, rows: int, axis: int = 0) -> np.ndarray:
    """a with its last row along `axis` repeated up to `rows` rows."""
    n = a.shape[axis]
    if n == rows:
        return a
    last = np.take(a, [n - 1], axis=axis)
    return np.concatenate([a, np.repeat(last, rows - n, axis=axis)], axis=axis)


def _chunks(n: int, buckets: tuple[int, ...]):
    """(start, stop, bucket) pieces covering n rows, each padded up to the smallest bucket that holds it."""
    biggest, start = buckets[-1], 0
    while start < n:
        stop = min(n, start + biggest)
        yield start, stop, next(b for b in buckets if b >= stop - start)
        start = stop


class TrtRunner(PositionalGraphRunner):
    """encode_lr / encode_hr / denoise / decode / estimate over the bundle's engines (batch padded to buckets)."""

    name = "tensorrt"

    def __init__(self, bundle, engine_dir: Path | str | None = None, precision: str = "fp16"):
        self.bundle, self.precision = bundle, precision
        graphs = ENGINE_GRAPHS + tuple(g for g in OPTIONAL_ENGINE_GRAPHS if bundle.has_graph(g))
        self.specs = {g: spec_for(bundle, g) for g in graphs}
        try:
            folder = None if engine_dir is None else Path(engine_dir)
            self.paths = open_engines(bundle, list(self.specs.values()), folder, precision)
        except EnginesMissing as exc:
            raise BackendUnavailable(str(exc)) from exc
        self.engines = {g: TrtEngine(self.paths[s.name][0]) for g, s in self.specs.items() if g != "denoiser"}
        self._denoiser: TrtEngine | None = None  # opened on the first denoise(); the sampler has its own copies
        self._sampler: TrtGraphSampler | None = None

    @classmethod
    def from_bundle(cls, bundle, **options) -> TrtRunner:
        """Open the prebuilt engines of a verified bundle (BackendUnavailable says how to build missing ones)."""
        return cls(bundle, **options)

    def buckets(self, graph: str) -> tuple[int, ...]:
        """Batch buckets the engine of a graph was built for."""
        return tuple(self.paths[self.specs[graph].name][1])

    def _run(self, graph: str, *arrays: np.ndarray) -> np.ndarray:
        """One call in bucket-sized pieces, each padded up to its bucket."""
        eng, buckets = self.engines[graph], self.buckets(graph)
        n, parts = arrays[0].shape[0], []
        for start, stop, b in _chunks(n, buckets):
            feeds = {name: _pad_rows(np.ascontiguousarray(a[start:stop], np.float32), b)
                     for name, a in zip(eng.inputs, arrays, strict=False)}
            parts.append(eng.run(feeds)[0][: stop - start])
        return np.concatenate(parts)

    def denoise(self, x: np.ndarray, t: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """Denoiser output for (x, t, cond): the fused step engine with x0 = m (coefficients 0, 1, 0, 0, 0, 0)."""
        if self._denoiser is None:
            self._denoiser = TrtEngine(self.paths[self.specs["denoiser"].name][0])
        eng, out_index = self._denoiser, self._denoiser.outputs.index("x0")
        n, parts = x.shape[0], []
        for start, stop, b in _chunks(n, self.buckets("denoiser")):
            xs = _pad_rows(np.ascontiguousarray(x[start:stop], np.float32), b)
            feeds = {"x": xs, "t": _pad_rows(np.asarray(t[start:stop], np.float32), b),
                     "cond": _pad_rows(np.ascontiguousarray(cond[start:stop], np.float32), b),
                     "coef": DENOISE_COEF, "noise": np.zeros_like(xs), "x0_prev": np.zeros_like(xs)}
            parts.append(eng.run(feeds)[out_index][: stop - start])
        return np.concatenate(parts)

    def estimate(self, cond: np.ndarray) -> np.ndarray:
        """Deterministic HR-latent estimate from the condition (the bundle's regression graph)."""
        if "regression" not in self.engines:
            raise BackendUnavailable(f"{self.bundle.path}: bundle has no regression.onnx; "
                                     "use sampler estimate 'bicubic'")
        return self._run("regression", cond)

    def graph_sampler(self) -> TrtGraphSampler:
        """The SuperResolver's sampler on this backend: every sampler run as one CUDA graph per batch bucket."""
        if self._sampler is None:
            self._sampler = TrtGraphSampler(self.paths[self.specs["denoiser"].name][0], self.buckets("denoiser"))
        return self._sampler


class TrtGraphSampler(LoopSampler):
    """The fused sampler's contract (edge.sr.fused.LoopSampler) run as captured CUDA graphs, one per batch bucket."""

    def __init__(self, engine_path: Path | str, buckets: tuple[int, ...]):
        self.engine_path, self.buckets = Path(engine_path), tuple(sorted(buckets))
        self._graphs: dict[int, TrtGraphLoop] = {}

    def bucket_loop(self, bucket: int) -> TrtGraphLoop:
        """The graph loop of one bucket (its own engine copy and static buffers; created on first use)."""
        if bucket not in self._graphs:
            self._graphs[bucket] = TrtGraphLoop(self.engine_path, bucket)
        return self._graphs[bucket]

    def loop(self, plan: StepPlan, batch: int, latent_shape: tuple[int, ...]) -> BucketedPlanLoop:
        """`plan` over `batch` rows: split into the engine's buckets (the SuperResolver's power-of-two batches
        map onto buckets 1, 2, 4, 8 exactly; larger batches run as several launches of the biggest)."""
        return BucketedPlanLoop(self, plan, int(batch), tuple(latent_shape))


class BucketedPlanLoop:
    """One plan at one batch size on TrtGraphSampler: the rows cut into bucket-sized graph launches."""

    def __init__(self, sampler: TrtGraphSampler, plan: StepPlan, batch: int, latent_shape: tuple[int, ...]):
        self.sampler, self.plan, self.shape = sampler, plan, (batch, *latent_shape)

    def run(self, x_init: np.ndarray, cond: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Sample from x_init (the noisiest latent) given cond; noise [steps, *x] for a stochastic plan."""
        if x_init.shape != self.shape or cond.shape != self.shape:
            raise ValueError(f"expected x_init and cond of shape {self.shape}, got {x_init.shape} and {cond.shape}")
        plan, out = self.plan, np.empty(self.shape, np.float32)
        x_init, cond = np.asarray(x_init, np.float32), np.asarray(cond, np.float32)
        for a, b, bucket in _chunks(self.shape[0], self.sampler.buckets):
            step_noise = None
            if plan.stochastic:
                if noise is None:
                    raise ValueError(f"sampler {plan.sampler} adds noise each step: pass noise of shape "
                                     f"{(plan.steps, *self.shape)}")
                step_noise = _pad_rows(np.asarray(noise[:, a:b], np.float32), bucket, axis=1)
            out[a:b] = self.sampler.bucket_loop(bucket).run(plan, _pad_rows(x_init[a:b], bucket),
                                                            _pad_rows(cond[a:b], bucket), step_noise)[: b - a]
        return out
