"""NI-DAQmx source: continuous analog input with every-N-samples callbacks, or DI change detection."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import numpy as np

from firmware_bridge.config import DaqConfig
from firmware_bridge.errors import DaqUnavailableError, SourceError

_HEARTBEAT_S = 0.05  # digital mode: repeat the line state this often so the off timer can expire
_OVERRUN_CODES = {-200279, -200004, -200006}


def _import_nidaqmx():
    """Import nidaqmx and check the NI-DAQmx driver; raise DaqUnavailableError saying what is missing."""
    try:
        import nidaqmx
        import nidaqmx.errors
        import nidaqmx.system
    except ImportError as exc:
        raise DaqUnavailableError("the Python package nidaqmx is not installed (pip install 'lpbf-edge[daq]')") from exc
    try:
        devices = [d.name for d in nidaqmx.system.System.local().devices]
    except nidaqmx.errors.DaqNotFoundError as exc:
        raise DaqUnavailableError(
            "the NI-DAQmx driver is not installed on this machine (install NI-DAQmx for Linux from ni.com, "
            f"or `python -m nidaqmx installdriver`): {exc}"
        ) from exc
    except (nidaqmx.errors.Error, OSError) as exc:
        raise DaqUnavailableError(f"the NI-DAQmx driver cannot be used: {exc}") from exc
    if not devices:
        raise DaqUnavailableError("NI-DAQmx is installed but no DAQ device is attached (check USB/PCIe and NI MAX)")
    return nidaqmx


class DaqSource:
    """Laser signal from an NI DAQ; chunks arrive through the driver's callbacks into a queue."""

    def __init__(self, cfg: DaqConfig | None = None):
        self.cfg = cfg or DaqConfig()
        self.name = f"daq:{self.cfg.channel}"
        self._task = None
        self._q: queue.Queue = queue.Queue(maxsize=1000)

    def _open(self):
        """Create and start the DAQmx task for the configured mode."""
        nidaqmx = _import_nidaqmx()
        from nidaqmx.constants import AcquisitionType, LineGrouping, Signal, TerminalConfiguration

        cfg = self.cfg
        task = nidaqmx.Task()
        try:
            if cfg.mode == "analog":
                term = {"rse": "RSE", "nrse": "NRSE", "diff": "DIFF", "default": "DEFAULT"}[cfg.terminal]
                task.ai_channels.add_ai_voltage_chan(
                    cfg.channel, terminal_config=getattr(TerminalConfiguration, term), min_val=cfg.min_v,
                    max_val=cfg.max_v,
                )
                task.timing.cfg_samp_clk_timing(
                    cfg.rate_hz, sample_mode=AcquisitionType.CONTINUOUS, samps_per_chan=int(cfg.rate_hz * cfg.buffer_s)
                )
                from nidaqmx.stream_readers import AnalogSingleChannelReader

                reader = AnalogSingleChannelReader(task.in_stream)
                counter = {"n": 0}

                def on_samples(_handle, _kind, n, _data):
                    buf = np.empty(n, dtype=np.float64)
                    try:
                        reader.read_many_sample(buf, number_of_samples_per_channel=n, timeout=0)
                    except nidaqmx.errors.DaqError as exc:
                        self._q.put(exc)
                        return 0
                    t = (counter["n"] + np.arange(n)) / cfg.rate_hz
                    counter["n"] += n
                    self._q.put((t, buf))
                    return 0

                task.register_every_n_samples_acquired_into_buffer_event(cfg.chunk_samples, on_samples)
            else:
                task.di_channels.add_di_chan(cfg.channel, line_grouping=LineGrouping.CHAN_PER_LINE)
                task.timing.cfg_change_detection_timing(
                    rising_edge_chan=cfg.channel, falling_edge_chan=cfg.channel, sample_mode=AcquisitionType.CONTINUOUS
                )

                def on_change(_handle, _signal, _data):
                    try:
                        state = bool(task.read())
                    except nidaqmx.errors.DaqError as exc:
                        self._q.put(exc)
                        return 0
                    self._q.put((np.array([time.monotonic()]), np.array([cfg.digital_on_v if state else 0.0])))
                    return 0

                task.register_signal_event(Signal.CHANGE_DETECTION_EVENT, on_change)
            task.start()
        except nidaqmx.errors.DaqError as exc:
            task.close()
            raise SourceError(f"DAQ channel {cfg.channel}: cannot start {cfg.mode} acquisition: {exc}") from exc
        self._task = task

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield chunks from the driver; overruns and driver errors end the stream as SourceError."""
        self._open()
        last_v = 0.0
        while True:
            try:
                item = self._q.get(timeout=_HEARTBEAT_S if self.cfg.mode == "digital" else 5.0)
            except queue.Empty:
                if self.cfg.mode == "digital":
                    yield np.array([time.monotonic()]), np.array([last_v])
                    continue
                raise SourceError(f"DAQ channel {self.cfg.channel}: no samples for 5 s (device unplugged?)") from None
            if isinstance(item, Exception):
                code = getattr(item, "error_code", None)
                kind = "buffer overrun" if code in _OVERRUN_CODES else "driver error"
                raise SourceError(f"DAQ channel {self.cfg.channel}: {kind} ({code}): {item}") from item
            last_v = float(item[1][-1])
            yield item

    def close(self) -> None:
        """Stop and release the DAQmx task."""
        if self._task is not None:
            try:
                self._task.close()
            finally:
                self._task = None
