"""The whole sampler as one CUDA graph over a fused-step TensorRT engine (no torch: TensorRT + cuda-python + numpy).

A TrtGraphLoop serves one batch bucket. It deserializes its own copy of the fused engine (so no other caller
rebinds its addresses), takes that bucket's execution context, and binds every engine input and output ONCE
to a static device buffer. For each sampler plan (edge.sr.plan.StepPlan) it uploads the timestep and
coefficient tables and captures, on its own stream, N times:

    copy t_table[i] -> t, coef_table[i] -> coef, noise_table[i] -> noise   (device to device)
    execute_async_v3                                         (x, t, cond, coef, noise, x0_prev -> x_prev, x0)
    copy x_prev -> x, x0 -> x0_prev                          (device to device)

so the captured enqueues all see the same addresses and the step's values arrive by copies inside the graph.
One eager run of the same sequence precedes the capture (TensorRT finishes deferred work on its first
enqueue). A run uploads x_start, cond, zeros for x0_prev and, for a stochastic plan, the given noise, replays
the graph and downloads x. Noise always comes from the caller: the SuperResolver's seeded, row-keyed,
antithetic noise, the same numbers the CPU loop uses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.sr.fused import FUSED_INPUTS, FUSED_OUTPUTS
from edge.sr.plan import StepPlan
from trt_build.cudart import CudaGraph, DeviceBuffer, Stream, copy_device
from trt_build.engine import TrtEngine


class _PlanGraph:
    """Device tables of one plan and the CUDA graph captured over them."""

    def __init__(self, plan: StepPlan, batch: int, x_bytes: int, stream: Stream):
        n = plan.steps
        self.plan = plan
        self.t_host = np.ascontiguousarray(np.repeat(plan.timesteps[:, None].astype(np.float32), batch, axis=1))
        self.coef_host = np.ascontiguousarray(plan.coefs, dtype=np.float32)
        self.t_table = DeviceBuffer(self.t_host.nbytes)
        self.coef_table = DeviceBuffer(self.coef_host.nbytes)
        self.noise_table = DeviceBuffer(n * x_bytes) if plan.stochastic else None
        self.t_table.upload(self.t_host, stream)
        self.coef_table.upload(self.coef_host, stream)
        self.graph: CudaGraph | None = None

    def free(self) -> None:
        """Release the graph and the tables."""
        if self.graph is not None:
            self.graph.close()
        for buf in (self.t_table, self.coef_table, self.noise_table):
            if buf is not None:
                buf.free()


class TrtGraphLoop:
    """One batch bucket of a fused-step engine: static buffers bound once, one captured graph per plan."""

    def __init__(self, engine_path: Path | str, batch: int):
        self.engine = TrtEngine(engine_path)  # our own deserialized copy: nobody else binds its contexts
        missing = [n for n in FUSED_INPUTS if n not in self.engine.inputs] + \
                  [n for n in FUSED_OUTPUTS if n not in self.engine.outputs]
        if missing:
            raise ValueError(f"{engine_path}: not a fused sampler step engine (missing {missing}); "
                             "rebuild with `lpbf-edge trt build`")
        self.batch, self.stream = int(batch), Stream()
        self.ctx, self.shapes = self.engine.context(self.batch, self.stream)
        self.x_shape = self.shapes["x"]
        for name in FUSED_INPUTS + FUSED_OUTPUTS:
            if self.engine.dtype(name) != np.float32:
                raise ValueError(f"{engine_path}: tensor {name!r} is {self.engine.dtype(name)}, the loop needs "
                                 "float32 I/O")
        self.buffers = {n: DeviceBuffer.like(self.shapes[n], np.float32) for n in FUSED_INPUTS + FUSED_OUTPUTS}
        for name, buf in self.buffers.items():  # the only set_tensor_address calls this context ever sees
            self.engine.bind(self.ctx, name, buf.ptr)
        self.x_bytes = self.buffers["x"].nbytes
        zeros = np.zeros(self.x_shape, np.float32)
        for name in ("noise", "x0_prev"):  # a deterministic plan multiplies noise by 0: it must not be NaN
            self.buffers[name].upload(zeros, self.stream)
        self.stream.synchronize()
        self._plans: dict[tuple, _PlanGraph] = {}

    def _enqueue_steps(self, pg: _PlanGraph) -> None:
        """Put the whole sampler on the stream (run eagerly once, then captured)."""
        b, s = self.buffers, self.stream
        t_row, coef_row = pg.t_host[0].nbytes, pg.coef_host[0].nbytes
        for i in range(pg.plan.steps):
            copy_device(b["t"].ptr, pg.t_table.ptr + i * t_row, t_row, s)
            copy_device(b["coef"].ptr, pg.coef_table.ptr + i * coef_row, coef_row, s)
            if pg.noise_table is not None:
                copy_device(b["noise"].ptr, pg.noise_table.ptr + i * self.x_bytes, self.x_bytes, s)
            self.engine.enqueue(self.ctx, s)
            copy_device(b["x"].ptr, b["x_prev"].ptr, self.x_bytes, s)
            copy_device(b["x0_prev"].ptr, b["x0"].ptr, self.x_bytes, s)

    def _plan_graph(self, plan: StepPlan) -> _PlanGraph:
        """The captured graph of a plan (tables uploaded, eager warm-up, capture) on first use."""
        key = (tuple(int(t) for t in plan.timesteps), plan.coefs.tobytes())
        pg = self._plans.get(key)
        if pg is None:
            pg = _PlanGraph(plan, self.batch, self.x_bytes, self.stream)
            self._enqueue_steps(pg)  # eager warm-up before capture
            self.stream.synchronize()
            pg.graph = CudaGraph(self.stream, lambda: self._enqueue_steps(pg))
            self._plans[key] = pg
        return pg

    def run(self, plan: StepPlan, x_start: np.ndarray, cond: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Sample from x_start (the noisiest latent) given cond; noise [N, *x] for a stochastic plan. Returns x_0."""
        shp = self.x_shape
        if x_start.shape != shp or cond.shape != shp:
            raise ValueError(f"expected x_start and cond of shape {shp}, got {x_start.shape} and {cond.shape}")
        if plan.stochastic and (noise is None or noise.shape != (plan.steps, *shp)):
            got = None if noise is None else noise.shape
            raise ValueError(f"sampler {plan.sampler} adds noise each step: pass noise of shape {(plan.steps, *shp)}, "
                             f"got {got}")
        pg = self._plan_graph(plan)
        host = [np.ascontiguousarray(a, np.float32) for a in (x_start, cond, np.zeros(shp, np.float32))]
        for name, arr in zip(("x", "cond", "x0_prev"), host, strict=False):
            self.buffers[name].upload(arr, self.stream)
        if pg.noise_table is not None:
            host.append(np.ascontiguousarray(noise, np.float32))
            pg.noise_table.upload(host[-1], self.stream)
        assert pg.graph is not None, "captured above"
        pg.graph.launch()
        out = np.empty(shp, np.float32)
        self.buffers["x"].download(out, self.stream)
        self.stream.synchronize()
        return out

    def close(self) -> None:
        """Free graphs, tables, buffers and the stream."""
        for pg in self._plans.values():
            pg.free()
        self._plans.clear()
        for buf in self.buffers.values():
            buf.free()
        self.stream.close()
