"""Noise schedules (float64 numpy) and conversions between epsilon, v and x0 predictions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

ScheduleKind = Literal["linear", "cosine"]
Prediction = Literal["epsilon", "v_prediction", "sample"]
Spacing = Literal["leading", "trailing", "linspace"]


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Linear betas of Ho et al. 2020 (Sec. 4: beta_1=1e-4 .. beta_T=0.02), float64."""
    return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Cosine betas of Nichol & Dhariwal 2021 (Eq. 17: abar(t)=cos^2((t/T+s)/(1+s) pi/2), betas clipped at 0.999)."""
    t = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    abar = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)


@dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete diffusion schedule: betas and cumulative alphas over T training timesteps (index T-1 = noisiest)."""

    kind: ScheduleKind
    betas: np.ndarray

    @classmethod
    def make(cls, kind: ScheduleKind = "linear", timesteps: int = 200, **kw: float) -> Schedule:
        """Build a linear or cosine schedule with `timesteps` steps."""
        if timesteps < 2:
            raise ValueError(f"a schedule needs at least 2 timesteps, got {timesteps}")
        if kind == "linear":
            return cls(kind, linear_betas(timesteps, **kw))
        if kind == "cosine":
            return cls(kind, cosine_betas(timesteps, **kw))
        raise ValueError(f"unknown schedule kind {kind!r}; use 'linear' or 'cosine'")

    @classmethod
    def from_manifest(cls, spec: dict) -> Schedule:
        """Build from a bundle manifest's `schedule` entry ({kind, timesteps, [beta_start, beta_end]})."""
        extra = {k: float(spec[k]) for k in ("beta_start", "beta_end") if k in spec}
        return cls.make(spec.get("kind", "linear"), int(spec.get("timesteps", 200)), **extra)

    @property
    def T(self) -> int:
        """Number of training timesteps."""
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """abar_t = prod_{s<=t} (1 - beta_s) (Ho et al. Eq. 4)."""
        return np.cumprod(1.0 - self.betas)

    def abar(self, t: int) -> float:
        """abar at timestep index t; t < 0 means 'no noise' (abar = 1)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def q_sample(self, x0: np.ndarray, noise: np.ndarray, t: int) -> np.ndarray:
        """Forward process x_t = sqrt(abar) x0 + sqrt(1-abar) eps (Ho et al. Eq. 4)."""
        a = self.abar(t)
        return math.sqrt(a) * x0 + math.sqrt(1.0 - a) * noise


def timesteps_for(T: int, steps: int, spacing: Spacing = "trailing", t_max: int | None = None) -> np.ndarray:
    """Descending int64 timesteps for `steps` sampler steps (spacings of Lin et al. 2023, Table 2), capped at t_max."""
    top = T if t_max is None else int(t_max) + 1
    if not 1 <= steps <= top:
        raise ValueError(f"steps must be in 1..{top} for this schedule (got {steps})")
    if spacing == "trailing":
        ts = np.round(np.arange(top, 0, -top / steps)).astype(np.int64) - 1
    elif spacing == "leading":
        ts = (np.arange(0, steps) * (top // steps))[::-1].astype(np.int64)
    elif spacing == "linspace":
        ts = np.linspace(0, top - 1, steps).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; use leading, trailing or linspace")
    return ts.copy()


def to_x0(pred: np.ndarray, x: np.ndarray, abar: float, kind: Prediction) -> np.ndarray:
    """x0 from a model output.

    eps -> (x - sqrt(1-abar) eps)/sqrt(abar) (Ho Eq. 15); v -> sqrt(abar) x - sqrt(1-abar) v (Salimans & Ho Sec. 4).
    """
    a, s = math.sqrt(abar), math.sqrt(1.0 - abar)
    if kind == "epsilon":
        return (x - s * pred) / a
    if kind == "v_prediction":
        return a * x - s * pred
    if kind == "sample":
        return pred
    raise ValueError(f"unknown prediction type {kind!r}; use epsilon, v_prediction or sample")


def to_eps(pred: np.ndarray, x: np.ndarray, abar: float, kind: Prediction) -> np.ndarray:
    """eps from a model output.

    x0 -> (x - sqrt(abar) x0)/sqrt(1-abar); v -> sqrt(1-abar) x + sqrt(abar) v (Salimans & Ho Eq. D).
    """
    a, s = math.sqrt(abar), math.sqrt(1.0 - abar)
    if kind == "epsilon":
        return pred
    if kind == "v_prediction":
        return s * x + a * pred
    if kind == "sample":
        return (x - a * pred) / s
    raise ValueError(f"unknown prediction type {kind!r}; use epsilon, v_prediction or sample")


def to_v(x0: np.ndarray, eps: np.ndarray, abar: float) -> np.ndarray:
    """v target v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho 2022, Sec. 4)."""
    return math.sqrt(abar) * eps - math.sqrt(1.0 - abar) * x0
