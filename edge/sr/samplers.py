"""Sampler settings and the numpy sampling entry point: a SamplerSpec becomes a StepPlan (edge.sr.plan) plus a start.

All noise is drawn up front (`draw_noise`), so a sampler is a fixed loop of model calls plus the plan's linear
updates: the same plan runs in numpy here, in the fused ONNX Runtime / OpenVINO loops and in a CUDA graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.sr.plan import UPDATES, StepPlan, plan_steps, run_plan
from edge.sr.schedule import Prediction, Schedule, Spacing, timesteps_for

Denoise = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
SamplerName = Literal["ddpm", "ddim", "dpmpp_2m"]
SAMPLERS: tuple[str, ...] = tuple(UPDATES)


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
    def from_manifest(cls, spec: dict, steps: int | None = None) -> SamplerSpec:
        """Build from a manifest `sampler`/`reference` entry, optionally overriding the step count."""
        name = spec.get("name", "dpmpp_2m")
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
        default_spacing = "leading" if name == "ddpm" else "trailing"
        return cls(name=name, steps=int(steps or spec.get("steps", 20)), spacing=spec.get("spacing", default_spacing),
                   eta=float(spec.get("eta", 0.0)), init=spec.get("init", "noise"),
                   t_start=None if spec.get("t_start") is None else int(spec["t_start"]),
                   estimate=spec.get("estimate", "bicubic"))

    def t_max(self, sched: Schedule) -> int | None:
        """Timestep the chain starts at for a noised-estimate start (None: pure noise at T-1)."""
        if self.init != "noised_estimate":
            return None
        return sched.T - 1 if self.t_start is None else self.t_start

    def plan(self, sched: Schedule, prediction: str) -> StepPlan:
        """This sampler's StepPlan on a schedule (DDPM always at eta 1)."""
        ts = timesteps_for(sched.T, self.steps, self.spacing, t_max=self.t_max(sched))
        eta = None if self.name == "ddpm" else self.eta
        return plan_steps(sched.alphas_cumprod, ts, self.name, prediction, eta=eta)


def start_latent(spec: SamplerSpec, sched: Schedule, plan: StepPlan, noise0: np.ndarray,
                 x_init: np.ndarray | None) -> np.ndarray:
    """The chain's first state: pure noise, or (SDEdit-style) x_init noised to the plan's first timestep (float32)."""
    if spec.init != "noised_estimate":
        return np.asarray(noise0, np.float32)
    if x_init is None:
        raise ValueError("sampler init 'noised_estimate' needs x_init (the encoded upsampled LR)")
    return sched.q_sample(np.asarray(x_init, np.float64), noise0, int(plan.timesteps[0])).astype(np.float32)


def sample(denoise: Denoise, sched: Schedule, cond: np.ndarray, shape: tuple[int, ...], spec: SamplerSpec,
           prediction: Prediction, rng: np.random.Generator | None = None, noise: np.ndarray | None = None,
           x_init: np.ndarray | None = None, clip: float | None = None) -> np.ndarray:
    """Run `spec` from pure noise, or from `x_init` noised to t_start, with the numpy loop; returns float32 latents.

    noise: [steps + 1, *shape] (index 0 starts the chain), else drawn from rng.
    """
    plan = spec.plan(sched, prediction)
    if noise is None:
        if rng is None:
            raise ValueError("pass rng or pre-drawn noise")
        noise = draw_noise(rng, plan.steps, shape)
    x = start_latent(spec, sched, plan, noise[0], x_init)
    return run_plan(denoise, plan, x, cond, noise[1:] if plan.stochastic else None, clip)
