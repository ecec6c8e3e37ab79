"""Samplers as pure functions over `denoise(x, t, cond) -> model output` on numpy arrays.

All noise is drawn up front (`draw_noise`), so a sampler is a fixed loop of model calls plus
elementwise updates: the same loop can be replayed on ONNX Runtime, OpenVINO or a CUDA graph.
State is kept in float64; the model sees float32 `x` [B,C,h,w] and float32 `t` [B] (timestep index).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.sr.schedule import Prediction, Schedule, Spacing, timesteps_for, to_eps, to_x0

Denoise = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
SamplerName = Literal["ddpm", "ddim", "dpmpp_2m"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpmpp_2m")


def _call(denoise: Denoise, x: np.ndarray, t: int, cond: np.ndarray) -> np.ndarray:
    """One model call: float32 x, a float32 timestep per batch item."""
    tt = np.full((x.shape[0],), float(t), dtype=np.float32)
    return np.asarray(denoise(x.astype(np.float32), tt, cond), dtype=np.float64)


def _clip(x0: np.ndarray, clip: float | None) -> np.ndarray:
    """Optional clipping of the x0 estimate to [-clip, clip] (off for latents)."""
    return x0 if clip is None else np.clip(x0, -clip, clip)


def ddpm(denoise: Denoise, sched: Schedule, x: np.ndarray, cond: np.ndarray, timesteps: np.ndarray,
         noise: np.ndarray, prediction: Prediction = "epsilon", clip: float | None = None) -> np.ndarray:
    """DDPM ancestral sampling: posterior mean (Ho et al. Eq. 7) + sigma^2 = beta-tilde (Eq. 6 'fixed small')."""
    x = np.asarray(x, dtype=np.float64)
    for i, t in enumerate(timesteps):
        prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
        a_t, a_prev = sched.abar(int(t)), sched.abar(prev)
        alpha, beta = a_t / a_prev, 1.0 - a_t / a_prev
        x0 = _clip(to_x0(_call(denoise, x, int(t), cond), x, a_t, prediction), clip)
        mean = (math.sqrt(a_prev) * beta / (1 - a_t)) * x0 + (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t)) * x
        if prev >= 0:
            var = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)
            mean = mean + math.sqrt(var) * noise[i]
        x = mean
    return x


def ddim(denoise: Denoise, sched: Schedule, x: np.ndarray, cond: np.ndarray, timesteps: np.ndarray,
         noise: np.ndarray | None = None, prediction: Prediction = "epsilon", eta: float = 0.0,
         clip: float | None = None) -> np.ndarray:
    """DDIM update (Song et al. 2021, Eq. 12) with sigma_t = eta * sqrt(beta-tilde) (Eq. 16)."""
    x = np.asarray(x, dtype=np.float64)
    for i, t in enumerate(timesteps):
        prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
        a_t, a_prev = sched.abar(int(t)), sched.abar(prev)
        out = _call(denoise, x, int(t), cond)
        x0 = to_x0(out, x, a_t, prediction)
        eps = to_eps(out, x, a_t, prediction)
        if clip is not None:
            x0 = _clip(x0, clip)
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        std = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - std**2, 0.0)) * eps
        if eta > 0:
            if noise is None:
                raise ValueError("ddim with eta > 0 needs pre-drawn noise")
            x = x + std * noise[i]
    return x


def dpmpp_2m(denoise: Denoise, sched: Schedule, x: np.ndarray, cond: np.ndarray, timesteps: np.ndarray,
             prediction: Prediction = "epsilon", clip: float | None = None) -> np.ndarray:
    """DPM-Solver++(2M) in data prediction (Lu et al. 2022b, Alg. 2), first order on the first and the final step."""
    x = np.asarray(x, dtype=np.float64)
    prev_x0: np.ndarray | None = None
    h_prev = 0.0
    for i, t in enumerate(timesteps):
        prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
        a_t = sched.abar(int(t))
        x0 = _clip(to_x0(_call(denoise, x, int(t), cond), x, a_t, prediction), clip)
        if prev < 0:  # final step to sigma = 0: the data estimate itself
            x = x0
            break
        a_s = sched.abar(prev)
        al_t, sg_t = math.sqrt(a_t), math.sqrt(1 - a_t)
        al_s, sg_s = math.sqrt(a_s), math.sqrt(1 - a_s)
        h = (math.log(al_s) - math.log(sg_s)) - (math.log(al_t) - math.log(sg_t))  # lambda_next - lambda_now
        d = x0 if prev_x0 is None else x0 + (0.5 * h / h_prev) * (x0 - prev_x0)  # 2M midpoint correction
        x = (sg_s / sg_t) * x - al_s * math.expm1(-h) * d
        prev_x0, h_prev = x0, h
    return x


def draw_noise(rng: np.random.Generator, steps: int, shape: tuple[int, ...]) -> np.ndarray:
    """All noise a run needs, up front: [steps + 1, *shape] float32 (index 0 starts the chain)."""
    return rng.standard_normal((steps + 1, *shape), dtype=np.float32)


@dataclass(frozen=True)
class SamplerSpec:
    """Which sampler, how many steps, and how the chain starts."""

    name: SamplerName = "dpmpp_2m"
    steps: int = 20
    spacing: Spacing = "trailing"
    eta: float = 0.0
    init: Literal["noise", "noised_estimate"] = "noise"
    t_start: int | None = None  # for init="noised_estimate": timestep index the estimate is noised to
    estimate: Literal["bicubic", "regression"] = "bicubic"  # where the noised estimate comes from

    @classmethod
    def from_manifest(cls, spec: dict, steps: int | None = None) -> "SamplerSpec":
        """Build from a manifest `sampler`/`reference` entry, optionally overriding the step count."""
        name = spec.get("name", "dpmpp_2m")
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
        default_spacing = "leading" if name == "ddpm" else "trailing"
        return cls(name=name, steps=int(steps or spec.get("steps", 20)), spacing=spec.get("spacing", default_spacing),
                   eta=float(spec.get("eta", 0.0)), init=spec.get("init", "noise"),
                   t_start=None if spec.get("t_start") is None else int(spec["t_start"]),
                   estimate=spec.get("estimate", "bicubic"))


def sample(denoise: Denoise, sched: Schedule, cond: np.ndarray, shape: tuple[int, ...], spec: SamplerSpec,
           prediction: Prediction, rng: np.random.Generator | None = None, noise: np.ndarray | None = None,
           x_init: np.ndarray | None = None, clip: float | None = None) -> np.ndarray:
    """Run `spec` from pure noise, or (SDEdit-style) from `x_init` noised to t_start; returns float32 latents."""
    t_max = None
    if spec.init == "noised_estimate":
        if x_init is None:
            raise ValueError("sampler init 'noised_estimate' needs x_init (the encoded upsampled LR)")
        t_max = sched.T - 1 if spec.t_start is None else spec.t_start
    ts = timesteps_for(sched.T, spec.steps, spec.spacing, t_max=t_max)
    if noise is None:
        if rng is None:
            raise ValueError("pass rng or pre-drawn noise")
        noise = draw_noise(rng, len(ts), shape)
    x = noise[0].astype(np.float64) if t_max is None else sched.q_sample(np.asarray(x_init, np.float64), noise[0], int(ts[0]))
    steps_noise = noise[1:]
    if spec.name == "ddpm":
        out = ddpm(denoise, sched, x, cond, ts, steps_noise, prediction, clip)
    elif spec.name == "ddim":
        out = ddim(denoise, sched, x, cond, ts, steps_noise, prediction, spec.eta, clip)
    elif spec.name == "dpmpp_2m":
        out = dpmpp_2m(denoise, sched, x, cond, ts, prediction, clip)
    else:
        raise ValueError(f"unknown sampler {spec.name!r}; use one of {', '.join(SAMPLERS)}")
    return out.astype(np.float32)
