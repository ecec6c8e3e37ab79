"""Image-quality metrics of the paper: MAE, PSNR, SSIM, wavelet phase-harmonic covariance distance (CVD), HF energy."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DATA_RANGE = 255.0


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two same-shape 2-D float64 images, or a ValueError naming the mismatch."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"metrics need two 2-D images of the same shape, got {a.shape} and {b.shape}")
    return a, b


def mae(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute error in grey levels."""
    a, b = _pair(a, b)
    return float(np.mean(np.abs(a - b)))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """Peak signal-to-noise ratio in dB (skimage); inf for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pair(a, b)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=data_range))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """Structural similarity (skimage, Gaussian window sigma 1.5 as in Wang et al. 2004)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    return float(
        structural_similarity(a, b, data_range=data_range, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
    )


def hf_energy_ratio(img: np.ndarray, ref: np.ndarray, cutoff: float = 0.25) -> float:
    """Spectral energy above `cutoff` x Nyquist of `img` divided by that of `ref` (1 = same fine detail)."""
    img, ref = _pair(img, ref)

    def hf(x: np.ndarray) -> float:
        f = np.fft.fftshift(np.abs(np.fft.fft2(x - x.mean())) ** 2)
        fy = np.fft.fftshift(np.fft.fftfreq(x.shape[0]))[:, None]
        fx = np.fft.fftshift(np.fft.fftfreq(x.shape[1]))[None, :]
        r = np.sqrt(fx**2 + fy**2) / 0.5  # 1.0 = Nyquist
        return float(f[r > cutoff].sum())

    den = hf(ref)
    return float(hf(img) / den) if den > 0 else float("nan")


class _InProcessPool:
    """What pywph asks of multiprocessing.Pool (map, close, join), run in this process.

    pywph 1.1 builds its wavelet filters in a fork()ed Pool and never joins it. Forking a process whose torch,
    OpenVINO and ONNX Runtime threads are running can leave a child stuck on a lock it inherited (Python's
    multiprocessing docs warn of exactly this); the unjoined pool then hangs whoever collects it (the test suite
    lost 10 minutes to one such child). The filters of the small operators used here take milliseconds in-process.
    """

    def __init__(self, processes: int | None = None):
        self.processes = processes

    def map(self, fn, items):
        return [fn(x) for x in items]

    def close(self) -> None:
        """Nothing to release."""

    def join(self) -> None:
        """Nothing to wait for."""


@lru_cache(maxsize=4)
def _wph_op(size: int, j: int, l_angles: int, dn: int):
    """A cached pywph operator (bump-steerable wavelets) on the CPU, its filters built without forking."""
    import types

    import pywph
    import pywph.wph_operator as wph_module

    saved = wph_module.mp
    wph_module.mp = types.SimpleNamespace(Pool=_InProcessPool)
    try:
        return pywph.WPHOp(size, size, J=j, L=l_angles, dn=dn, device="cpu")
    finally:
        wph_module.mp = saved


@dataclass(frozen=True)
class CVDSettings:
    """Phase-harmonic settings: working size (paper: 512), scales J, angles L, spatial shifts dn."""

    size: int = 512
    j: int = 0  # 0 -> log2(size) - 2
    l_angles: int = 4
    dn: int = 0


def wph_coeffs(img: np.ndarray, settings: CVDSettings = CVDSettings()) -> np.ndarray:
    """Wavelet phase-harmonic covariance coefficients (pywph) of an image resized to settings.size."""
    import cv2

    x = np.asarray(img, dtype=np.float32)
    if x.ndim != 2 or min(x.shape) < 2:
        raise ValueError(f"CVD needs a 2-D image, got shape {x.shape}")
    if x.shape != (settings.size, settings.size):
        x = cv2.resize(x, (settings.size, settings.size), interpolation=cv2.INTER_CUBIC)
    x = (x - x.mean()) / DATA_RANGE
    j = settings.j or max(1, int(np.log2(settings.size)) - 2)
    op = _wph_op(settings.size, j, settings.l_angles, settings.dn)
    coeffs = op.apply(x.astype(np.float64), norm=None)
    return np.asarray(coeffs.cpu().numpy() if hasattr(coeffs, "cpu") else coeffs).ravel()


def cvd(img: np.ndarray, ref: np.ndarray, settings: CVDSettings = CVDSettings()) -> tuple[float, float]:
    """(CVD, normalised CVD): ||phi(img) - phi(ref)||_2 and that divided by ||phi(ref)||_2."""
    _pair(img, ref)
    a, b = wph_coeffs(img, settings), wph_coeffs(ref, settings)
    d = float(np.linalg.norm(a - b))
    nb = float(np.linalg.norm(b))
    return d, (d / nb if nb > 0 else float("nan"))


def patch_metrics(img: np.ndarray, ref: np.ndarray, cvd_settings: CVDSettings | None = None) -> dict[str, float]:
    """All metrics of one image against its reference (CVD only when settings are given)."""
    out = {"mae": mae(img, ref), "psnr": psnr(img, ref), "ssim": ssim(img, ref), "hf_ratio": hf_energy_ratio(img, ref)}
    if cvd_settings is not None:
        out["cvd"], out["cvd_norm"] = cvd(img, ref, cvd_settings)
    return out
