"""Archive retention by age and size that never deletes an unpublished or unfinished layer."""

from __future__ import annotations

import time

from edge.store.archive import META_FILE, LayerArchive
from edge.store.spool import PublishSpool


def apply_retention(archive: LayerArchive, spool: PublishSpool, max_bytes: int, max_age_days: float,
                    now: float | None = None) -> list[tuple[str, int]]:
    """Delete published, complete layers older than max_age_days, then oldest first while over max_bytes."""
    now = time.time() if now is None else now
    protected = spool.unpublished_layers()
    sized, total = [], 0
    for job, layer, d in archive.layers():
        size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
        total += size
        meta = d / META_FILE
        if (job, layer) in protected or not archive.is_complete(job, layer):
            continue
        sized.append((meta.stat().st_mtime, job, layer, size))
    sized.sort()
    deleted = []
    for mtime, job, layer, size in sized:
        too_old = now - mtime > max_age_days * 86400.0
        if not too_old and total <= max_bytes:
            break
        archive.delete_layer(job, layer)
        total -= size
        deleted.append((job, layer))
    return deleted
