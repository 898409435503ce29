"""Reading one value of orderdesk.toml: each reader names the key and the rule when it refuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


class ConfigError(Exception):
    """The configuration is unusable; the message names the key and the rule."""


def table(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table")
    return value


def seconds(
    table: Mapping[str, Any], key: str, default: float, where: str = "server",
    *, minimum: float = 0.0,
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        rule = ">= 0" if minimum == 0 else "> 0"
        raise ConfigError(f"{where}.{key}: must be a number of seconds {rule}, not {value!r}")
    return float(value)


def clock(table: Mapping[str, Any], key: str, default: dt.time) -> dt.time:
    value = table.get(key, default)
    if isinstance(value, dt.time):  # TOML's own local time (08:30:00)
        return value
    try:
        if isinstance(value, str):
            return dt.time.fromisoformat(value)
    except ValueError:
        pass
    raise ConfigError(f'calendar.{key}: must be a time "HH:MM" (IST), not {value!r}')


def count(table: Mapping[str, Any], key: str, default: int | None, where: str) -> int | None:
    """A whole number >= 0 from `table` (0: off, None)."""
    value = table.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}.{key}: must be a whole number >= 0 (0: off), not {value!r}")
    return value or None


def optional_str(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where}.{key}: must be a non-empty string, not {value!r}")
    return value


def from_env(env: Mapping[str, str], doc: Mapping[str, Any], key: str, where: str) -> str:
    name = doc.get(key)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: required, the name of an environment variable")
    return env.get(name, "")
