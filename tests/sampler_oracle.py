"""The float64 step-by-step samplers: the test oracle the runtime's coefficient plans (edge.sr.plan) are checked
against, themselves checked against diffusers (tests/unit/test_samplers.py). Not used by the runtime."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edge.sr.schedule import Prediction, Schedule, to_eps, to_x0

Denoise = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


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


def oracle_sample(denoise, sched: Schedule, x: np.ndarray, cond: np.ndarray, timesteps: np.ndarray, noise: np.ndarray,
                  name: str, prediction: Prediction, eta: float = 0.0, clip: float | None = None) -> np.ndarray:
    """Dispatch to the oracle sampler `name` (noise: per-step noise, [steps, ...])."""
    if name == "ddpm":
        return ddpm(denoise, sched, x, cond, timesteps, noise, prediction, clip)
    if name == "ddim":
        return ddim(denoise, sched, x, cond, timesteps, noise, prediction, eta, clip)
    return dpmpp_2m(denoise, sched, x, cond, timesteps, prediction, clip)
