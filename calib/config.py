"""Settings of webcam-to-plate registration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lpbf_common.config_base import Section


class CalibConfig(Section):
    """Where the calibration file lives and how registration is computed."""

    file: str | None = Field(
        None, description="Calibration file written by `lpbf-edge calib register`; none means identity."
    )
    plate_mm: float = Field(
        100.0, gt=0, description="Side of the square build plate in millimetres (gives the pixel pitch)."
    )
    fiducial_radius_px: tuple[float, float] = Field(
        (3.0, 60.0), description="Radius range (webcam px) of the bright fiducial dots to detect."
    )
    ransac_px: float = Field(
        3.0, gt=0, description="RANSAC inlier threshold (webcam px) when fitting the homography to more than 4 points."
    )
    hough: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Paper's Hough-circle deformation refinement: auto (use when enough circles and it helps), "
        "on (required), off.",
    )
    ring_radius_mm: tuple[float, float] = Field(
        (2.0, 8.0), description="Radius range (mm) of circular part edges searched by HoughCircles."
    )
    min_circles: int = Field(4, ge=3, description="Fewest matched part centres for a deformation map.")
    max_shift_mm: float = Field(
        2.5, gt=0, description="Largest centre displacement (mm) accepted when matching circles between views."
    )
    deform_step_px: int = Field(8, ge=2, description="Spacing (LR px) of the stored deformation grid.")
    flat_degree: int = Field(4, ge=0, le=8, description="Polynomial degree of the flat-field / vignetting surface.")
