"""Settings of the on-disk layer archive and publish spool."""

from __future__ import annotations

from pydantic import Field

from edge.config_base import Section


class StoreConfig(Section):
    """Where layers are archived and how long they are kept."""

    root: str = Field("/var/lib/lpbf-edge", description="Root folder of the archive and spool.")
    max_bytes: int = Field(20 * 1024**3, gt=0, description="Archive size above which the oldest published layers are deleted.")
    max_age_days: float = Field(30.0, gt=0, description="Published layers older than this are deleted.")
