"""Torch modules: autoencoders, conditional U-Net, patch discriminator, regression baseline, presets."""

from edge.models.autoencoder import (
                                    ImageAutoencoder,
                                    ScaledDecoder,
                                    ScaledEncoder,
                                    equalize_latent_channels,
                                    estimate_latent_scale,
                                    kl_loss,
)
from edge.models.discriminator import PatchDiscriminator
from edge.models.pixel import EstimateCondEncoder, PixelRegressor, estimate_mix
from edge.models.presets import PRESETS, preset
from edge.models.unet import CondDenoiser, GrainOffset, MixedCondDenoiser, RegressionNet, param_count

__all__ = ["ImageAutoencoder", "ScaledDecoder", "ScaledEncoder", "equalize_latent_channels", "estimate_latent_scale",
           "kl_loss", "PatchDiscriminator", "PRESETS", "preset", "CondDenoiser", "RegressionNet", "param_count",
           "EstimateCondEncoder", "PixelRegressor", "estimate_mix", "MixedCondDenoiser", "GrainOffset"]
