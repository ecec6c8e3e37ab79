"""Settings of the box service: how long a stop may take, and when health calls the box degraded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.config_base import Section


class ServiceConfig(Section):
    """Stop budget, health limits and the systemd watchdog policy of `lpbf-edge run`."""

    stop_timeout_s: float = Field(
        40.0, gt=0,
        description="SIGTERM: finish layers, send the spool and exit within this many seconds (keep below systemd's "
                    "TimeoutStopSec, 60).")
    broker_grace_s: float = Field(
        30.0, ge=0,
        description="Degraded when the MQTT broker has been unreachable for longer than this.")
    source_grace_s: float = Field(
        60.0, ge=0,
        description="Degraded (and the watchdog withheld) when the laser-signal source has been failing longer "
                    "than this.")
    source_backoff_max_s: float = Field(
        60.0, gt=0,
        description="Longest wait between attempts to reopen a failing laser-signal source.")
    expected_layer_s: float | None = Field(
        None, gt=0,
        description="Expected time between layer ends; none: learned from the last layers.")
    late_factor: float = Field(
        3.0, gt=1,
        description="Degraded while a job is active and no layer ended for this many expected layer times.")
    max_sr_backlog: int = Field(50, ge=1, description="Degraded when more layers than this wait for super-resolution.")
    max_spool_pending: int = Field(
        5000, ge=1,
        description="Degraded when more MQTT messages than this wait in the spool (about 5 per layer).")
    min_free_mb: float = Field(
        1024.0, ge=0,
        description="Degraded when the store's file system has less free space than this (MiB).")
    watchdog: Literal["restartable", "any"] = Field(
        "restartable",
        description="Withhold the systemd watchdog on problems a restart can fix (dead source, network or worker "
                    "thread), or on any degraded part.")
