"""Sample sources feeding the detector: NI-DAQmx, CSV trace replay, the simulated printer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

Chunk = tuple[np.ndarray, np.ndarray]


class SampleSource(Protocol):
    """Something that yields (time_s, laser_v) chunks until it ends or fails (SourceError)."""

    name: str

    def chunks(self) -> Iterator[Chunk]:
        """Yield sample chunks in time order."""
        ...

    def close(self) -> None:
        """Release the device or file."""
        ...
