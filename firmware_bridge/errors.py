"""Exceptions of the laser-signal bridge (sources convert their driver errors into these)."""

from __future__ import annotations


class BridgeError(RuntimeError):
    """Base class of every bridge error."""


class BadSampleError(BridgeError):
    """A sample the detector cannot use (NaN, or time not increasing) with bad_samples='error'."""


class TraceError(BridgeError):
    """A trace file that cannot be replayed; the message names the file and line."""


class SourceError(BridgeError):
    """A sample source that failed while running (driver error, overrun, device gone)."""


class DaqUnavailableError(BridgeError):
    """The NI-DAQmx driver or device is missing (not retried); the message says what to install or attach."""
