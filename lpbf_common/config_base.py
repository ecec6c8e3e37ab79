"""Base class for every config section: unknown keys are errors, every field documented."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: frozen, extra keys forbidden, descriptions required on every field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
