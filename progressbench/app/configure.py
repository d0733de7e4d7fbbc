"""A command's flags and the environment, merged into one validated :class:`RunConfig`.

The environment is read here (through :func:`from_environment`), once, at
the edge; flags win over it. What a run does when not told comes from the
registry, not from a list of names kept somewhere else.
"""

from __future__ import annotations

from typing import Any

from progressbench.core.config import RunConfig, build_run_config, from_environment, split_list
from progressbench.core.errors import ConfigError


def run_config(**values: Any) -> RunConfig:
    """Flags (None: not given) over the environment; ``transports`` defaults to every registered one."""
    merged: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    for key, value in from_environment().items():
        merged.setdefault(key, value)
    if "transports" not in merged:
        from progressbench.transports.registry import defaults

        merged["transports"] = defaults()
    return build_run_config(merged)


def step_range(text: str) -> tuple[float, float]:
    """``--step-seconds MIN,MAX``."""
    low_high = split_list(text)
    if len(low_high) != 2:
        raise ConfigError("--step-seconds: expected MIN,MAX, e.g. 2,5")
    try:
        low, high = (float(v) for v in low_high)
    except ValueError:
        raise ConfigError(f"--step-seconds: not numbers: {text!r}") from None
    return low, high


def model_call_range(text: str) -> tuple[float, float] | None:
    """``--model-call MIN,MAX`` (seconds at time scale 1) of the job's silent step; ``0``: none."""
    if split_list(text) == ("0",):
        return None
    try:
        low, high = step_range(text)
    except ConfigError as exc:
        raise ConfigError(
            str(exc).replace("--step-seconds", "--model-call").replace("2,5", "30,90")
        ) from None
    if not 0 < low <= high:
        raise ConfigError(f"--model-call: expected 0 < MIN <= MAX, got {text!r}")
    return low, high
