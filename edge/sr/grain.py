"""Grain cap: never paint more fine detail than the LR supports.

A sample's detail above the LR Nyquist frequency is the model's guess; its amount is learned from the training
mix and overshoots on cameras whose powder looks smoother than that mix (docs/sr_quality.md). A ridge regression
from the LR window's spectrum to the HR window's detail energy (fit on the training split, stored in the bundle
manifest as `grain_cap`) predicts how much detail each region should carry; where the output carries more, its
detail band is scaled down to the prediction. It only lowers detail, so a mean of samples (little detail left)
passes almost unchanged. Numpy + OpenCV only: it runs after any backend.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

BAND_EDGES = (0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.5)  # radial bands of the LR spectrum, in units of LR Nyquist
ENERGY_FLOOR = 1e-2  # gray levels^2, keeps the logs finite on flat regions


@dataclass(frozen=True)
class GrainCap:
    """A fitted grain-level predictor: log detail energy ~ weights . lr_features(window) + bias."""

    weights: tuple[float, ...]
    bias: float
    window: int = 32  # LR window side the features and the target are measured on
    split_sigma: float = 1.5  # HR px: Gaussian low-pass that splits the output into base + detail
    max_gain: float = 1.0  # 1: only ever lower the detail
    margin: float = 1.0  # detail energy allowed = margin x predicted (the predictor's spread across cameras)
    validation: dict = field(default_factory=dict)  # fit statistics per source (docs, manifest)

    def to_json(self) -> dict:
        """Plain dict for the bundle manifest."""
        d = asdict(self)
        d["weights"] = [float(w) for w in self.weights]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "GrainCap":
        """Inverse of to_json; a clear error for a malformed manifest entry."""
        try:
            cap = cls(weights=tuple(float(w) for w in d["weights"]), bias=float(d["bias"]),
                      window=int(d.get("window", 32)), split_sigma=float(d.get("split_sigma", 1.5)),
                      max_gain=float(d.get("max_gain", 1.0)), margin=float(d.get("margin", 1.0)),
                      validation=dict(d.get("validation", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"manifest grain_cap is malformed ({exc!r}); re-fit it with `lpbf-edge train grain-cap`") from exc
        if len(cap.weights) != n_features():
            raise ValueError(f"manifest grain_cap has {len(cap.weights)} weights, this version computes {n_features()} "
                             "features; re-fit it with `lpbf-edge train grain-cap`")
        return cap


def n_features() -> int:
    """Length of lr_features()."""
    return len(BAND_EDGES) - 1 + 2


@functools.lru_cache(maxsize=8)
def _spectral_layout(h: int, w: int) -> tuple[np.ndarray, float, tuple[np.ndarray, ...]]:
    """(Hann window, its power normaliser, radial band masks) of an h x w window: the same for every window of a layer."""
    win = np.outer(np.hanning(h), np.hanning(w))
    r = np.sqrt(np.fft.fftfreq(w)[None, :] ** 2 + np.fft.fftfreq(h)[:, None] ** 2) / 0.5
    masks = tuple((r > lo) & (r <= hi) for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:]))
    return win, h * w / win.sum() ** 2, masks


def lr_features(lr: np.ndarray) -> np.ndarray:
    """Hann-windowed log band energies of an LR window (gray levels), plus its mean/128 and log std."""
    x = np.asarray(lr, dtype=np.float64)
    win, norm, masks = _spectral_layout(*x.shape)
    spec = np.abs(np.fft.fft2((x - x.mean()) * win)) ** 2 * norm
    bands = [spec[m].mean() if m.any() else 0.0 for m in masks]
    return np.concatenate([np.log(np.asarray(bands) + ENERGY_FLOOR), [x.mean() / 128.0, np.log(x.std() + 0.5)]])


def split_detail(hr: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(base, detail) float32 of an HR image: Gaussian low-pass and the rest."""
    x = np.asarray(hr, dtype=np.float32)
    base = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    return base, x - base


def detail_energy(hr: np.ndarray, sigma: float) -> float:
    """Mean squared detail (gray levels^2) of an HR window: the quantity the cap predicts."""
    return float(np.mean(split_detail(hr, sigma)[1].astype(np.float64) ** 2))


def fit_grain_cap(lrs: list[np.ndarray], hrs: list[np.ndarray], sigma: float = 1.5, ridge: float = 1e-2,
                  window: int | None = None) -> GrainCap:
    """Ridge fit of log detail energy of each HR window on lr_features of its LR window (uint8 pairs)."""
    if not lrs or len(lrs) != len(hrs):
        raise ValueError(f"fit_grain_cap needs matching non-empty LR/HR lists, got {len(lrs)} and {len(hrs)}")
    X = np.stack([lr_features(lr) for lr in lrs])
    y = np.log(np.array([detail_energy(hr, sigma) for hr in hrs]) + ENERGY_FLOOR)
    Xa = np.hstack([X, np.ones((len(X), 1))])
    reg = ridge * np.eye(Xa.shape[1])
    reg[-1, -1] = 0.0  # no shrinkage on the bias
    coef = np.linalg.solve(Xa.T @ Xa + reg, Xa.T @ y)
    return GrainCap(weights=tuple(float(c) for c in coef[:-1]), bias=float(coef[-1]),
                    window=int(window or lrs[0].shape[0]), split_sigma=float(sigma))


def predict_log_energy(cap: GrainCap, lr: np.ndarray) -> float:
    """Predicted log detail energy of the HR window under one LR window."""
    return float(lr_features(lr) @ np.asarray(cap.weights) + cap.bias)


def apply_grain_cap(cap: GrainCap, lr_u8: np.ndarray, hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(capped HR float32 in gray levels, gain map on the window grid) for an HR output of lr_u8 (any size).

    Windows of `cap.window` LR px at half-window stride (fewer for a small image); each gets
    gain = min(max_gain, sqrt(margin x predicted / measured detail energy)); the gain grid is interpolated bilinearly
    to HR size and multiplies the detail band.
    """
    lr = np.asarray(lr_u8)
    H, W = lr.shape
    out = np.asarray(hr, dtype=np.float32)
    if out.shape != (H * scale, W * scale):
        raise ValueError(f"grain cap: HR shape {out.shape} is not {scale} x the LR shape {lr.shape}")
    win = min(cap.window, H, W)
    step = max(1, win // 2)
    ys = _starts(H, win, step)
    xs = _starts(W, win, step)
    base, detail = split_detail(out, cap.split_sigma)
    gain = np.ones((len(ys), len(xs)), np.float32)
    s = scale
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            pred = cap.margin * (np.exp(predict_log_energy(cap, lr[y:y + win, x:x + win])) - ENERGY_FLOOR)
            d = detail[y * s:(y + win) * s, x * s:(x + win) * s].astype(np.float64)
            have = float(np.mean(d ** 2))
            gain[i, j] = min(cap.max_gain, float(np.sqrt(max(pred, 0.0) / have))) if have > 1e-6 else 1.0
    # window centres in HR px -> bilinear gain over the whole image (clamped at the borders)
    cy = (np.asarray(ys) + win / 2) * s
    cx = (np.asarray(xs) + win / 2) * s
    gy = np.interp(np.arange(H * s) + 0.5, cy, np.arange(len(ys)))
    gx = np.interp(np.arange(W * s) + 0.5, cx, np.arange(len(xs)))
    gmap = cv2.remap(gain, np.broadcast_to(gx[None, :], (H * s, W * s)).astype(np.float32),
                     np.broadcast_to(gy[:, None], (H * s, W * s)).astype(np.float32),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return base + gmap * detail, gain


def _starts(size: int, win: int, step: int) -> list[int]:
    """Window origins covering [0, size) at `step`, the last one flush with the end."""
    if size <= win:
        return [0]
    starts = list(range(0, size - win + 1, step))
    if starts[-1] != size - win:
        starts.append(size - win)
    return starts
