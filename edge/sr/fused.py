"""Fused sampler step: one graph computes (x_t, t, cond, coef) -> (x_{t-1}, x0), and its preallocated CPU loops.

The step's update is the coefficient plan of edge.sr.plan (x0 = p0*x_t + p1*m; x_prev = A*x_t + B*x0 + C*x0_prev
+ D*z), appended to the bundle's denoiser ONNX graph by `fuse_onnx`; `FusedOrtLoop` (ONNX Runtime IOBinding) and
`FusedOvLoop` (OpenVINO, shared-memory tensors) run a StepPlan over preallocated ping-pong buffers, one graph call
per step, so the Python loop allocates nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.sr.plan import COEF_NAMES, StepPlan, apply_step, plan_steps  # noqa: F401  (StepPlan/plan_steps re-exported)

FUSED_INPUTS = ("x", "t", "cond", "coef", "noise", "x0_prev")
FUSED_OUTPUTS = ("x_prev", "x0")


# ---------------------------------------------------------------- graph


def fuse_onnx(denoiser_onnx: Path, out: Path) -> Path:
    """Append the sampler update to an exported denoiser ONNX graph (inputs x, t, cond in that order)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(denoiser_onnx))
    g = model.graph
    inits = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 3 or len(g.output) != 1:
        raise ValueError(f"{denoiser_onnx}: expected a denoiser with inputs (x, t, cond) and one output, "
                         f"got inputs {[i.name for i in real_inputs]} outputs {[o.name for o in g.output]}")
    x_in, m_out = real_inputs[0], g.output[0]
    taken = {n for node in g.node for n in (*node.input, *node.output)} | {i.name for i in g.input} | inits
    for name in ("coef", "noise", "x0_prev", "x_prev", "x0"):
        if name in taken:
            raise ValueError(f"{denoiser_onnx}: tensor name {name!r} already used; cannot fuse")
    shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in x_in.type.tensor_type.shape.dim]
    g.input.extend([
        helper.make_tensor_value_info("coef", TensorProto.FLOAT, [6]),
        helper.make_tensor_value_info("noise", TensorProto.FLOAT, shape),
        helper.make_tensor_value_info("x0_prev", TensorProto.FLOAT, shape),
    ])
    g.initializer.append(numpy_helper.from_array(np.array([6, 1, 1, 1, 1], dtype=np.int64), "fused_coef_shape"))
    nodes = [helper.make_node("Reshape", ["coef", "fused_coef_shape"], ["fused_c"])]
    for k, nm in enumerate(COEF_NAMES):
        g.initializer.append(numpy_helper.from_array(np.array(k, dtype=np.int64), f"fused_i{k}"))
        nodes.append(helper.make_node("Gather", ["fused_c", f"fused_i{k}"], [f"fused_{nm}"], axis=0))

    def mul(a, b, o):
        nodes.append(helper.make_node("Mul", [a, b], [o]))

    def add(a, b, o):
        nodes.append(helper.make_node("Add", [a, b], [o]))

    mul("fused_p0", x_in.name, "fused_p0x")
    mul("fused_p1", m_out.name, "fused_p1m")
    add("fused_p0x", "fused_p1m", "x0")
    mul("fused_A", x_in.name, "fused_Ax")
    mul("fused_B", "x0", "fused_Bx0")
    mul("fused_C", "x0_prev", "fused_Cx0p")
    mul("fused_D", "noise", "fused_Dz")
    add("fused_Ax", "fused_Bx0", "fused_s1")
    add("fused_Cx0p", "fused_Dz", "fused_s2")
    add("fused_s1", "fused_s2", "x_prev")
    g.node.extend(nodes)
    del g.output[:]
    g.output.extend([
        helper.make_tensor_value_info("x_prev", TensorProto.FLOAT, shape),
        helper.make_tensor_value_info("x0", TensorProto.FLOAT, shape),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return Path(out)



# ---------------------------------------------------------------- CPU loops


class FusedOrtLoop:
    """Runs a fused step graph N times with ONNX Runtime IOBinding over preallocated buffers."""

    def __init__(self, session, plan: StepPlan, batch: int, latent_shape: tuple[int, ...]):
        names = [i.name for i in session.get_inputs()]
        extra = list(FUSED_INPUTS[3:])
        if len(names) != 6 or not set(extra) <= set(names):
            raise ValueError(f"not a fused step graph (need x, t, cond, coef, noise, x0_prev): inputs {names}")
        self._in = [n for n in names if n not in extra] + extra
        self._out = [o.name for o in session.get_outputs()][:2]
        self.session, self.plan = session, plan
        n, shp = plan.steps, (batch, *latent_shape)
        self.shape = shp
        self.x = np.zeros((2, *shp), np.float32)  # ping-pong x_t / x_{t-1}
        self.x0 = np.zeros((2, *shp), np.float32)  # ping-pong x0 estimates
        self.cond = np.zeros(shp, np.float32)
        self.noise = np.zeros((n, *shp), np.float32)
        self.t = np.ascontiguousarray(np.repeat(plan.timesteps[:, None].astype(np.float32), batch, axis=1))
        self.coefs = np.ascontiguousarray(plan.coefs, dtype=np.float32)
        self._bindings = []
        f32 = np.float32
        for i in range(n):
            b = session.io_binding()
            a, z = i % 2, (i + 1) % 2
            feeds = (self.x[a], self.t[i], self.cond, self.coefs[i], self.noise[i], self.x0[z])
            for name, arr in zip(self._in, feeds, strict=False):
                b.bind_input(name, "cpu", 0, f32, list(arr.shape), arr.ctypes.data)
            b.bind_output(self._out[0], "cpu", 0, f32, list(shp), self.x[z].ctypes.data)
            b.bind_output(self._out[1], "cpu", 0, f32, list(shp), self.x0[a].ctypes.data)
            self._bindings.append(b)

    def run(self, x_init: np.ndarray, cond: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Sample from x_init (the noisiest latent) given cond; returns the final latent (a view into a buffer)."""
        _fill(self, x_init, cond, noise)
        for b in self._bindings:
            self.session.run_with_iobinding(b)
        return self.x[self.plan.steps % 2]


class FusedOvLoop:
    """Runs a fused step graph N times with OpenVINO over preallocated buffers shared with the infer request."""

    def __init__(self, graph, plan: StepPlan, batch: int, latent_shape: tuple[int, ...]):
        import openvino as ov

        shp = (batch, *latent_shape)
        names = graph.input_names()
        if len(names) != 6 or not set(FUSED_INPUTS[3:]) <= set(names):
            raise ValueError(f"not a fused step graph (need x, t, cond, coef, noise, x0_prev): inputs {names}")
        x_name, t_name, c_name = [n for n in names if n not in FUSED_INPUTS[3:]]
        self.plan, self.shape = plan, shp
        n = plan.steps
        self.x = np.zeros((2, *shp), np.float32)
        self.x0 = np.zeros((2, *shp), np.float32)
        self.cond = np.zeros(shp, np.float32)
        self.noise = np.zeros((n, *shp), np.float32)
        self.t = np.ascontiguousarray(np.repeat(plan.timesteps[:, None].astype(np.float32), batch, axis=1))
        self.coefs = np.ascontiguousarray(plan.coefs, dtype=np.float32)
        compiled = graph.compile({x_name: list(shp), t_name: [batch], c_name: list(shp), "coef": [6],
                                  "noise": list(shp), "x0_prev": list(shp)})
        self.request = compiled.create_infer_request()
        outs = [o.get_any_name() for o in compiled.outputs]
        self._steps = []
        for i in range(n):
            a, z = i % 2, (i + 1) % 2
            feeds = {x_name: self.x[a], t_name: self.t[i], c_name: self.cond, "coef": self.coefs[i],
                     "noise": self.noise[i], "x0_prev": self.x0[z]}
            ins = {k: ov.Tensor(v, shared_memory=True) for k, v in feeds.items()}
            out = {outs[0]: ov.Tensor(self.x[z], shared_memory=True),
                   outs[1]: ov.Tensor(self.x0[a], shared_memory=True)}
            self._steps.append((ins, out))

    def run(self, x_init: np.ndarray, cond: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Sample from x_init (the noisiest latent) given cond; returns the final latent (a view into a buffer)."""
        _fill(self, x_init, cond, noise)
        req = self.request
        for ins, out in self._steps:
            for k, v in ins.items():
                req.set_tensor(k, v)
            for k, v in out.items():
                req.set_tensor(k, v)
            req.infer()
        return self.x[self.plan.steps % 2]


def _fill(loop, x_init: np.ndarray, cond: np.ndarray, noise: np.ndarray | None) -> None:
    """Copy a run's inputs into a loop's preallocated buffers (shape checked; noise required by stochastic plans)."""
    if x_init.shape != loop.shape or cond.shape != loop.shape:
        raise ValueError(f"expected x_init and cond of shape {loop.shape}, got {x_init.shape} and {cond.shape}")
    np.copyto(loop.x[0], x_init)
    np.copyto(loop.cond, cond)
    loop.x0[1].fill(0.0)
    if noise is not None and loop.plan.stochastic:
        np.copyto(loop.noise, noise)
    elif loop.plan.stochastic:
        raise ValueError(f"sampler {loop.plan.sampler} adds noise each step: pass noise of shape {loop.noise.shape}")


class LoopSampler:
    """A backend's preallocated plan loops behind samplers.sample's contract; subclasses supply loop()."""

    def loop(self, plan: StepPlan, batch: int, latent_shape: tuple[int, ...]):
        """An object whose run(x_init, cond, noise) runs `plan` over `batch` rows of this latent shape."""
        raise NotImplementedError

    def sample(self, sched, cond: np.ndarray, spec, prediction: str, rng: np.random.Generator | None = None,
               noise: np.ndarray | None = None, x_init: np.ndarray | None = None) -> np.ndarray:
        """Same contract as samplers.sample; returns float32 latents.

        noise is [steps+1, ...]: index 0 starts the chain."""
        from edge.sr.samplers import draw_noise, start_latent

        plan = spec.plan(sched, prediction)
        if noise is None:
            if rng is None:
                raise ValueError("pass rng or pre-drawn noise")
            noise = draw_noise(rng, plan.steps, cond.shape)
        x = start_latent(spec, sched, plan, noise[0], x_init)
        loop = self.loop(plan, cond.shape[0], cond.shape[1:])
        return np.array(loop.run(x, np.asarray(cond, np.float32), noise[1:] if plan.stochastic else None),
                        np.float32)


class FusedSampler(LoopSampler):
    """A fused step graph opened on a backend (ORT session or OpenVINO graph); hands out one loop per plan and batch."""

    def __init__(self, graph):
        self.graph = graph
        self._loops: dict[tuple, FusedOrtLoop | FusedOvLoop] = {}

    def loop(self, plan: StepPlan, batch: int, latent_shape: tuple[int, ...]) -> FusedOrtLoop | FusedOvLoop:
        """The (cached) loop running `plan` at this static batch and latent shape."""
        key = (tuple(plan.timesteps.tolist()), plan.coefs.tobytes(), batch, tuple(latent_shape))
        if key not in self._loops:
            cls = FusedOrtLoop if hasattr(self.graph, "io_binding") else FusedOvLoop
            self._loops[key] = cls(self.graph, plan, batch, tuple(latent_shape))
        return self._loops[key]
