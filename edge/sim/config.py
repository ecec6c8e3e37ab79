"""Settings of the synthetic build generator and simulated printer."""

from __future__ import annotations

from pydantic import Field, model_validator

from edge.config_base import Section


class SimConfig(Section):
    """Synthetic LPBF build: plate, images, layers, defects, webcam model."""

    hr_size_px: int = Field(1024, ge=256, le=8192, description="Side of the square Basler-like HR plate image in "
                            "pixels.")
    scale: int = Field(4, ge=2, le=8, description="Integer HR/LR scale; LR images are hr_size_px / scale.")
    plate_mm: float = Field(100.0, gt=0, description="Side of the square build plate in millimetres.")
    layer_thickness_um: float = Field(40.0, gt=0, description="Layer thickness in micrometres.")
    defect_rate: float = Field(
        0.06, ge=0, le=5, description="Expected number of new defect events starting per layer (at the default about 3 "
        "in 4 layers are clean)."
    )
    powder_mean: float = Field(110.0, ge=20, le=230, description="Mean grey level of fresh powder in the HR image "
                               "(8-bit).")
    powder_grain_std: float = Field(9.0, ge=0, le=60, description="Std of the powder grain texture in grey levels "
                                    "(8-bit).")
    part_brightness: float = Field(0.78, gt=0, le=2, description="Mean brightness of fused regions relative to powder.")
    island_mm: float = Field(10.0, gt=0, description="Size of the hexagonal scan islands on fused regions in "
                             "millimetres.")
    hatch_rotation_deg: float = Field(67.0, description="Hatch-angle rotation from one layer to the next in degrees.")
    spatter_per_mpx: float = Field(400.0, ge=0, description="Dark spatter particles on powder per megapixel of HR "
                                   "image (denser near parts).")
    webcam_width_px: int = Field(1920, ge=320, description="Webcam image width in pixels.")
    webcam_height_px: int = Field(1080, ge=240, description="Webcam image height in pixels.")
    webcam_focal_px: float = Field(1400.0, gt=0, description="Webcam focal length in pixels (pinhole, square pixels).")
    webcam_distance_mm: float = Field(210.0, gt=0, description="Distance from the webcam to the plate centre in "
                                      "millimetres.")
    webcam_tilt_deg: float = Field(35.0, ge=0, lt=80, description="Webcam viewing angle from the plate normal in "
                                   "degrees.")
    webcam_azimuth_deg: float = Field(110.0, description="Direction of the webcam around the plate normal in degrees "
                                      "(0 = +x).")
    webcam_blur_px: float = Field(1.0, ge=0, description="Optics blur sigma in webcam pixels.")
    webcam_resolution_loss: float = Field(1.5, ge=1, le=4, description="Effective-resolution loss factor "
                                          "(demosaic/lens) of the webcam.")
    webcam_noise_std: float = Field(2.0, ge=0, description="Read-noise std of the webcam sensor in grey levels (shot "
                                    "noise is added on top).")
    webcam_vignetting: float = Field(0.35, ge=0, lt=1, description="Relative brightness loss in the webcam image "
                                     "corners.")
    webcam_jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality the webcam stream is compressed "
                                     "with.")
    png_compression: int = Field(1, ge=0, le=9, description="PNG compression level of written images (0 fastest, 9 "
                                 "smallest).")

    @model_validator(mode="after")
    def _size_divisible(self) -> SimConfig:
        """The LR grid must tile the HR grid exactly."""
        if self.hr_size_px % self.scale:
            raise ValueError(f"hr_size_px ({self.hr_size_px}) must be divisible by scale ({self.scale})")
        return self
