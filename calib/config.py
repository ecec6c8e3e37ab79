"""Settings of webcam-to-plate registration."""

from __future__ import annotations

from pydantic import Field

from edge.config_base import Section


class CalibConfig(Section):
    """Where the calibration file lives and how to apply it."""

    file: str | None = Field(None, description="Calibration file written by `lpbf-edge calib register`; none means identity.")
