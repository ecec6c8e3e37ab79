"""Persistent box state: current job, whether it is active, and the last layer number per job."""

from __future__ import annotations

import threading
from pathlib import Path

from edge.store.atomic import read_json, write_json
from edge.store.jobs import check_job_id


class BoxState:
    """`root/state.json`, rewritten atomically on every change so layer numbers survive a crash."""

    def __init__(self, root: str | Path, default_job: str, fsync: bool = True):
        self.path = Path(root) / "state.json"
        self.fsync = fsync
        self._lock = threading.Lock()
        data = read_json(self.path) if self.path.exists() else {}
        try:
            self.job: str = check_job_id(data.get("job", default_job))
        except ValueError as exc:
            raise ValueError(f"{self.path}: {exc}") from exc
        self.active: bool = bool(data.get("active", True))
        self.last_layer: dict[str, int] = {str(k): int(v) for k, v in data.get("last_layer", {}).items()}
        latest = data.get("latest")
        self.latest: tuple[str, int] | None = (str(latest[0]), int(latest[1])) if latest else None

    def _save(self) -> None:
        doc = {"job": self.job, "active": self.active, "last_layer": self.last_layer,
               "latest": list(self.latest) if self.latest else None}
        write_json(self.path, doc, self.fsync)

    def next_layer(self) -> tuple[str, int]:
        """Allocate (job, next layer number) and persist it before the layer is processed."""
        with self._lock:
            n = self.last_layer.get(self.job, 0) + 1
            self.last_layer[self.job] = n
            self._save()
            return self.job, n

    def current(self) -> tuple[str, int]:
        """(job, last allocated layer number)."""
        with self._lock:
            return self.job, self.last_layer.get(self.job, 0)

    def set_job(self, job: str, active: bool | None = None) -> None:
        """Switch to `job` (layer numbers continue where that job left off); an invalid job id raises ValueError."""
        check_job_id(job)
        with self._lock:
            self.job = job
            if active is not None:
                self.active = active
            self._save()

    def set_active(self, active: bool) -> None:
        """Mark the current job running or stopped."""
        with self._lock:
            self.active = active
            self._save()

    def advance_latest(self, job: str, layer: int) -> bool:
        """True (and remembered) when (job, layer) may go to `anomaly/latest`: a new job, or not behind in this one."""
        with self._lock:
            if self.latest is not None and self.latest[0] == job and layer < self.latest[1]:
                return False
            if self.latest != (job, layer):
                self.latest = (job, layer)
                self._save()
            return True
