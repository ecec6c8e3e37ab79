"""Job ids and archive paths: the one validator every entry point uses, and the check that a path stays in the store."""

from __future__ import annotations

import re
from pathlib import Path

# 1-64 characters of letters, digits, '_', '-' and '.', not starting with '.': so never '.', '..', a hidden
# folder, a path separator, an MQTT wildcard or the spool's '+' field separator.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
_JOB_RE = re.compile(JOB_ID_PATTERN)


class InvalidJobId(ValueError):
    """A job id that cannot name an archive folder or an MQTT topic level; the message says why."""


def check_job_id(job: object) -> str:
    """Return `job` when it is a valid job id, else raise InvalidJobId naming the rule it breaks."""
    if not isinstance(job, str):
        raise InvalidJobId(f"job id must be a string, got {type(job).__name__}")
    if _JOB_RE.fullmatch(job):
        return job
    if not job:
        why = "is empty"
    elif len(job) > 64:
        why = f"is {len(job)} characters long (at most 64)"
    elif job.startswith("."):
        why = "starts with '.' ('.', '..' and hidden folders are not job ids)"
    else:
        bad = sorted({c for c in job if not re.fullmatch(r"[A-Za-z0-9_.-]", c)})
        why = f"contains {', '.join(repr(c) for c in bad)}"
    raise InvalidJobId(f"job id {job!r} {why}; use 1-64 of A-Z a-z 0-9 _ - . (not starting with '.')")


def inside(root: Path, path: Path) -> Path:
    """`path` resolved; ValueError when it does not lie inside `root` (resolved too, symlinks followed)."""
    base, target = Path(root).resolve(), Path(path).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"{path} resolves to {target}, outside the store root {base}")
    return target
