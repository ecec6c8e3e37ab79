"""Sampler maths once: every sampler is a per-step coefficient plan, run by every loop in the runtime.

Once the schedule and timesteps are fixed, DDPM, DDIM and DPM-Solver++(2M) are linear in (x_t, model output m,
previous x0 estimate, fresh noise z), so one step is

    x0     = p0 * x_t + p1 * m
    x_prev = A * x_t + B * x0 + C * x0_prev + D * z

with a per-step vector coef = [p0, p1, A, B, C, D] (COEF_NAMES). A `StepPlan` holds those vectors for one run
(timesteps [N] int64, noisiest first; coefs [N, 6] float32). The numpy loop here (`run_plan`), the fused ONNX
Runtime / OpenVINO loops (edge.sr.fused) and the TensorRT CUDA-graph loop (edge.sr.trt_loop.TrtGraphLoop) all
consume the same plan; the float64 step-by-step samplers they are checked against live in tests/sampler_oracle.py.

A new sampler is one update function (abar at each step's t and at the next one -> [N, 4] of A, B, C, D) in
UPDATES, plus its parity test against diffusers. DDPM ancestral is the DDIM update with eta = 1 (Song et al. 2021,
eq. 12 and 16); DPM-Solver++(2M) is Lu et al. 2022, algorithm 2, data prediction, first order on the last step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

COEF_NAMES = ("p0", "p1", "A", "B", "C", "D")
PREDICTIONS = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class StepPlan:
    """Timesteps and per-step update coefficients of one sampler run (the interface every loop consumes)."""

    timesteps: np.ndarray  # [N] int64, noisiest first
    coefs: np.ndarray  # [N, 6] float32, columns COEF_NAMES
    sampler: str
    prediction_type: str

    @property
    def steps(self) -> int:
        """Number of model evaluations."""
        return len(self.timesteps)

    @property
    def stochastic(self) -> bool:
        """True when some step adds fresh noise (the loop needs the per-step noise array)."""
        return bool(np.any(self.coefs[:, 5] != 0))


def x0_coefs(abar: np.ndarray, prediction_type: str) -> np.ndarray:
    """[N, 2] (p0, p1) with x0 = p0*x_t + p1*model_output for the prediction type (Ho Eq. 15; Salimans & Ho Sec. 4)."""
    a, s = np.sqrt(abar), np.sqrt(1.0 - abar)
    if prediction_type == "epsilon":
        return np.stack([1.0 / a, -s / a], axis=1)
    if prediction_type == "v_prediction":
        return np.stack([a, -s], axis=1)
    if prediction_type == "sample":
        return np.stack([np.zeros_like(a), np.ones_like(a)], axis=1)
    raise ValueError(f"unknown prediction type {prediction_type!r}; expected one of {PREDICTIONS}")


def ddim_update(ab: np.ndarray, ab_next: np.ndarray, eta: float) -> np.ndarray:
    """DDIM (Song et al. 2021, Eq. 12), sigma = eta * sqrt(beta-tilde) (Eq. 16): x_prev = a' x0 + c eps + sigma z."""
    sigma = eta * np.sqrt((1 - ab_next) / (1 - ab)) * np.sqrt(1 - ab / ab_next) if eta else np.zeros_like(ab)
    c = np.sqrt(np.maximum(1.0 - ab_next - sigma**2, 0.0))
    a, s = np.sqrt(ab), np.sqrt(1.0 - ab)
    return np.stack([c / s, np.sqrt(ab_next) - c * a / s, np.zeros_like(ab), sigma], axis=1)


def dpmpp_2m_update(ab: np.ndarray, ab_next: np.ndarray, eta: float) -> np.ndarray:
    """DPM-Solver++(2M), data prediction (Lu et al. 2022, Alg. 2); the step to sigma = 0 returns x0 itself."""
    del eta  # deterministic solver
    out = np.zeros((len(ab), 4))
    lam = np.log(np.sqrt(ab) / np.sqrt(1.0 - ab))
    for i in range(len(ab)):
        s_next = np.sqrt(1.0 - ab_next[i])
        if s_next == 0.0:  # final step: the data estimate (lower-order final)
            out[i, 1] = 1.0
            continue
        h = np.log(np.sqrt(ab_next[i]) / s_next) - lam[i]
        A, B, C = s_next / np.sqrt(1.0 - ab[i]), np.sqrt(ab_next[i]) * (1.0 - np.exp(-h)), 0.0
        if i > 0:  # second order from the previous x0 (the first step is first order)
            r = (lam[i] - lam[i - 1]) / h
            B, C = B * (1 + 1 / (2 * r)), -B / (2 * r)
        out[i] = (A, B, C, 0.0)
    return out


def ddpm_update(ab: np.ndarray, ab_next: np.ndarray, eta: float) -> np.ndarray:
    """DDPM ancestral with the 'fixed small' variance (Ho et al. Eq. 6-7): the DDIM update at eta = 1 (eta unused)."""
    del eta
    return ddim_update(ab, ab_next, 1.0)


UPDATES: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "ddpm": ddpm_update,
    "ddim": ddim_update,
    "dpmpp_2m": dpmpp_2m_update,
}
DEFAULT_ETA = {"ddpm": 1.0, "ddim": 0.0, "dpmpp_2m": 0.0}


def plan_steps(alphas_cumprod: np.ndarray, timesteps: Iterable[int], sampler: str, prediction_type: str,
               eta: float | None = None) -> StepPlan:
    """The StepPlan of `sampler` over these timesteps (the last step lands on the clean sample)."""
    if sampler not in UPDATES:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {tuple(UPDATES)}")
    acp = np.asarray(alphas_cumprod, dtype=np.float64)
    ts = np.asarray(list(timesteps) if not isinstance(timesteps, np.ndarray) else timesteps, dtype=np.int64)
    if ts.ndim != 1 or len(ts) == 0 or np.any(np.diff(ts) >= 0) or ts[0] >= len(acp) or ts[-1] < 0:
        raise ValueError(f"timesteps must be strictly decreasing indices into the schedule (0..{len(acp) - 1}), "
                         f"got {ts.tolist()}")
    ab = acp[ts]
    ab_next = np.append(acp[ts[1:]], 1.0)
    eta = DEFAULT_ETA[sampler] if eta is None else float(eta)
    coefs = np.concatenate([x0_coefs(ab, prediction_type), UPDATES[sampler](ab, ab_next, eta)], axis=1)
    return StepPlan(ts, coefs.astype(np.float32), sampler, prediction_type)


def apply_step(coef, x, m, x0_prev, noise=None, clip: float | None = None):
    """One step of the plan: returns (x_prev, x0). Works on numpy arrays and torch tensors alike.

    clip: optional clipping of the x0 estimate to [-clip, clip] (pixel-space models; never for latents).
    """
    p0, p1, A, B, C, D = (float(c) for c in coef)
    x0 = p0 * x + p1 * m
    if clip is not None:
        x0 = x0.clip(-clip, clip)
    x_prev = A * x + B * x0
    if C:
        x_prev = x_prev + C * x0_prev
    if D and noise is not None:
        x_prev = x_prev + D * noise
    elif D:
        raise ValueError("this step adds fresh noise (D != 0): pass its noise")
    return x_prev, x0


def trajectory(denoise: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], plan: StepPlan, x: np.ndarray,
               cond: np.ndarray, noise: np.ndarray | None = None, clip: float | None = None,
               keep: Iterable[int] = ()) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The numpy loop: run the plan from x (the noisiest latent) in float64; returns (final latent, {t: x_t} for t in
    `keep`). The model sees float32 x and a float32 timestep per batch item; noise [N, ...] for stochastic plans."""
    if plan.stochastic and noise is None:
        raise ValueError(f"sampler {plan.sampler} adds noise each step: pass noise of shape [{plan.steps}, ...]")
    keep = set(int(t) for t in keep)
    x = np.asarray(x, dtype=np.float64)
    x0_prev, states = np.zeros_like(x), {}
    for i, t in enumerate(plan.timesteps):
        if int(t) in keep:
            states[int(t)] = x.astype(np.float32)
        tt = np.full((x.shape[0],), float(t), dtype=np.float32)
        m = np.asarray(denoise(x.astype(np.float32), tt, cond), dtype=np.float64)
        x, x0_prev = apply_step(plan.coefs[i], x, m, x0_prev, None if noise is None else noise[i], clip)
    return x, states


def run_plan(denoise, plan: StepPlan, x: np.ndarray, cond: np.ndarray, noise: np.ndarray | None = None,
             clip: float | None = None) -> np.ndarray:
    """The final latent of the numpy loop, float32."""
    return trajectory(denoise, plan, x, cond, noise, clip)[0].astype(np.float32)
