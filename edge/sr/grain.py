"""Grain cap: never paint more fine detail than the LR supports.

A sample's detail above the LR Nyquist frequency is the model's guess; its amount is learned from the training
mix and overshoots on cameras whose powder looks smoother than that mix (docs/sr_quality.md). Ridge regressions
from the LR window's spectrum to the HR window's detail energy in each of a few radial bands (fit on the training
split, stored in the bundle manifest as `grain_cap`) predict how much detail each region should carry at each
scale; where the output carries more in a band, that band is scaled down to the prediction. Per band, because the
model's grain has its own characteristic scale: a camera can want less at one scale and as much at another. It only
lowers detail, so a mean of samples (little detail left) passes almost unchanged. Numpy + OpenCV only: it runs
after any backend.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

BAND_EDGES = (0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.5)  # radial bands of the LR spectrum, in units of LR Nyquist
ENERGY_FLOOR = 1e-2  # gray levels^2, keeps the logs finite on flat regions
# Gaussian low-pass sigmas (HR px per unit of scale) that split an HR output into base + detail bands: at x4
# 2.0 / 1.5 / 1.0 / 0.6 px, half-amplitude at about 0.09 / 0.125 (the LR Nyquist) / 0.19 / 0.31 cycles per HR px.
DEFAULT_SIGMAS_PER_SCALE = (0.5, 0.375, 0.25, 0.15)


def default_sigmas(scale: int) -> tuple[float, ...]:
    """The detail bands' split sigmas (HR px) for an SR scale."""
    return tuple(round(s * scale, 4) for s in DEFAULT_SIGMAS_PER_SCALE)


def check_sigmas(sigmas: Sequence[float]) -> None:
    """Detail-band splits must be positive and strictly descending (coarse to fine)."""
    if not sigmas or any(a <= b for a, b in zip(sigmas, sigmas[1:], strict=False)) or sigmas[-1] <= 0:
        raise ValueError(f"grain cap sigmas must be positive and strictly descending, got {list(sigmas)}")


@dataclass(frozen=True)
class GrainCap:
    """A fitted grain-level predictor: per band, log detail energy ~ weights[b] . lr_features(window) + bias[b]."""

    weights: tuple[tuple[float, ...], ...]  # one row of n_features() per detail band
    bias: tuple[float, ...]  # one per detail band
    sigmas: tuple[float, ...] = (1.5,)  # descending Gaussian sigmas (HR px) splitting base | band 0 | band 1 | ...
    window: int = 32  # LR window side the features and the target are measured on
    max_gain: float = 1.0  # 1: only ever lower the detail
    margin: float = 1.0  # detail energy allowed = margin x predicted (the predictor's spread across cameras)
    validation: dict = field(default_factory=dict)  # fit statistics per source (docs, manifest)

    def __post_init__(self) -> None:
        """Shapes must agree: one weight row and one bias per band, sigmas strictly descending."""
        if not self.sigmas or len(self.weights) != len(self.sigmas) or len(self.bias) != len(self.sigmas):
            raise ValueError(f"grain cap has {len(self.sigmas)} bands (sigmas) but {len(self.weights)} weight rows "
                             f"and {len(self.bias)} biases")
        if any(len(w) != n_features() for w in self.weights):
            raise ValueError(f"grain cap weight rows must have {n_features()} weights (this version's features), got "
                             f"{sorted({len(w) for w in self.weights})}; re-fit it with `lpbf-edge train grain-cap`")
        check_sigmas(self.sigmas)

    @property
    def bands(self) -> int:
        """Number of detail bands."""
        return len(self.sigmas)

    def to_json(self) -> dict:
        """Plain dict for the bundle manifest."""
        d = asdict(self)
        d["weights"] = [[float(w) for w in row] for row in self.weights]
        d["bias"], d["sigmas"] = [float(b) for b in self.bias], [float(s) for s in self.sigmas]
        return d

    @classmethod
    def from_json(cls, d: dict) -> GrainCap:
        """Inverse of to_json (also reads the one-band format: flat weights, scalar bias, split_sigma); clear errors."""
        try:
            w, b = d["weights"], d["bias"]
            if w and not isinstance(w[0], (list, tuple)):  # one-band format (bundles before the per-band cap)
                w, b, sigmas = [w], [b], [d.get("split_sigma", 1.5)]
            else:
                sigmas = d.get("sigmas", [1.5])
            return cls(weights=tuple(tuple(float(x) for x in row) for row in w), bias=tuple(float(x) for x in b),
                       sigmas=tuple(float(s) for s in sigmas), window=int(d.get("window", 32)),
                       max_gain=float(d.get("max_gain", 1.0)), margin=float(d.get("margin", 1.0)),
                       validation=dict(d.get("validation", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"manifest grain_cap is malformed ({exc}); "
                             "re-fit it with `lpbf-edge train grain-cap`") from exc


def n_features() -> int:
    """Length of lr_features()."""
    return len(BAND_EDGES) - 1 + 2


@functools.lru_cache(maxsize=8)
def _spectral_layout(h: int, w: int) -> tuple[np.ndarray, float, tuple[np.ndarray, ...]]:
    """(Hann window, its power normaliser, radial band masks) of an h x w window.

    They are the same for every window of a layer."""
    win = np.outer(np.hanning(h), np.hanning(w))
    r = np.sqrt(np.fft.fftfreq(w)[None, :] ** 2 + np.fft.fftfreq(h)[:, None] ** 2) / 0.5
    masks = tuple((r > lo) & (r <= hi) for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:], strict=False))
    return win, h * w / win.sum() ** 2, masks


def lr_features(lr: np.ndarray) -> np.ndarray:
    """Hann-windowed log band energies of an LR window (gray levels), plus its mean/128 and log std."""
    x = np.asarray(lr, dtype=np.float64)
    win, norm, masks = _spectral_layout(*x.shape)
    spec = np.abs(np.fft.fft2((x - x.mean()) * win)) ** 2 * norm
    bands = [spec[m].mean() if m.any() else 0.0 for m in masks]
    return np.concatenate([np.log(np.asarray(bands) + ENERGY_FLOOR), [x.mean() / 128.0, np.log(x.std() + 0.5)]])


def _lowpasses(x: np.ndarray, sigmas: Sequence[float]) -> Iterator[np.ndarray]:
    """Gaussian low-passes of a float32 image at each sigma (coarse to fine), then the image itself, one at a time."""
    for s in sigmas:
        yield cv2.GaussianBlur(x, (0, 0), sigmaX=float(s), borderType=cv2.BORDER_REFLECT_101)
    yield x


def split_bands(hr: np.ndarray, sigmas: Sequence[float]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(base, detail bands) float32 of an HR image: base = low-pass at sigmas[0]; band k = low-pass at sigmas[k+1]
    (the image itself after the last) minus low-pass at sigmas[k]. base + sum(bands) is the image."""
    lows = list(_lowpasses(np.asarray(hr, dtype=np.float32), sigmas))
    return lows[0], [finer - coarser for coarser, finer in zip(lows, lows[1:], strict=False)]


def band_energies(hr: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """Mean squared detail (gray levels^2) of an HR window in each band: the quantities the cap predicts."""
    return np.array([np.mean(d.astype(np.float64) ** 2) for d in split_bands(hr, sigmas)[1]])


def detail_energy(hr: np.ndarray, sigma: float) -> float:
    """Mean squared detail above one Gaussian split (gray levels^2) of an HR window."""
    return float(band_energies(hr, (sigma,))[0])


def fit_grain_cap(lrs: list[np.ndarray], hrs: list[np.ndarray], sigmas: Sequence[float] = (1.5,), ridge: float = 1e-2,
                  window: int | None = None) -> GrainCap:
    """Ridge fit, per band, of the log detail energy of each HR window on lr_features of its LR window (uint8 pairs)."""
    if not lrs or len(lrs) != len(hrs):
        raise ValueError(f"fit_grain_cap needs matching non-empty LR/HR lists, got {len(lrs)} and {len(hrs)}")
    X = np.stack([lr_features(lr) for lr in lrs])
    Y = np.log(np.stack([band_energies(hr, sigmas) for hr in hrs]) + ENERGY_FLOOR)
    Xa = np.hstack([X, np.ones((len(X), 1))])
    reg = ridge * np.eye(Xa.shape[1])
    reg[-1, -1] = 0.0  # no shrinkage on the bias
    coef = np.linalg.solve(Xa.T @ Xa + reg, Xa.T @ Y)  # [features + 1, bands]
    return GrainCap(weights=tuple(tuple(float(c) for c in coef[:-1, b]) for b in range(Y.shape[1])),
                    bias=tuple(float(c) for c in coef[-1]), sigmas=tuple(float(s) for s in sigmas),
                    window=int(window or lrs[0].shape[0]))


def predict_log_energy(cap: GrainCap, lr: np.ndarray) -> np.ndarray:
    """Predicted log detail energy of the HR window under one LR window, per band."""
    return lr_features(lr) @ np.asarray(cap.weights).T + np.asarray(cap.bias)


def apply_grain_cap(cap: GrainCap, lr_u8: np.ndarray, hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(capped HR float32 in gray levels, gain maps [bands, window rows, window cols]) for an HR output of lr_u8.

    Windows of `cap.window` LR px at half-window stride (fewer for a small image); in each window and band,
    gain = min(max_gain, sqrt(margin x predicted / measured band energy)); each band's gain grid is interpolated
    bilinearly to HR size and multiplies that band. Bands are made and applied one at a time, so a large plate
    holds about six HR-sized float32 arrays whatever the number of bands.
    """
    lr = np.asarray(lr_u8)
    H, W = lr.shape
    x = np.asarray(hr, dtype=np.float32)
    if x.shape != (H * scale, W * scale):
        raise ValueError(f"grain cap: HR shape {x.shape} is not {scale} x the LR shape {lr.shape}")
    win = min(cap.window, H, W)
    step = max(1, win // 2)
    ys, xs = np.asarray(_starts(H, win, step)), np.asarray(_starts(W, win, step))
    pred = np.stack([np.stack([np.exp(predict_log_energy(cap, lr[y:y + win, c:c + win])) for c in xs]) for y in ys])
    pred = cap.margin * (pred.transpose(2, 0, 1) - ENERGY_FLOOR)  # [bands, rows, cols]
    # bilinear interpolation from window centres to HR pixels (clamped at the borders) as two small matrices
    ry = _interp_matrix(H * scale, (ys + win / 2) * scale)
    rx = _interp_matrix(W * scale, (xs + win / 2) * scale)
    gain = np.ones((cap.bands, len(ys), len(xs)), np.float32)
    lows = _lowpasses(x, cap.sigmas)
    low = next(lows)
    out = low.copy()
    for b, finer in enumerate(lows):
        d = finer - low
        # mean squared detail per LR pixel (exact block means), then per window from its integral image
        e = cv2.integral(cv2.resize(d * d, (W, H), interpolation=cv2.INTER_AREA).astype(np.float64))
        have = (e[ys + win][:, xs + win] - e[ys][:, xs + win] - e[ys + win][:, xs] + e[ys][:, xs]) / win ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            gain[b] = np.where(have > 1e-6, np.minimum(cap.max_gain, np.sqrt(np.maximum(pred[b], 0.0) / have)), 1.0)
        out += (ry @ gain[b] @ rx.T) * d
        low = finer
    return out, gain


def _interp_matrix(n: int, centres: np.ndarray) -> np.ndarray:
    """[n, len(centres)] float32 weights of linear interpolation at pixel centres 0.5..n-0.5, clamped at the ends."""
    pos = np.interp(np.arange(n) + 0.5, centres, np.arange(len(centres)))
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, len(centres) - 1)
    f = (pos - i0).astype(np.float32)
    m = np.zeros((n, len(centres)), np.float32)
    np.add.at(m, (np.arange(n), i0), 1 - f)
    np.add.at(m, (np.arange(n), i1), f)
    return m


def _starts(size: int, win: int, step: int) -> list[int]:
    """Window origins covering [0, size) at `step`, the last one flush with the end."""
    if size <= win:
        return [0]
    starts = list(range(0, size - win + 1, step))
    if starts[-1] != size - win:
        starts.append(size - win)
    return starts


# --- grain descriptor: what the denoiser is conditioned on (measured once per image from the LR) -----------------

DESCRIPTOR_WINDOW = 32  # LR px: the window the descriptor's statistics are measured on (median over windows)
DESCRIPTOR_MAX_WINDOWS = 256  # windows used at most per image (evenly spread); keeps a whole plate cheap
DESCRIPTOR_BANDS = (0.25, 0.5, 0.75, 1.5)  # radial LR-spectrum bands (units of LR Nyquist) whose log energies enter
DESCRIPTOR_NAMES = ("log_energy_0.25_0.5", "log_energy_0.5_0.75", "log_energy_0.75_nyq", "log_std", "mean",
                    "orient_cos_fine", "orient_sin_fine", "orient_cos_coarse", "orient_sin_coarse", "log_kurt_hp")


def descriptor_size() -> int:
    """Length of grain_descriptor()."""
    return len(DESCRIPTOR_NAMES)


@functools.lru_cache(maxsize=8)
def _descriptor_masks(h: int, w: int) -> tuple[np.ndarray, ...]:
    """Radial masks of DESCRIPTOR_BANDS for an h x w window."""
    r = np.sqrt(np.fft.fftfreq(w)[None, :] ** 2 + np.fft.fftfreq(h)[:, None] ** 2) / 0.5
    return tuple((r > lo) & (r <= hi) for lo, hi in zip(DESCRIPTOR_BANDS[:-1], DESCRIPTOR_BANDS[1:], strict=False))


def _orientation(gx: np.ndarray, gy: np.ndarray) -> tuple[float, float]:
    """Structure-tensor orientation of a gradient field: coherence x (cos 2 theta, sin 2 theta)."""
    jxx, jyy, jxy = float(np.mean(gx * gx)), float(np.mean(gy * gy)), float(np.mean(gx * gy))
    tr = jxx + jyy + 1e-3
    return (jxx - jyy) / tr, 2.0 * jxy / tr


def _window_starts(h: int, w: int, win: int) -> list[tuple[int, int]]:
    """Window origins at half-window stride, evenly thinned to DESCRIPTOR_MAX_WINDOWS."""
    step = max(1, win // 2)
    pos = [(y, x) for y in _starts(h, win, step) for x in _starts(w, win, step)]
    if len(pos) > DESCRIPTOR_MAX_WINDOWS:
        pos = [pos[i] for i in np.linspace(0, len(pos) - 1, DESCRIPTOR_MAX_WINDOWS).astype(int)]
    return pos


def _image_windows(lr: np.ndarray, win: int) -> list[list[float]]:
    """Per-window descriptor rows of one LR image (gray levels)."""
    x = np.asarray(lr, dtype=np.float32)
    h, w = x.shape
    hp = x - cv2.GaussianBlur(x, (0, 0), sigmaX=1.0, borderType=cv2.BORDER_REFLECT_101)
    gy, gx = (np.asarray(g) for g in np.gradient(x))
    cy, cx = (np.asarray(g) for g in np.gradient(cv2.GaussianBlur(x, (0, 0), sigmaX=1.5,
                                                                    borderType=cv2.BORDER_REFLECT_101)))
    hann, norm, _ = _spectral_layout(win, win)
    masks = _descriptor_masks(win, win)
    rows = []
    for y, c in _window_starts(h, w, win):
        s = np.s_[y:y + win, c:c + win]
        v = x[s].astype(np.float64)
        spec = np.abs(np.fft.fft2((v - v.mean()) * hann)) ** 2 * norm
        e = [np.log(spec[m].mean() + ENERGY_FLOOR) for m in masks]
        h2 = float(np.mean(hp[s].astype(np.float64) ** 2))
        kurt = float(np.mean(hp[s].astype(np.float64) ** 4)) / h2 ** 2 if h2 > 1e-4 else 3.0
        rows.append([*e, np.log(v.std() + 0.5), v.mean() / 128.0, *_orientation(gx[s], gy[s]),
                     *_orientation(cx[s], cy[s]), np.log(kurt)])
    return rows


def _gray_frames(lr: np.ndarray | Sequence[np.ndarray], who: str) -> list[np.ndarray]:
    """One LR image or several frames of one camera as a list of 2-D arrays; clear errors naming `who`."""
    frames = [np.asarray(lr)] if isinstance(lr, np.ndarray) else [np.asarray(f) for f in lr]
    if not frames:
        raise ValueError(f"{who}: no images given")
    for a in frames:
        if a.ndim != 2 or min(a.shape) < 8:
            raise ValueError(f"{who}: need 2-D gray images of at least 8x8 px, got shape {a.shape}")
    return frames


def grain_descriptor(lr: np.ndarray | Sequence[np.ndarray], window: int = DESCRIPTOR_WINDOW) -> np.ndarray:
    """The grain descriptor of one LR image (uint8 gray) or of several frames of one camera (the printer's
    baseline frames): per window of `window` LR px, log energies of three radial bands of the spectrum, log std,
    mean, the structure-tensor orientation (coherence x cos / sin of twice the angle) at two scales and the log
    kurtosis of the high-pass; the median over all windows (DESCRIPTOR_NAMES order, float32)."""
    rows = []
    for a in _gray_frames(lr, "grain_descriptor"):
        rows += _image_windows(a, min(window, *a.shape))
    return np.median(np.asarray(rows, np.float64), axis=0).astype(np.float32)


# --- detail condition: the grain cap's per-band detail level as the denoiser's condition ---------------------------
#
# The LR descriptor above carries nothing the LR latent does not, so a denoiser trained on it learns to ignore it
# (docs/sr_quality.md: +-10-15 % of detail for a 20x descriptor shift). The detail condition instead tells the
# denoiser how much detail to paint in each of the grain cap's bands: in training it is measured on the ground-truth
# HR (so it carries what the LR does not, e.g. the grain-gain augmentation), at inference it is the cap's ridge
# prediction from the LR. The same statistic both ways: the median over the cap's windows of the log band energy.

DETAIL_SOURCE = "detail"  # GrainCondition.source of a detail-conditioned bundle ("lr": grain_descriptor)


def detail_names(bands: int) -> tuple[str, ...]:
    """Names of the detail condition's entries (one log energy per grain-cap band)."""
    return tuple(f"log_detail_band{b}" for b in range(bands))


def detail_condition_hr(cap: GrainCap, hr: np.ndarray, scale: int) -> np.ndarray:
    """The detail condition measured on a ground-truth HR image (training): per window of cap.window LR px
    (cap.window x scale HR px) at half-window stride, log(band energies + floor); the median over windows [bands]."""
    x = np.asarray(hr, dtype=np.float32)
    win = min(cap.window * scale, *x.shape)
    pos = _window_starts(x.shape[0], x.shape[1], win)
    rows = [np.log(band_energies(x[y:y + win, c:c + win], cap.sigmas) + ENERGY_FLOOR) for y, c in pos]
    return np.median(np.asarray(rows), axis=0).astype(np.float32)


def detail_condition_lr(cap: GrainCap, lr: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """The detail condition predicted from LR image(s) (inference; several = the printer's baseline frames): the
    cap's ridge prediction per window of cap.window LR px at half-window stride; the median over windows [bands]."""
    rows = []
    for a in _gray_frames(lr, "detail_condition_lr"):
        win = min(cap.window, *a.shape)
        h, w = a.shape
        rows += [predict_log_energy(cap, a[y:y + win, c:c + win]) for y, c in _window_starts(h, w, win)]
    return np.median(np.asarray(rows), axis=0).astype(np.float32)


@dataclass(frozen=True)
class GrainCondition:
    """Descriptor -> per-channel offset of the denoiser's condition: weight @ ((d - mean) / std) + bias.

    Stored in the bundle manifest as `grain_condition`; the runtime adds the offset to every tile's condition
    (after lr_encoder), so no graph changes. Trained with the denoiser (edge.models.GrainOffset)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    weight: tuple[tuple[float, ...], ...]  # [latent channels][descriptor_size()]
    bias: tuple[float, ...]
    window: int = DESCRIPTOR_WINDOW
    names: tuple[str, ...] = DESCRIPTOR_NAMES
    source: str = "lr"  # "lr": grain_descriptor of the LR; DETAIL_SOURCE: the grain cap's detail level

    def __post_init__(self) -> None:
        """Shapes must agree with this version's descriptor (or, for the detail source, with its own band names)."""
        if self.source not in ("lr", DETAIL_SOURCE):
            raise ValueError(f"grain condition source must be 'lr' or {DETAIL_SOURCE!r}, got {self.source!r}")
        names = DESCRIPTOR_NAMES if self.source == "lr" else detail_names(len(self.names))
        d = len(names)
        if tuple(self.names) != names or len(self.mean) != d or len(self.std) != d \
                or any(len(r) != d for r in self.weight) or len(self.bias) != len(self.weight):
            raise ValueError(f"grain condition ({self.source}) does not match this version's descriptor ({d} features "
                             f"{list(names)}); got names {list(self.names)}, {len(self.mean)} means, "
                             f"weight rows of {sorted({len(r) for r in self.weight})}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"grain condition std must be > 0, got {list(self.std)}")

    def offset(self, descriptor: np.ndarray) -> np.ndarray:
        """Per-channel condition offset [C] float32 for one descriptor."""
        z = (np.asarray(descriptor, np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return (np.asarray(self.weight) @ z + np.asarray(self.bias)).astype(np.float32)

    def to_json(self) -> dict:
        """Plain dict for the bundle manifest."""
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "weight": [[float(v) for v in r] for r in self.weight], "bias": [float(v) for v in self.bias],
                "window": int(self.window), "names": list(self.names), "source": self.source}

    @classmethod
    def from_json(cls, d: dict) -> GrainCondition:
        """Inverse of to_json; a clear error for a malformed entry."""
        try:
            return cls(mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]),
                       weight=tuple(tuple(float(v) for v in r) for r in d["weight"]),
                       bias=tuple(float(v) for v in d["bias"]), window=int(d.get("window", DESCRIPTOR_WINDOW)),
                       names=tuple(d.get("names", DESCRIPTOR_NAMES)), source=str(d.get("source", "lr")))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"manifest grain_condition is malformed ({exc!r})") from exc
