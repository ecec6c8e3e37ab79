"""Distillation: a lighter HR decoder from the full one, and a 1-4 step deterministic student (SinSR-style).

Teachers are given as plain callables (ONNX Runtime sessions of the bundle's graphs work), students are
torch modules. The student regresses the teacher's deterministic DDIM ODE map noise -> x0 with the noise
fixed per example (Wang et al. 2024, SinSR, eq. 7, without the inverse-consistency term).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.sr.fused import StepPlan, apply_step, plan_steps

Array = np.ndarray


# ---------------------------------------------------------------- (a) lighter decoder


def light_decoder(latent_channels: int = 4, out_channels: int = 1, scale: int = 4, width: int = 32):
    """A small KL-style decoder (diffusers Decoder, 1 res-block per level, no attention) upsampling by `scale`."""
    from diffusers.models.autoencoders.vae import Decoder

    levels = int(round(np.log2(scale))) + 1
    if 2 ** (levels - 1) != scale:
        raise ValueError(f"decoder scale must be a power of two, got {scale}")
    chans = tuple(width * min(2**i, 2) for i in range(levels))
    return Decoder(in_channels=latent_channels, out_channels=out_channels, up_block_types=("UpDecoderBlock2D",) * levels,
                   block_out_channels=chans, layers_per_block=1, norm_num_groups=8, mid_block_add_attention=False)


@dataclass
class DistillLog:
    """Loss curve and wall time of one distillation run."""

    losses: list[float]
    seconds: float


def distill_decoder(teacher: Callable[[Array], Array], latents: Array, student=None, steps: int = 500, batch: int = 16,
                    lr: float = 1e-3, jitter: float = 0.1, seed: int = 0, time_budget_s: float | None = None,
                    progress: bool = False):
    """Train `student` so student(z) ~= teacher(z) on latents (plus small Gaussian jitter); returns (student, log)."""
    import torch

    if latents.ndim != 4:
        raise ValueError(f"latents must be [N, C, h, w], got shape {latents.shape}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if student is None:
        probe = teacher(latents[:1].astype(np.float32))
        student = light_decoder(latents.shape[1], probe.shape[1], probe.shape[-1] // latents.shape[-1])
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses, t0 = [], time.perf_counter()
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="distill decoder")
    student.train()
    for _ in it:
        z = latents[rng.integers(0, len(latents), batch)].astype(np.float32)
        z = z + jitter * z.std() * rng.standard_normal(z.shape).astype(np.float32)
        target = torch.from_numpy(np.ascontiguousarray(teacher(z), dtype=np.float32))
        pred = student(torch.from_numpy(z))
        loss = torch.nn.functional.l1_loss(pred, target) + torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
        if time_budget_s and time.perf_counter() - t0 > time_budget_s:
            break
    return student.eval(), DistillLog(losses, time.perf_counter() - t0)


# ---------------------------------------------------------------- (b) few-step student


def teacher_trajectory(denoise: Callable[[Array, Array, Array], Array], plan: StepPlan, x_T: Array, cond: Array,
                       keep: set[int]) -> tuple[Array, dict[int, Array]]:
    """Run the teacher's deterministic plan from x_T; returns (x0, {timestep: x_t}) for the timesteps in `keep`."""
    if plan.stochastic:
        raise ValueError("the teacher ODE must be deterministic (ddim eta=0 or dpmpp_2m)")
    x, x0p, zero, states = x_T, np.zeros_like(x_T), np.zeros_like(x_T), {}
    for i, t in enumerate(plan.timesteps):
        if int(t) in keep:
            states[int(t)] = x.copy()
        m = denoise(x, np.full(len(x), t, np.float32), cond)
        x, x0p = apply_step(plan.coefs[i], x, m, x0p, zero)
    return x, states


def student_timesteps(T: int, steps: int) -> np.ndarray:
    """Student timesteps: `steps` evenly spaced from the noisiest index down (trailing spacing)."""
    if not 1 <= steps <= 4:
        raise ValueError(f"the student takes 1 to 4 steps, got {steps}")
    return np.round(np.arange(T, 0, -T / steps) - 1).astype(np.int64)


def make_student_data(denoise, alphas_cumprod: Array, conds: Array, prediction_type: str, student_steps: int,
                      teacher_steps: int = 50, seed: int = 0, batch: int = 16, progress: bool = False):
    """Fixed noise -> teacher ODE (DDIM, eta=0) pairs, with the teacher's states at the student's timesteps."""
    T = len(alphas_cumprod)
    ts_s = student_timesteps(T, student_steps)
    ts_t = np.unique(np.concatenate([np.round(np.linspace(T - 1, 0, teacher_steps)).astype(np.int64), ts_s]))[::-1]
    plan = plan_steps(alphas_cumprod, ts_t, "ddim", prediction_type)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(conds.shape).astype(np.float32)
    x0 = np.zeros_like(noise)
    states = np.zeros((len(ts_s), *conds.shape), np.float32)
    chunks = range(0, len(conds), batch)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="teacher ODE")
    for s in chunks:
        sl = slice(s, s + batch)
        out, st = teacher_trajectory(denoise, plan, noise[sl], conds[sl], set(ts_s.tolist()))
        x0[sl] = out
        for j, t in enumerate(ts_s):
            states[j, sl] = st[int(t)]
    return {"timesteps": ts_s, "states": states, "x0": x0, "cond": conds, "noise": noise}


def distill_student(student, data: dict, alphas_cumprod: Array, prediction_type: str, steps: int = 500, batch: int = 16,
                    lr: float = 2e-5, seed: int = 0, time_budget_s: float | None = None, progress: bool = False):
    """Train `student` (x, t, cond) -> out so that its x0 estimate at each student timestep equals the teacher's x0."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ts = data["timesteps"]
    coefs = plan_steps(alphas_cumprod, ts, "ddim", prediction_type).coefs
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    losses, t0 = [], time.perf_counter()
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"distill {len(ts)}-step student")
    student.train()
    n = len(data["x0"])
    for _ in it:
        idx = rng.integers(0, n, batch)
        j = int(rng.integers(0, len(ts)))
        x = torch.from_numpy(data["states"][j, idx])
        cond = torch.from_numpy(data["cond"][idx])
        target = torch.from_numpy(data["x0"][idx])
        t = torch.full((batch,), float(ts[j]))
        p0, p1 = float(coefs[j, 0]), float(coefs[j, 1])
        x0 = p0 * x + p1 * student(x, t, cond)
        loss = torch.nn.functional.mse_loss(x0, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(float(loss))
        if time_budget_s and time.perf_counter() - t0 > time_budget_s:
            break
    return student.eval(), DistillLog(losses, time.perf_counter() - t0)


def run_student(denoise, alphas_cumprod: Array, timesteps: Array, prediction_type: str, x_T: Array, cond: Array) -> Array:
    """Deterministic k-step DDIM with the student from fixed noise x_T (the inference path of the student)."""
    x0, _ = teacher_trajectory(denoise, plan_steps(alphas_cumprod, timesteps, "ddim", prediction_type), x_T, cond, set())
    return x0
