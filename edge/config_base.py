"""The config section base, under the name edge code imports it by; it is defined in lpbf_common.config_base."""

from __future__ import annotations

from lpbf_common.config_base import Section

__all__ = ["Section"]
