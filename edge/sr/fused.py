"""Fused sampler step: one graph computes (x_t, t, cond, coefficients) -> x_{t-1}, and its preallocated CPU loop.

Every sampler here is linear in (x_t, model output, previous x0 estimate, noise) once the schedule is
fixed, so one step is  x0 = p0*x_t + p1*m  and  x_prev = A*x_t + B*x0 + C*x0_prev + D*z  with a
per-step vector coef = [p0, p1, A, B, C, D]. DDPM ancestral is the DDIM update with eta=1
(Song et al. 2021, eq. 12/16); DPM-Solver++(2M) is Lu et al. 2022, alg. 2, data prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

COEF_NAMES = ("p0", "p1", "A", "B", "C", "D")
SAMPLERS = ("ddpm", "ddim", "dpmpp_2m")
PREDICTIONS = ("epsilon", "v_prediction", "sample")
FUSED_INPUTS = ("x", "t", "cond", "coef", "noise", "x0_prev")
FUSED_OUTPUTS = ("x_prev", "x0")


@dataclass(frozen=True)
class StepPlan:
    """Timesteps and per-step update coefficients of one sampler run."""

    timesteps: np.ndarray  # [N] int, noisiest first
    coefs: np.ndarray  # [N, 6] float32, see COEF_NAMES
    sampler: str
    prediction_type: str

    @property
    def steps(self) -> int:
        """Number of model evaluations."""
        return len(self.timesteps)

    @property
    def stochastic(self) -> bool:
        """True when some step adds fresh noise (needs the noise array)."""
        return bool(np.any(self.coefs[:, 5] != 0))


def _to_x0(a: float, s: float, prediction_type: str) -> tuple[float, float]:
    """(p0, p1) with x0 = p0*x_t + p1*model_output for the given prediction type."""
    if prediction_type == "epsilon":
        return 1.0 / a, -s / a
    if prediction_type == "v_prediction":
        return a, -s
    if prediction_type == "sample":
        return 0.0, 1.0
    raise ValueError(f"unknown prediction type {prediction_type!r}; expected one of {PREDICTIONS}")


def plan_steps(
    alphas_cumprod: np.ndarray, timesteps, sampler: str, prediction_type: str, eta: float | None = None
) -> StepPlan:
    """Per-step coefficients for a sampler over the given timesteps (last step lands on the clean sample)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
    acp = np.asarray(alphas_cumprod, dtype=np.float64)
    ts = np.asarray(timesteps, dtype=np.int64)
    if ts.ndim != 1 or len(ts) == 0 or np.any(np.diff(ts) >= 0) or ts[0] >= len(acp) or ts[-1] < 0:
        raise ValueError(f"timesteps must be strictly decreasing indices into the schedule (0..{len(acp) - 1}), got {ts.tolist()}")
    if eta is None:
        eta = 1.0 if sampler == "ddpm" else 0.0
    coefs = np.zeros((len(ts), 6), dtype=np.float64)
    lam_prev_step = None  # lambda at the previous step's t (for the 2M ratio r)
    for i, t in enumerate(ts):
        ab = acp[t]
        ab_p = acp[ts[i + 1]] if i + 1 < len(ts) else 1.0
        a, s = np.sqrt(ab), np.sqrt(1.0 - ab)
        a_p, s_p = np.sqrt(ab_p), np.sqrt(1.0 - ab_p)
        p0, p1 = _to_x0(a, s, prediction_type)
        A = B = C = D = 0.0
        if sampler in ("ddim", "ddpm"):
            sigma = eta * np.sqrt((1 - ab_p) / (1 - ab)) * np.sqrt(1 - ab / ab_p) if eta else 0.0
            c = np.sqrt(max(1.0 - ab_p - sigma**2, 0.0))
            A, B, D = c / s, a_p - c * a / s, sigma
        else:  # dpmpp_2m
            lam = np.log(a / s)
            if s_p == 0.0:  # final step to the clean sample: x0 itself (lower-order final)
                A, B = 0.0, 1.0
            else:
                lam_p = np.log(a_p / s_p)
                h = lam_p - lam
                A, B = s_p / s, a_p * (1.0 - np.exp(-h))
                if lam_prev_step is not None:
                    r = (lam - lam_prev_step) / h
                    B, C = B * (1 + 1 / (2 * r)), -B / (2 * r)
            lam_prev_step = lam
        coefs[i] = (p0, p1, A, B, C, D)
    return StepPlan(ts, coefs.astype(np.float32), sampler, prediction_type)


def apply_step(coef: np.ndarray, x: np.ndarray, m: np.ndarray, x0_prev: np.ndarray, noise: np.ndarray):
    """Reference (allocating) numpy version of the fused update: returns (x_prev, x0)."""
    p0, p1, A, B, C, D = (float(c) for c in coef)
    x0 = p0 * x + p1 * m
    return A * x + B * x0 + C * x0_prev + D * noise, x0


# ---------------------------------------------------------------- graphs


def fused_step_module(denoiser):
    """Torch module (x, t, cond, coef[6], noise, x0_prev) -> (x_prev, x0) wrapping a denoiser module."""
    import torch

    class FusedStep(torch.nn.Module):
        """One sampler step including the update, so a loop iteration is one graph call."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, t, cond, coef, noise, x0_prev):
            m = self.net(x, t, cond)
            c = coef.reshape(6, 1, 1, 1, 1)
            x0 = c[0] * x + c[1] * m
            return c[2] * x + c[3] * x0 + c[4] * x0_prev + c[5] * noise, x0

    return FusedStep(denoiser).eval()


def export_fused_torch(denoiser, out: Path, batch: int, channels: int, height: int, width: int, opset: int = 18) -> Path:
    """Export the torch FusedStep of a denoiser module to ONNX with static shapes."""
    import torch

    mod = fused_step_module(denoiser)
    x = torch.zeros(batch, channels, height, width)
    args = (x, torch.zeros(batch), x.clone(), torch.zeros(6), x.clone(), x.clone())
    with torch.no_grad():
        torch.onnx.export(mod, args, str(out), input_names=list(FUSED_INPUTS), output_names=list(FUSED_OUTPUTS),
                          opset_version=opset, dynamo=False)
    return Path(out)


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


# ---------------------------------------------------------------- CPU loop


class FusedOrtLoop:
    """Runs a fused step graph N times with ONNX Runtime IOBinding over preallocated buffers."""

    def __init__(self, session, plan: StepPlan, batch: int, latent_shape: tuple[int, int, int]):
        import onnxruntime as ort

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
            for name, arr in zip(self._in, feeds):
                b.bind_input(name, "cpu", 0, f32, list(arr.shape), arr.ctypes.data)
            b.bind_output(self._out[0], "cpu", 0, f32, list(shp), self.x[z].ctypes.data)
            b.bind_output(self._out[1], "cpu", 0, f32, list(shp), self.x0[a].ctypes.data)
            self._bindings.append(b)
        self._ort = ort

    def run(self, x_init: np.ndarray, cond: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Sample from x_init (the noisiest latent) given cond; returns the final latent (a view into a buffer)."""
        if x_init.shape != self.shape or cond.shape != self.shape:
            raise ValueError(f"expected x_init and cond of shape {self.shape}, got {x_init.shape} and {cond.shape}")
        np.copyto(self.x[0], x_init)
        np.copyto(self.cond, cond)
        self.x0[1].fill(0.0)
        if noise is not None:
            np.copyto(self.noise, noise)
        elif self.plan.stochastic:
            raise ValueError(f"sampler {self.plan.sampler} adds noise each step: pass noise of shape {self.noise.shape}")
        for b in self._bindings:
            self.session.run_with_iobinding(b)
        return self.x[self.plan.steps % 2]


class FusedSampler:
    """Drop-in for edge.sr.samplers.sample over a fused step session: one session call per step, buffers reused."""

    def __init__(self, session):
        self.session = session
        self._loops: dict[tuple, FusedOrtLoop] = {}

    def sample(self, sched, cond: np.ndarray, spec, prediction: str, rng: np.random.Generator | None = None,
               noise: np.ndarray | None = None, x_init: np.ndarray | None = None) -> np.ndarray:
        """Same contract as samplers.sample (noise [steps+1, ...]: index 0 starts the chain); returns float32 latents."""
        from edge.sr.samplers import draw_noise
        from edge.sr.schedule import timesteps_for

        t_max = None
        if spec.init == "noised_estimate":
            if x_init is None:
                raise ValueError("sampler init 'noised_estimate' needs x_init (the encoded upsampled LR)")
            t_max = sched.T - 1 if spec.t_start is None else spec.t_start
        ts = timesteps_for(sched.T, spec.steps, spec.spacing, t_max=t_max)
        eta = 1.0 if spec.name == "ddpm" else spec.eta
        key = (tuple(ts.tolist()), spec.name, eta, prediction, cond.shape)
        loop = self._loops.get(key)
        if loop is None:
            plan = plan_steps(sched.alphas_cumprod, ts, spec.name, prediction, eta=eta)
            loop = self._loops[key] = FusedOrtLoop(self.session, plan, cond.shape[0], cond.shape[1:])
        if noise is None:
            if rng is None:
                raise ValueError("pass rng or pre-drawn noise")
            noise = draw_noise(rng, len(ts), cond.shape)
        x = noise[0] if t_max is None else sched.q_sample(np.asarray(x_init, np.float64), noise[0], int(ts[0]))
        return loop.run(np.asarray(x, np.float32), np.asarray(cond, np.float32),
                        noise[1:] if loop.plan.stochastic else None).copy()
