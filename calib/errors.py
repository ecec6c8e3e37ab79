"""Calibration errors (one clear message saying what did not fit and why)."""

from __future__ import annotations


class CalibrationError(ValueError):
    """Registration could not be computed or a calibration file cannot be used."""
