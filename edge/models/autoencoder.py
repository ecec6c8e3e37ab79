"""KL / VQ autoencoders (diffusers AutoencoderKL, VQModel) for 1-channel images, built from an arch dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_KEYS = {"kind", "in_channels", "latent_channels", "block_out_channels", "layers_per_block", "norm_num_groups",
         "num_vq_embeddings", "lowpass_skip"}


def _check(arch: dict) -> None:
    """Raise ValueError on unknown keys or kinds in an autoencoder arch dict."""
    extra = set(arch) - _KEYS
    if extra:
        raise ValueError(f"autoencoder arch: unknown keys {sorted(extra)}; allowed {sorted(_KEYS)}")
    if arch.get("kind", "kl") not in ("kl", "vq"):
        raise ValueError(f"autoencoder arch: kind must be 'kl' or 'vq', got {arch.get('kind')!r}")


class ImageAutoencoder(nn.Module):
    """An image autoencoder with a fixed downsampling factor 2**(levels-1) and a uniform encode/decode API."""

    def __init__(self, arch: dict) -> None:
        """Build the diffusers model described by `arch` (see edge.models.presets)."""
        super().__init__()
        _check(arch)
        from diffusers import AutoencoderKL, VQModel

        self.arch = dict(arch)
        self.kind = arch.get("kind", "kl")
        chans = tuple(int(c) for c in arch["block_out_channels"])
        common = dict(
            in_channels=int(arch.get("in_channels", 1)),
            out_channels=int(arch.get("in_channels", 1)),
            down_block_types=("DownEncoderBlock2D",) * len(chans),
            up_block_types=("UpDecoderBlock2D",) * len(chans),
            block_out_channels=chans,
            layers_per_block=int(arch.get("layers_per_block", 1)),
            latent_channels=int(arch["latent_channels"]),
            norm_num_groups=int(arch.get("norm_num_groups", 32)),
            mid_block_add_attention=False,
        )
        if self.kind == "kl":
            self.net = AutoencoderKL(**common)
        else:
            self.net = VQModel(**common, num_vq_embeddings=int(arch.get("num_vq_embeddings", 256)))
        self.factor = 2 ** (len(chans) - 1)
        self.latent_channels = common["latent_channels"]
        self.skip = bool(arch.get("lowpass_skip", False))
        if self.skip:
            self._init_residual()

    def _init_residual(self) -> None:
        """With the low-pass skip the nets start as the identity on it: zero decoder output, near-zero posterior noise.

        Only channel 0's learned mean starts at zero (it rides on the skip); channels 1.. keep their random
        initialisation. Zeroing them too starts the encoder and the decoder at a saddle (each one's gradient is
        proportional to the other's weights) where the decoder learns to ignore them: measured on the 2026-11-25
        autoencoder, zeroing channels 1-3 changed its reconstruction by -63 dB.
        """
        nn.init.zeros_(self.net.decoder.conv_out.weight)
        nn.init.zeros_(self.net.decoder.conv_out.bias)
        qc = getattr(self.net, "quant_conv", None)
        if self.kind == "kl" and qc is not None:
            c = self.latent_channels
            with torch.no_grad():
                qc.weight[:1].zero_()
                qc.bias[:c].zero_()
                qc.bias[c:].fill_(-10.0)

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        """Area (box) downsampling by the autoencoder factor: the low-pass carried in latent channel 0."""
        return F.avg_pool2d(x, self.factor) if self.factor > 1 else x

    def _up(self, z0: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling of latent channel 0 back to image size (A=-0.75, as OpenCV)."""
        if self.factor == 1:
            return z0
        return F.interpolate(z0, scale_factor=self.factor, mode="bicubic", align_corners=False)

    def _add_skip(self, mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Latent mean plus the box-downsampled image in channel 0 (when lowpass_skip)."""
        if not self.skip:
            return mean
        return torch.cat([mean[:, :1] + self._down(x), mean[:, 1:]], dim=1)

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of the posterior for a KL model; (pre-quantisation latent, zeros) for VQ."""
        if self.kind == "kl":
            d = self.net.encode(x).latent_dist
            return self._add_skip(d.mean, x), d.logvar
        h = self._add_skip(self.net.encode(x).latents, x)
        return h, torch.zeros_like(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic latent: the posterior mean (KL) or the un-quantised encoding (VQ)."""
        return self.encode_dist(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode a latent (VQ latents are quantised first) to an image in [-1, 1] range (not clamped)."""
        if self.kind == "kl":
            out = self.net.decode(z).sample
        else:
            out = self.net.decode(z, force_not_quantize=False).sample
        return out + self._up(z[:, :1]) if self.skip else out

    def forward(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction plus (mean, logvar); samples the posterior when `sample` (KL only)."""
        mean, logvar = self.encode_dist(x)
        z = mean
        if sample and self.kind == "kl":
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        return self.decode(z), mean, logvar

    def vq_loss(self, h: torch.Tensor) -> torch.Tensor:
        """Commitment + codebook loss of the VQ quantiser for encoding h (0 for KL)."""
        if self.kind != "vq":
            return h.new_zeros(())
        _, loss, _ = self.net.quantize(h)
        return loss


@torch.no_grad()
def equalize_latent_channels(ae: ImageAutoencoder, batches, max_batches: int = 16) -> list[float]:
    """Rescale latent channels 1.. to channel 0's spread, exactly (decoder input divided back); returns the gains.

    A single latent scale factor (Rombach et al. 2022) assumes every channel has a similar spread; a channel 20x
    quieter than the others is buried by the diffusion noise in the first steps and the denoiser learns little of it.
    The gain is folded into the encoder's quant_conv (mean rows) and the decoder's post_quant_conv (input columns), so
    decode(encode(x)) is unchanged. KL models with both 1x1 convs only; others are left alone (gains all 1).
    """
    c = ae.latent_channels
    qc, pqc = getattr(ae.net, "quant_conv", None), getattr(ae.net, "post_quant_conv", None)
    if ae.kind != "kl" or qc is None or pqc is None or c < 2:
        return [1.0] * c
    vals = [ae.encode(x) for i, x in zip(range(max_batches), batches, strict=False)]
    if not vals:
        raise ValueError("equalize_latent_channels: no batches given")
    std = torch.cat(vals).transpose(0, 1).flatten(1).float().std(dim=1)
    if not bool((std > 0).all()):
        raise ValueError(f"equalize_latent_channels: a latent channel is constant (stds {std.tolist()})")
    gains = torch.ones(c)
    gains[1:] = std[0] / std[1:]
    qc.weight[1:c] *= gains[1:].view(-1, 1, 1, 1)
    qc.bias[1:c] *= gains[1:]
    qc.bias[c + 1:] += 2.0 * torch.log(gains[1:])  # log-variance rows follow the mean
    pqc.weight[:, 1:] /= gains[1:].view(1, -1, 1, 1)
    return [round(float(g), 6) for g in gains]


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent element, averaged (Kingma & Welling 2014, App. B)."""
    logvar = logvar.clamp(-30.0, 20.0)
    return 0.5 * torch.mean(mean.pow(2) + logvar.exp() - 1.0 - logvar)


class ScaledEncoder(nn.Module):
    """Export wrapper: image -> latent mean times the stored latent scale factor."""

    def __init__(self, ae: ImageAutoencoder, scale: float) -> None:
        """Wrap `ae` with a fixed multiplicative latent scale."""
        super().__init__()
        self.ae, self.scale = ae, float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latent of x."""
        return self.ae.encode(x) * self.scale


class ScaledDecoder(nn.Module):
    """Export wrapper: scaled latent -> image in [-1, 1] (clamped)."""

    def __init__(self, ae: ImageAutoencoder, scale: float) -> None:
        """Wrap `ae` so it decodes latents that were multiplied by `scale`."""
        super().__init__()
        self.ae, self.scale = ae, float(scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Image decoded from the scaled latent z."""
        return self.ae.decode(z / self.scale).clamp(-1.0, 1.0)


@torch.no_grad()
def estimate_latent_scale(ae: ImageAutoencoder, batches, max_batches: int = 16) -> float:
    """1 / std of the latent means over up to `max_batches` image batches (Rombach et al. 2022, Sec. G)."""
    vals = []
    ae.eval()
    for i, x in enumerate(batches):
        if i >= max_batches:
            break
        vals.append(ae.encode(x).flatten())
    if not vals:
        raise ValueError("estimate_latent_scale: no batches given")
    std = torch.cat(vals).float().std().item()
    if not std > 0:
        raise ValueError(f"estimate_latent_scale: latent std is {std}; the encoder output is constant")
    return 1.0 / std
