"""PatchGAN discriminator (Isola et al. 2017) with spectral norm; diffusers has none, so it is written here."""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Fully convolutional critic giving one logit per ~(receptive field) patch of a 1-channel image."""

    def __init__(self, in_channels: int = 1, width: int = 32, layers: int = 3) -> None:
        """`layers` stride-2 stages of width, 2*width, ... then a 1-channel logit map."""
        super().__init__()
        sn = nn.utils.spectral_norm
        mods: list[nn.Module] = [sn(nn.Conv2d(in_channels, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
        c = width
        for i in range(1, layers):
            c2 = width * min(2**i, 8)
            mods += [sn(nn.Conv2d(c, c2, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c = c2
        mods += [sn(nn.Conv2d(c, c, 3, 1, 1)), nn.LeakyReLU(0.2), sn(nn.Conv2d(c, 1, 3, 1, 1))]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit map [B,1,H/2**layers,W/2**layers]."""
        return self.net(x)
