"""Named architecture presets: plain JSON-able dicts that fully describe every module of a bundle."""

from __future__ import annotations

import copy

# HR autoencoder: 1-channel HR image <-> 4-channel latent at 1/4 size (3 levels, 2 down-samplings).
HR_AE_SMALL = {
    "kind": "kl",
    "in_channels": 1,
    "latent_channels": 4,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "lowpass_skip": True,
}
# LR encoder: 1-channel LR image -> 4-channel condition on the same grid (1 level, no down-sampling).
LR_AE_SMALL = {
    "kind": "kl",
    "in_channels": 1,
    "latent_channels": 4,
    "block_out_channels": [32],
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "lowpass_skip": True,
}
# Conditional denoiser: noisy HR latent (4) ++ LR condition (4) -> 4 channels.
UNET_SMALL = {
    "latent_channels": 4,
    "cond_channels": 4,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "attention": False,
    "num_train_timesteps": 200,
}
# Ogoke et al. 2024: 128 base channels, multipliers 1,2,4,4, 2 residual blocks, attention at the two coarsest levels.
UNET_PAPER = {
    "latent_channels": 4,
    "cond_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "attention": True,
    "num_train_timesteps": 200,
}
HR_AE_PAPER = {**HR_AE_SMALL, "block_out_channels": [128, 256, 512], "layers_per_block": 2, "norm_num_groups": 32}
LR_AE_PAPER = {**LR_AE_SMALL, "block_out_channels": [128], "layers_per_block": 2, "norm_num_groups": 32}
# Pixel-space diffusion baseline (paper Table 2): noisy HR (1) ++ bicubic-upsampled LR (1) at full HR size.
UNET_PIXEL = {
    "latent_channels": 1,
    "cond_channels": 1,
    "block_out_channels": [32, 64, 64, 128],
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "attention": False,
    "num_train_timesteps": 200,
}

PRESETS: dict[str, dict] = {
    "small": {"hr_ae": HR_AE_SMALL, "lr_ae": LR_AE_SMALL, "unet": UNET_SMALL},
    "paper": {"hr_ae": HR_AE_PAPER, "lr_ae": LR_AE_PAPER, "unet": UNET_PAPER},
    "pixel": {"unet": UNET_PIXEL},
}


def preset(name: str) -> dict:
    """A deep copy of the named preset ({'hr_ae', 'lr_ae', 'unet'} arch dicts)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
