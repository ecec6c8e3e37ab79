"""Pixel-space x`scale` regression CNN: bicubic plus a learned residual.

Its output is the estimate the denoiser is conditioned on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_PIXEL_ARCH = {"channels": 48, "blocks": 6, "scale": 4}


class PixelRegressor(nn.Module):
    """LR [B,1,h,w] in [-1,1] -> HR [B,1,sh,sw]: bicubic upsampling plus residual conv blocks and a pixel shuffle."""

    def __init__(self, arch: dict | None = None) -> None:
        """Build from {'channels', 'blocks', 'scale'}; the residual head starts at zero (training starts at bicubic)."""
        super().__init__()
        self.arch = {**DEFAULT_PIXEL_ARCH, **(arch or {})}
        extra = set(self.arch) - set(DEFAULT_PIXEL_ARCH)
        if extra:
            raise ValueError(f"pixel regressor arch: unknown keys {sorted(extra)}; allowed "
                             f"{sorted(DEFAULT_PIXEL_ARCH)}")
        ch, s = int(self.arch["channels"]), int(self.arch["scale"])
        self.scale = s
        self.head = nn.Conv2d(1, ch, 3, padding=1)
        self.body = nn.ModuleList([nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(),
                                                 nn.Conv2d(ch, ch, 3, padding=1))
                                                 for _ in range(int(self.arch["blocks"]))])
        self.tail = nn.Sequential(nn.Conv2d(ch, s * s, 3, padding=1), nn.PixelShuffle(s))
        nn.init.zeros_(self.tail[0].weight)
        nn.init.zeros_(self.tail[0].bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """HR estimate in [-1,1] (unclipped)."""
        h = self.head(lr)
        x = h
        for block in self.body:
            x = x + block(x)
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.tail(x + h)


def estimate_mix(channels: int) -> nn.Conv2d:
    """3x3 conv that maps the estimate's HR latent into the condition's channels; zero at start (no effect)."""
    mix = nn.Conv2d(channels, channels, 3, padding=1)
    nn.init.zeros_(mix.weight)
    nn.init.zeros_(mix.bias)
    return mix


class EstimateCondEncoder(nn.Module):
    """The bundle's lr_encoder for an estimate-conditioned denoiser: lr -> lr_enc(lr) + mix(hr_enc(pixel(lr))).

    The condition keeps the LR latent's channel count, so every runner, fused graph and engine is unchanged.
    `hr_enc` is the bundle's hr_encoder module, held by reference (not a submodule) so its weights are not stored
    twice: lr_encoder.safetensors holds the LR encoder, the pixel regressor and the mix only.
    """

    def __init__(self, lr_enc: nn.Module, hr_enc: nn.Module, pixel: PixelRegressor, mix: nn.Conv2d) -> None:
        """Compose the parts."""
        super().__init__()
        self.lr_enc, self.pixel, self.mix = lr_enc, pixel, mix
        object.__setattr__(self, "_hr_enc", hr_enc.requires_grad_(False))  # inference/export only: a frozen constant

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """Scaled condition [B,C,h,w] of an LR tile in [-1,1]."""
        est = self.pixel(lr).clamp(-1, 1)
        return self.lr_enc(lr) + self.mix(self._hr_enc(est))
