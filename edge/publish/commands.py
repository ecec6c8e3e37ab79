"""Commands accepted on `<prefix>/<node_id>/cmd/<name>`: validated with pydantic before anything acts on them."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.store.jobs import check_job_id


class _Cmd(BaseModel):
    """Base of a command payload: unknown keys are refused; a `job` field must be a valid job id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("job", mode="before", check_fields=False)
    @classmethod
    def _job_id(cls, value: object) -> str:
        """The store's one job-id rule (edge.store.jobs)."""
        return check_job_id(value)


class StartJob(_Cmd):
    """Start a new job: later layers are numbered and published under `job`."""

    job: str = Field(..., description="Job id (1-64 of letters, digits, _ - ., not starting with '.').")


class StopJob(_Cmd):
    """Mark the current job finished (layers still arriving are kept under it)."""


class SetJob(_Cmd):
    """Rename the job id used for the next layers without changing running state."""

    job: str = Field(..., description="Job id (1-64 of letters, digits, _ - ., not starting with '.').")


class RequeueRejected(_Cmd):
    """Send again the messages the broker refused (after its ACL was fixed)."""


class Replay(_Cmd):
    """Publish archived layers `from`..`to` of `job` again (original CorrelationData, meta `replayed: true`)."""

    job: str = Field(..., description="Job whose layers to send again.")
    first: int = Field(..., alias="from", ge=1, description="First layer number (inclusive).")
    last: int = Field(..., alias="to", ge=1, description="Last layer number (inclusive).")

    @model_validator(mode="after")
    def _ordered(self) -> Replay:
        """`to` may not lie before `from`."""
        if self.last < self.first:
            raise ValueError(f"'to' ({self.last}) is before 'from' ({self.first})")
        return self


COMMANDS: dict[str, type[_Cmd]] = {
    "start_job": StartJob,
    "stop_job": StopJob,
    "set_job": SetJob,
    "requeue_rejected": RequeueRejected,
    "replay": Replay,
}


class CommandError(ValueError):
    """A command that was refused; the message says why."""


def parse_command(name: str, payload: bytes) -> _Cmd:
    """Validate a command named by its topic; raise CommandError with a one-line reason."""
    model = COMMANDS.get(name)
    if model is None:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}")
    try:
        data = json.loads(payload.decode("utf-8")) if payload.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"{name}: payload is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CommandError(f"{name}: payload must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<payload>'}: {e['msg'].removeprefix('Value error, ')}"
                            for e in exc.errors())
        raise CommandError(f"{name}: {reasons}") from exc
