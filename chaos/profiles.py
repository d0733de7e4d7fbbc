"""Fault profiles as data: named timelines of faults applied to a cell.

A profile is validated on load; applying it is the chaos controller's job.
Durations are real seconds at time scale 1.0 and are scaled by the run.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from progressbench.errors import ConfigError


class FaultStep(BaseModel):
    """One fault: at ``at`` s after the cell starts, for ``for_s`` seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    at: float = Field(ge=0)
    fault: str = Field(min_length=1)
    for_s: float = Field(default=0.0, ge=0, alias="for")
    stream: str = "downstream"
    attributes: dict[str, int] = Field(default_factory=dict)


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    description: str
    sources: tuple[str, ...] = ()
    steps: tuple[FaultStep, ...] = ()


BUILTIN: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(name="clean", description="No faults: the baseline every other profile is read against."),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return BUILTIN[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN))
        raise ConfigError(f"--profiles: unknown profile {name!r} (known: {known})") from None
