"""Conditional denoiser (diffusers UNet2DModel on [noisy latent ++ condition]) and the regression baseline."""

from __future__ import annotations

import torch
from torch import nn

_KEYS = {"latent_channels", "cond_channels", "block_out_channels", "layers_per_block", "norm_num_groups",
         "attention", "num_train_timesteps"}


def _unet(arch: dict, in_channels: int):
    """A diffusers UNet2DModel from an arch dict; attention (when on) at the two coarsest levels only."""
    extra = set(arch) - _KEYS
    if extra:
        raise ValueError(f"unet arch: unknown keys {sorted(extra)}; allowed {sorted(_KEYS)}")
    from diffusers import UNet2DModel

    chans = tuple(int(c) for c in arch["block_out_channels"])
    n = len(chans)
    attn = bool(arch.get("attention", False))
    n_attn = 2 if attn else 0
    down = tuple("AttnDownBlock2D" if i >= n - n_attn else "DownBlock2D" for i in range(n))
    up = tuple("AttnUpBlock2D" if i < n_attn else "UpBlock2D" for i in range(n))
    return UNet2DModel(
        in_channels=in_channels,
        out_channels=int(arch["latent_channels"]),
        down_block_types=down,
        up_block_types=up,
        block_out_channels=chans,
        layers_per_block=int(arch.get("layers_per_block", 1)),
        norm_num_groups=int(arch.get("norm_num_groups", 32)),
        add_attention=attn,
        attention_head_dim=64 if attn else None,
        num_train_timesteps=int(arch.get("num_train_timesteps", 200)),
    )


class CondDenoiser(nn.Module):
    """forward(x [B,C,h,w], t [B] float timestep index (T-1 noisiest), cond [B,Cc,h,w]) -> [B,C,h,w] prediction."""

    def __init__(self, arch: dict) -> None:
        """Build from a unet arch dict (edge.models.presets)."""
        super().__init__()
        self.arch = dict(arch)
        self.unet = _unet(arch, int(arch["latent_channels"]) + int(arch["cond_channels"]))
        self.levels = len(arch["block_out_channels"])

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Model output in the bundle's prediction type."""
        return self.unet(torch.cat([x, cond], dim=1), t).sample


class RegressionNet(nn.Module):
    """Deterministic baseline: the same U-Net fed the condition only (t fixed at 0), predicting the HR latent."""

    def __init__(self, arch: dict) -> None:
        """Build from a unet arch dict; the input is the condition only."""
        super().__init__()
        self.arch = dict(arch)
        self.unet = _unet(arch, int(arch["cond_channels"]))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """Predicted scaled HR latent for the scaled LR condition."""
        t = torch.zeros(cond.shape[0], dtype=cond.dtype, device=cond.device)
        return self.unet(cond, t).sample


def param_count(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


class GrainOffset(nn.Module):
    """Grain descriptor [B, D] -> condition offset [B, C]: a linear map of the standardised descriptor, zero at start.

    The bundle stores it as manifest `grain_condition` (edge.sr.grain.GrainCondition) and the runtime adds the
    offset to the condition in numpy, so the graphs keep their inputs."""

    def __init__(self, descriptor_size: int, channels: int, names: tuple[str, ...] | None = None,
                 source: str = "lr", window: int | None = None) -> None:
        """Zero-initialised map; standardisation buffers at (0, 1) until set_stats(). names / source / window
        describe the descriptor for the manifest (default: edge.sr.grain's LR descriptor)."""
        super().__init__()
        self.names, self.source, self.window = names, source, window
        self.lin = nn.Linear(int(descriptor_size), int(channels))
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)
        self.register_buffer("mean", torch.zeros(int(descriptor_size)))
        self.register_buffer("std", torch.ones(int(descriptor_size)))

    @torch.no_grad()
    def set_stats(self, descriptors: torch.Tensor) -> None:
        """Standardise with the mean / std of a sample of training descriptors [N, D]."""
        self.mean.copy_(descriptors.mean(0))
        self.std.copy_(descriptors.std(0).clamp(min=1e-3))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        """Offset [B, C] for descriptors [B, D]."""
        return self.lin((d - self.mean) / self.std)

    def to_json(self) -> dict:
        """The manifest `grain_condition` entry (edge.sr.grain.GrainCondition.to_json format)."""
        from edge.sr.grain import DESCRIPTOR_NAMES, DESCRIPTOR_WINDOW

        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "weight": self.lin.weight.detach().tolist(),
                "bias": self.lin.bias.detach().tolist(), "window": self.window or DESCRIPTOR_WINDOW,
                "names": list(self.names or DESCRIPTOR_NAMES), "source": self.source}


class MixedCondDenoiser(nn.Module):
    """Training wrapper: raw condition [LR latent ++ estimate latent] -> inner(x, t, lr_latent + mix(estimate)), plus
    a grain offset from a per-image descriptor when `grain` is set; with mix None the raw condition is the LR latent."""

    def __init__(self, inner: CondDenoiser, mix: nn.Module | None, channels: int,
                 grain: GrainOffset | None = None) -> None:
        """`channels`: the LR latent's channel count (the first part of the raw condition)."""
        super().__init__()
        self.inner, self.mix, self.channels, self.grain = inner, mix, int(channels), grain

    def forward(self, x: torch.Tensor, t: torch.Tensor, raw: torch.Tensor,
                desc: torch.Tensor | None = None) -> torch.Tensor:
        """Model output in the bundle's prediction type."""
        c = self.channels
        cond = raw[:, :c] if self.mix is None else raw[:, :c] + self.mix(raw[:, c:])
        if self.grain is not None:
            if desc is None:
                raise ValueError("this denoiser is grain-conditioned: pass the grain descriptor")
            cond = cond + self.grain(desc)[:, :, None, None]
        return self.inner(x, t, cond)
