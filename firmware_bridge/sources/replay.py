"""Trace replay: a `time_s,laser_v` CSV file as a sample source (errors name the file and line)."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from firmware_bridge.errors import TraceError

REQUIRED = ("time_s", "laser_v")


def read_trace(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and check a whole trace CSV; raise TraceError naming the file and line of a bad row."""
    path = Path(path)
    try:
        fh = path.open(newline="", encoding="utf-8-sig")  # a UTF-8 BOM (Excel's "CSV UTF-8") is skipped
    except OSError as exc:
        raise TraceError(f"{path}: cannot open trace: {exc.strerror or exc}") from exc
    ts: list[float] = []
    vs: list[float] = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise TraceError(f"{path}:1: empty file (need a header with columns time_s, laser_v)") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TraceError(f"{path}:1: unreadable header: {exc}") from exc
        cols = [c.strip() for c in header]
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise TraceError(f"{path}:1: header lacks column(s) {', '.join(missing)} "
                             f"(found: {', '.join(ascii(c) for c in cols)})")
        it, iv = cols.index("time_s"), cols.index("laser_v")
        last = -math.inf
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                try:
                    t, v = float(row[it]), float(row[iv])
                except (ValueError, IndexError):
                    raise TraceError(f"{path}:{line}: bad row {row!r} (need numbers in time_s and laser_v)") from None
                if not (math.isfinite(t) and math.isfinite(v)):
                    raise TraceError(f"{path}:{line}: non-finite value in row {row!r}")
                if t <= last:
                    raise TraceError(f"{path}:{line}: time_s {t} does not increase (previous {last})")
                last = t
                ts.append(t)
                vs.append(v)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TraceError(f"{path}:{reader.line_num}: unreadable row: {exc}") from exc
    if not ts:
        raise TraceError(f"{path}: no samples after the header")
    return np.asarray(ts), np.asarray(vs)


class TraceReplaySource:
    """Replays a trace CSV in chunks, as fast as possible or paced at `speed` times real time."""

    def __init__(self, path: str | Path, chunk: int = 1000, speed: float | None = None):
        self.path = Path(path)
        self.name = f"replay:{self.path.name}"
        self.chunk = chunk
        self.speed = speed

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the file's samples in chunks (the whole file is validated first)."""
        t, v = read_trace(self.path)
        wall0 = time.monotonic()
        for i in range(0, t.size, self.chunk):
            tc, vc = t[i : i + self.chunk], v[i : i + self.chunk]
            if self.speed:
                delay = (tc[-1] - t[0]) / self.speed - (time.monotonic() - wall0)
                if delay > 0:
                    time.sleep(delay)
            yield tc, vc

    def close(self) -> None:
        """Nothing to release."""
