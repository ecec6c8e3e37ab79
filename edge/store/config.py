"""Settings of the on-disk layer archive and publish spool."""

from __future__ import annotations

from pydantic import Field

from edge.config_base import Section


class StoreConfig(Section):
    """Where layers are archived, how the publish spool is kept and how long layers are kept."""

    root: str = Field("/var/lib/lpbf-edge", description="Root folder of the archive, publish spool, state and health "
                      "files.")
    max_bytes: int = Field(20 * 1024**3, gt=0, description="Archive size above which the oldest published layers are "
                           "deleted.")
    max_age_days: float = Field(30.0, gt=0, description="Published layers older than this are deleted.")
    keep_raw: bool = Field(True, description="Archive the raw camera frames of every layer (PNG, 16-bit where the "
                           "camera is).")
    fsync: bool = Field(True, description="fsync every archive/spool file and its folder before it counts as written "
                        "(off only for tests on slow disks).")
    health_interval_s: float = Field(5.0, gt=0, description="Seconds between rewrites of the service health file "
                                     "(store.root/health.json).")
    health_max_age_s: float = Field(30.0, gt=0, description="`lpbf-edge health` reports unhealthy when the health "
                                    "file's heartbeat is older than this.")
