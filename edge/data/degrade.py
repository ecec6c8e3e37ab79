"""HR -> LR degradation models: the paper's recipe and a randomly shuffled blur/resize/noise/JPEG chain."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_RESIZE_MODES = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}


def _check_mono_u8(img: np.ndarray, what: str = "image") -> None:
    """Raise ValueError unless `img` is a non-empty 2-D uint8 array."""
    if not isinstance(img, np.ndarray):
        raise ValueError(f"{what}: expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"{what}: expected 8-bit (uint8) pixels, got {img.dtype}")
    if img.ndim != 2 or min(img.shape) < 1:
        raise ValueError(f"{what}: expected a 2-D grayscale image, got shape {img.shape}")


def opencv_default_sigma(k: int) -> float:
    """Sigma OpenCV derives for an odd Gaussian kernel of size k when sigma is 0."""
    return 0.3 * ((k - 1) * 0.5 - 1) + 0.8


def paper_degrade(hr: np.ndarray, n: float = 4, k: int = 3, sigma: float | None = None) -> np.ndarray:
    """Ogoke et al. synthetic LR: area downsample by n (size round(size/n)), then Gaussian blur of kernel k."""
    _check_mono_u8(hr, "paper_degrade input")
    if n <= 0:
        raise ValueError(f"paper_degrade: downsample factor n must be > 0, got {n}")
    if k < 1 or k % 2 == 0:
        raise ValueError(f"paper_degrade: blur kernel k must be a positive odd integer, got {k}")
    h, w = hr.shape
    out_w, out_h = max(1, int(round(w / n))), max(1, int(round(h / n)))
    lr = cv2.resize(hr, (out_w, out_h), interpolation=cv2.INTER_AREA)
    if k > 1:
        s = opencv_default_sigma(k) if sigma is None else float(sigma)
        lr = cv2.GaussianBlur(lr, (k, k), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT_101)
    return lr


def scale_fine_detail(hr: np.ndarray, gain: float, scale: int = 4) -> np.ndarray:
    """HR with its detail above about the LR Nyquist frequency multiplied by `gain` (grain-contrast augmentation).

    The split is a Gaussian low-pass of sigma 0.375 * scale HR pixels (half amplitude at the LR Nyquist frequency);
    the LR is then made from the result, so the LR keeps the footprint the changed grain leaves in it.
    """
    _check_mono_u8(hr, "scale_fine_detail input")
    if gain < 0:
        raise ValueError(f"scale_fine_detail: gain must be >= 0, got {gain}")
    x = hr.astype(np.float32)
    low = cv2.GaussianBlur(x, (0, 0), sigmaX=0.375 * scale, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(np.rint(low + gain * (x - low)), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DegradeConfig:
    """Ranges of the shuffled degradation; blur sigmas are in HR pixels, noise sigma in 8-bit grey levels."""

    blur_prob: float = 0.9
    aniso_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 3.0)
    resize_modes: tuple[str, ...] = ("bilinear", "bicubic", "area")
    intermediate_prob: float = 0.5
    intermediate_scale: tuple[float, float] = (0.3, 1.0)
    noise_prob: float = 0.8
    noise_sigma: tuple[float, float] = (1.0, 8.0)
    jpeg_prob: float = 0.8
    jpeg_quality: tuple[int, int] = (35, 95)

    def __post_init__(self) -> None:
        """Validate ranges so a bad setting fails at construction, not mid-dataset."""
        for name in ("blur_prob", "aniso_prob", "intermediate_prob", "noise_prob", "jpeg_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"DegradeConfig.{name} must be in [0, 1], got {p}")
        for name in ("blur_sigma", "intermediate_scale", "noise_sigma", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ValueError(f"DegradeConfig.{name} must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"DegradeConfig.jpeg_quality must lie in [1, 100], got {self.jpeg_quality}")
        bad = [m for m in self.resize_modes if m not in _RESIZE_MODES]
        if bad or not self.resize_modes:
            raise ValueError(f"DegradeConfig.resize_modes must be a non-empty subset of {sorted(_RESIZE_MODES)}, got "
                             f"{self.resize_modes}")


def anisotropic_gaussian_kernel(sigma_x: float, sigma_y: float, theta: float, size: int | None = None) -> np.ndarray:
    """Normalised 2-D Gaussian kernel with principal sigmas (sigma_x, sigma_y) rotated by theta radians."""
    if size is None:
        size = 2 * int(np.ceil(3 * max(sigma_x, sigma_y))) + 1
    r = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(r, r)
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / max(sigma_x, 1e-3)) ** 2 + (v / max(sigma_y, 1e-3)) ** 2))
    return (k / k.sum()).astype(np.float32)


def _blur(img: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig, px_scale: float) -> np.ndarray:
    """Isotropic or anisotropic Gaussian blur; sigmas drawn in HR pixels, applied at the current size."""
    lo, hi = cfg.blur_sigma
    if rng.random() < cfg.aniso_prob:
        sx, sy = rng.uniform(lo, hi, size=2) * px_scale
        theta = rng.uniform(0, np.pi)
        kern = anisotropic_gaussian_kernel(max(sx, 0.05), max(sy, 0.05), theta)
    else:
        s = max(rng.uniform(lo, hi) * px_scale, 0.05)
        kern = anisotropic_gaussian_kernel(s, s, 0.0)
    return cv2.filter2D(img, -1, kern, borderType=cv2.BORDER_REFLECT_101)


def _resize(img: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig, target_hw: tuple[int, int]) -> np.ndarray:
    """Resize to target size with a random kernel, optionally via a random intermediate size."""
    th, tw = target_hw
    if rng.random() < cfg.intermediate_prob:
        f = rng.uniform(*cfg.intermediate_scale)
        h, w = img.shape[:2]
        ih, iw = max(th, int(round(h * f))), max(tw, int(round(w * f)))
        mode = cfg.resize_modes[rng.integers(len(cfg.resize_modes))]
        img = cv2.resize(img, (iw, ih), interpolation=_RESIZE_MODES[mode])
    mode = cfg.resize_modes[rng.integers(len(cfg.resize_modes))]
    return cv2.resize(img, (tw, th), interpolation=_RESIZE_MODES[mode])


def _noise(img: np.ndarray, rng: np.random.Generator, cfg: DegradeConfig) -> np.ndarray:
    """Additive Gaussian noise, clipped back to uint8."""
    sigma = rng.uniform(*cfg.noise_sigma)
    out = img.astype(np.float32) + rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at `quality` and decode again (grayscale)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for an image of shape {img.shape}")
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def shuffled_degrade(
    hr: np.ndarray, scale: int, rng: np.random.Generator, cfg: DegradeConfig | None = None
) -> np.ndarray:
    """Random-order blur / resize / noise / JPEG chain ending at exactly (H // scale, W // scale)."""
    _check_mono_u8(hr, "shuffled_degrade input")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"shuffled_degrade: scale must be a positive integer, got {scale}")
    cfg = cfg or DegradeConfig()
    h, w = hr.shape
    target = (h // scale, w // scale)
    if min(target) < 1:
        raise ValueError(f"shuffled_degrade: image {hr.shape} is smaller than scale {scale}")
    ops = ["blur", "resize", "noise", "jpeg"]
    order = [ops[i] for i in rng.permutation(len(ops))]
    img = hr
    for op in order:
        if op == "resize":
            img = _resize(img, rng, cfg, target)
        elif op == "blur" and rng.random() < cfg.blur_prob:
            img = _blur(img, rng, cfg, px_scale=img.shape[1] / w)
        elif op == "noise" and rng.random() < cfg.noise_prob:
            img = _noise(img, rng, cfg)
        elif op == "jpeg" and rng.random() < cfg.jpeg_prob:
            img = jpeg_roundtrip(img, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    assert img.shape == target and img.dtype == np.uint8
    return img
