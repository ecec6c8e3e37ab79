"""Training losses that need no pretrained weights.

Hinge GAN, FFT amplitude, radial log power, Haar wavelet statistics, oriented and high-pass grain statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss (Lim & Ye 2017): E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: -E[D(G(z))]."""
    return -fake_logits.mean()


def fft_amplitude_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between log(1 + |FFT|) amplitude spectra: penalises missing (or excess) high-frequency energy."""
    fx = torch.log1p(torch.fft.rfft2(x.float(), norm="ortho").abs())
    fy = torch.log1p(torch.fft.rfft2(y.float(), norm="ortho").abs())
    return (fx - fy).abs().mean()


def radial_log_power(x: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """Per-image log mean power in `bins` rings of radial frequency (0..Nyquist) of [B,1,H,W] -> [B, bins]."""
    x = x.float() - x.float().mean(dim=(-2, -1), keepdim=True)
    p = torch.fft.rfft2(x, norm="ortho").abs().pow(2)[:, 0]  # [B, H, W//2+1]
    fy = torch.fft.fftfreq(x.shape[-2], device=x.device)[:, None]
    fx = torch.fft.rfftfreq(x.shape[-1], device=x.device)[None, :]
    ring = ((fx.pow(2) + fy.pow(2)).sqrt() / 0.5 * bins).long().clamp(max=bins - 1).flatten()  # [H*(W//2+1)]
    total = torch.zeros(p.shape[0], bins, device=x.device).index_add_(1, ring, p.flatten(1))
    count = torch.bincount(ring, minlength=bins).clamp(min=1).to(p.dtype)
    return torch.log(total / count + 1e-8)


def spectrum_loss(x: torch.Tensor, y: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """L1 between radial log power spectra: every frequency ring counts the same, so missing fine texture is costly."""
    return (radial_log_power(x, bins) - radial_log_power(y, bins)).abs().mean()


def haar_bands(x: torch.Tensor, levels: int = 2) -> list[torch.Tensor]:
    """Detail sub-bands (LH, HL, HH per level) of an orthonormal Haar transform of [B,1,H,W]."""
    bands = []
    a = x
    for _ in range(levels):
        if a.shape[-1] < 2 or a.shape[-2] < 2:
            break
        a = a[..., : a.shape[-2] // 2 * 2, : a.shape[-1] // 2 * 2]
        p, q = a[..., 0::2, 0::2], a[..., 0::2, 1::2]
        r, s = a[..., 1::2, 0::2], a[..., 1::2, 1::2]
        bands += [(p + q - r - s) / 2, (p - q + r - s) / 2, (p - q - r + s) / 2]
        a = (p + q + r + s) / 2
    return bands


def wavelet_stats(x: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """Per-image texture statistics [B, 3*levels*3]: std, mean |.| and kurtosis proxy of each Haar detail band."""
    feats = []
    for b in haar_bands(x, levels):
        flat = b.flatten(1)
        std = flat.std(dim=1) + 1e-6
        feats += [std, flat.abs().mean(dim=1), (flat.pow(4).mean(dim=1) / std.pow(4)).clamp(max=50.0).sqrt()]
    return torch.stack(feats, dim=1)


def wavelet_stats_loss(x: torch.Tensor, y: torch.Tensor, levels: int = 2) -> torch.Tensor:
    """L1 between the Haar wavelet statistics of x and y (a texture term in the spirit of Portilla & Simoncelli)."""
    return (wavelet_stats(x, levels) - wavelet_stats(y, levels)).abs().mean()


ORIENT_ANGLES = 8  # steering directions over [0, pi)


def oriented_stats(x: torch.Tensor, scales: tuple[int, ...] = (1, 2, 4)) -> torch.Tensor:
    """Per-image orientation statistics [B, 2 * angles * scales] of [B,1,H,W]: at each scale (box-averaged by 1, 2, 4)
    and steering direction theta_k, the log energy of the directional derivative cos(theta_k) d/dx + sin(theta_k) d/dy
    and its log kurtosis (sparkle vs Gaussian grain). Streaks, scan tracks and elongated grain show as energy
    concentrated in a few directions; an isotropic grain spreads it evenly."""
    theta = torch.arange(ORIENT_ANGLES, dtype=x.dtype, device=x.device) * (torch.pi / ORIENT_ANGLES)
    c, s = torch.cos(theta).view(1, -1, 1, 1), torch.sin(theta).view(1, -1, 1, 1)
    feats = []
    for k in scales:
        a = F.avg_pool2d(x.float(), k) if k > 1 else x.float()
        if min(a.shape[-2:]) < 3:
            break
        gx = a[..., 1:-1, 2:] - a[..., 1:-1, :-2]
        gy = a[..., 2:, 1:-1] - a[..., :-2, 1:-1]
        d = (c * gx + s * gy).flatten(2)  # [B, angles, pixels]
        e = d.pow(2).mean(-1) + 1e-6
        feats += [torch.log(e), torch.log(d.pow(4).mean(-1) / e.pow(2) + 1e-6)]
    return torch.cat(feats, dim=1)


def orientation_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between the oriented statistics of x and y: every direction's energy and tail weight must match the target's
    (no pretrained network); an orientation-aware texture term for the autoencoders."""
    return (oriented_stats(x) - oriented_stats(y)).abs().mean()


def gaussian_highpass(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """[B,1,H,W] minus its Gaussian blur of `sigma` px (reflect padding): the issue-20 high-pass."""
    r = max(1, int(round(3 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32, device=x.device).pow(2) / (2 * sigma ** 2))
    k = (k / k.sum()).to(x.dtype)
    blur = F.pad(x, (r, r, r, r), mode="reflect")
    blur = F.conv2d(F.conv2d(blur, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return x - blur


def highpass_log_kurtosis(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Per-image log kurtosis of the Gaussian high-pass [B]: log 3 for Gaussian grain, larger with sparkle."""
    h = gaussian_highpass(x.float(), sigma).flatten(1)
    h = h - h.mean(1, keepdim=True)
    v = h.pow(2).mean(1) + 1e-8
    return torch.log(h.pow(4).mean(1) / v.pow(2) + 1e-6)


def grain_texture_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Texture of decoded samples x against their ground truth y, both [B,1,H,W]: the high-pass log kurtosis
    (sparkle), the oriented energy and tail weight at three scales (streaks) and the radial log spectrum (amount
    of grain per scale). Statistics only, so a sample need not put its grains where the truth has them."""
    kurt = (highpass_log_kurtosis(x) - highpass_log_kurtosis(y)).abs().mean()
    return kurt + orientation_loss(x, y) + spectrum_loss(x, y)
