"""Which layers a subscriber missed, and the replay request that asks the box to send them again.

A layer counts as missed when a later layer's final stage arrived but its own final stage did not arrive
complete within the settle time (the box sends final stages in layer order), or when it arrived with a
missing image or a sha256 mismatch. Only layers from the first one this subscriber saw are asked for.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

JOB_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def missing_ranges(have: set[int], lo: int, hi: int) -> list[tuple[int, int]]:
    """Contiguous ranges [a, b] of the numbers in lo..hi not in `have`."""
    out: list[tuple[int, int]] = []
    for n in range(lo, hi + 1):
        if n in have:
            continue
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


@dataclass(frozen=True)
class ReplayRequest:
    """One `<p>/cmd/replay` publication: topic, JSON payload, MQTT 5 ResponseTopic and CorrelationData."""

    topic: str
    payload: bytes
    response_topic: str
    correlation: bytes
    job: str
    first: int
    last: int


def replay_request(base: str, job: str, first: int, last: int, reply_tag: str) -> ReplayRequest:
    """The request for layers first..last of `job` with a reply topic under `<base>/reply/` (no wildcards)."""
    if not JOB_PATTERN.match(job):
        raise ValueError(f"job {job!r} is not a valid job id (letters, digits, . _ -; at most 64)")
    if not 1 <= first <= last:
        raise ValueError(f"replay range {first}..{last} is not 1 <= from <= to")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", reply_tag):
        raise ValueError(f"reply tag {reply_tag!r} must be letters, digits, . _ - (it becomes a topic level)")
    response = f"{base}/reply/{reply_tag}/replay"
    if "+" in response or "#" in response:
        raise ValueError(f"response topic {response!r} must not hold MQTT wildcards")
    body = json.dumps({"job": job, "from": first, "to": last}, sort_keys=True).encode()
    return ReplayRequest(f"{base}/cmd/replay", body, response, uuid.uuid4().bytes, job, first, last)


@dataclass
class _Job:
    """Per job: first layer seen, highest final layer, complete layers, and when each gap was first noticed."""

    first_seen: int
    highest_final: int = 0
    complete: set[int] = field(default_factory=set)
    bad: set[int] = field(default_factory=set)
    gap_since: dict[int, float] = field(default_factory=dict)
    tries: dict[int, int] = field(default_factory=dict)
    last_asked: dict[int, float] = field(default_factory=dict)


class GapTracker:
    """Tracks layers per (node, job) and says which ranges are due for a replay request."""

    def __init__(self, settle_s: float = 5.0, retry_s: float = 30.0, max_tries: int = 3):
        self.settle_s, self.retry_s, self.max_tries = settle_s, retry_s, max_tries
        self.jobs: dict[tuple[str, str], _Job] = {}

    def seen(self, node: str, job: str, layer: int) -> None:
        """Any message of a layer arrived."""
        j = self.jobs.get((node, job))
        if j is None:
            self.jobs[(node, job)] = _Job(first_seen=layer)
        elif layer < j.first_seen and layer not in j.complete:
            j.first_seen = layer

    def finished(self, node: str, job: str, layer: int, ok: bool, now: float) -> None:
        """A layer's final stage arrived complete (ok) or was given up on (not ok: a gap to fill)."""
        self.seen(node, job, layer)
        j = self.jobs[(node, job)]
        j.highest_final = max(j.highest_final, layer)
        if ok:
            j.complete.add(layer)
            j.bad.discard(layer)
            j.gap_since.pop(layer, None)
        else:
            j.bad.add(layer)
            j.gap_since.setdefault(layer, now - self.settle_s)  # already waited the settle time in the assembler

    def gaps(self, node: str, job: str, now: float) -> list[int]:
        """Layers of the job known missing for at least settle_s."""
        j = self.jobs.get((node, job))
        if j is None:
            return []
        out = []
        for lo, hi in missing_ranges(j.complete, j.first_seen, j.highest_final):
            for n in range(lo, hi + 1):
                since = j.gap_since.setdefault(n, now)
                if now - since >= self.settle_s:
                    out.append(n)
        return out

    def due(self, now: float) -> list[tuple[str, str, int, int]]:
        """(node, job, first, last) ranges to ask for now: gaps not asked within retry_s, at most max_tries times."""
        out = []
        for (node, job), j in self.jobs.items():
            ask = [
                n
                for n in self.gaps(node, job, now)
                if j.tries.get(n, 0) < self.max_tries and now - j.last_asked.get(n, -1e18) >= self.retry_s
            ]
            for lo, hi in _ranges(ask):
                for n in range(lo, hi + 1):
                    j.tries[n] = j.tries.get(n, 0) + 1
                    j.last_asked[n] = now
                out.append((node, job, lo, hi))
        return out

    def missing(self) -> list[tuple[str, str, int]]:
        """(node, job, layer) not (yet) received complete, between the first layer seen and the highest final one."""
        return [
            (node, job, n)
            for (node, job), j in self.jobs.items()
            for lo, hi in missing_ranges(j.complete, j.first_seen, j.highest_final)
            for n in range(lo, hi + 1)
        ]


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    """Sorted contiguous ranges covering exactly `numbers`."""
    out: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out
