"""Settings of the laser-signal edge detector and its sources."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge.config_base import Section


class DaqConfig(Section):
    """NI-DAQmx input that watches the laser/galvo signal."""

    mode: Literal["analog", "digital"] = Field(
        "analog",
        description=("analog: continuous AI with every-N-samples callbacks; digital: DI change detection.")
    )
    channel: str = Field(
        "Dev1/ai0",
        description=("Physical channel, e.g. Dev1/ai0 (analog) or Dev1/port0/line0 (digital).")
    )
    terminal: Literal["rse", "nrse", "diff", "default"] = Field(
        "diff",
        description=("Analog terminal configuration (diff rejects ground loops to the printer).")
    )
    rate_hz: float = Field(2000.0, gt=0, description="Analog sample rate in samples per second.")
    chunk_samples: int = Field(
        200, ge=1,
        description=("Samples per every-N-samples callback (latency = chunk_samples / rate_hz).")
    )
    min_v: float = Field(-1.0, description="Lowest expected analog voltage (sets the input range).")
    max_v: float = Field(10.0, description="Highest expected analog voltage (sets the input range).")
    digital_on_v: float = Field(
        5.0,
        description=("Voltage the bridge reports for a high digital line (so the analog thresholds apply).")
    )
    buffer_s: float = Field(
        10.0, gt=0,
        description=("Driver buffer length in seconds; an overrun is reported as a fault.")
    )


class BridgeConfig(Section):
    """Hysteresis thresholds and timing that turn laser samples into layer events."""

    on_threshold_v: float = Field(2.0, description="Laser signal above this (volts) counts as on.")
    off_threshold_v: float = Field(1.0, description="Laser signal below this (volts) counts as off.")
    min_off_s: float = Field(1.0, gt=0, description="Off time that ends a layer; shorter pauses stay inside the layer.")
    min_on_s: float = Field(
        0.05, ge=0,
        description=("Cumulative on time before a layer counts as started (rejects spikes).")
    )
    start_reset_s: float = Field(
        0.5, gt=0,
        description=("An off gap this long before a layer has started resets the cumulative on time (isolated spikes "
        "never add up).")
    )
    spike_max_s: float = Field(
        0.004, ge=0,
        description=("While a layer end is pending, an on burst shorter than this after an off gap of spike_gap_s or "
        "more is a spike and does not resume the layer.")
    )
    spike_gap_s: float = Field(
        0.02, ge=0,
        description=("Off gaps shorter than this are galvo jumps: the burst after them always continues the layer.")
    )
    recoat_delay_s: float = Field(
        8.0, ge=0,
        description=("Longest delay after layer_complete before the recoat_done event (without a recoater signal).")
    )
    recoat_source: Literal["delay", "signal"] = Field(
        "delay",
        description=("signal: recoat_done when the recoater-motion channel goes on and then off after a layer end; "
        "delay: recoat_delay_s, shortened to fit the gaps this printer leaves between layers.")
    )
    recoat_gap_fraction: float = Field(
        0.8, gt=0, le=1,
        description=("The recoat delay is at most this fraction of the shortest recent gap from a layer end to the "
        "next layer start.")
    )
    recoat_gap_layers: int = Field(5, ge=1, description="Recent layer gaps remembered for the recoat delay.")
    recoater_on_v: float = Field(
        2.0,
        description=("Recoater-motion signal above this (volts) means the blade moves (recoat_source signal).")
    )
    recoater_off_v: float = Field(
        1.0,
        description=("Recoater-motion signal below this (volts) means the blade has stopped.")
    )
    recoat_settle_s: float = Field(
        0.5, ge=0,
        description=("Wait after the blade stops before recoat_done (powder and dust settle).")
    )
    emit_recoat: bool = Field(True, description="Emit the recoat_done event (for a post-spreading capture).")
    max_sample_gap_s: float = Field(
        0.1, gt=0,
        description=("A jump in sample time larger than this is a gap (overrun or lost data): fault record and flag.")
    )
    stuck_high_s: float = Field(
        300.0, gt=0,
        description=("Continuous on time after which the signal is reported stuck high.")
    )
    stuck_low_s: float = Field(
        1800.0, gt=0,
        description=("Time without any on sample after which the signal is reported stuck low.")
    )
    bad_samples: Literal["skip", "error"] = Field(
        "skip",
        description=("NaN or non-increasing sample times: skip them (fault record, flag) or raise an error.")
    )
    start_layer: int = Field(
        1, ge=1,
        description=("Number of the first layer detected (set to resume numbering after a restart).")
    )
    source: Literal["daq", "replay", "sim"] = Field(
        "daq",
        description=("Where the laser signal comes from: NI DAQ, a CSV trace, or the simulated printer.")
    )
    daq: DaqConfig = Field(default_factory=DaqConfig, description="NI-DAQmx input settings.")
    trace_file: str | None = Field(None, description="CSV trace (time_s, laser_v) replayed when source is 'replay'.")
    sim_build_dir: str | None = Field(
        None,
        description=("Sim build folder driving the simulated printer when source is 'sim'.")
    )
    speedup: float = Field(
        1.0, ge=0,
        description=("Replay / simulated printer speed relative to real time (0: as fast as possible).")
    )
    replay_chunk: int = Field(1000, ge=1, description="Samples per chunk when replaying a CSV trace.")
    restart_backoff_s: float = Field(
        1.0, gt=0,
        description=("First wait before reopening a source that died (doubles up to 30 s).")
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> "BridgeConfig":
        """The off threshold must lie below the on threshold (hysteresis band)."""
        if self.off_threshold_v >= self.on_threshold_v:
            raise ValueError("off_threshold_v must be below on_threshold_v")
        return self
