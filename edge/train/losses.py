"""Training losses that need no pretrained weights: hinge GAN, FFT amplitude, Haar wavelet statistics."""

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
