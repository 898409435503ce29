"""Versioned migrations: `migrations/NNNN_name.<engine>.sql`, applied in order, recorded in
`schema_migrations`. Both engines keep one file per version so the schemas stay in step."""

from __future__ import annotations

import re
from importlib import resources

import attrs

_NAME = re.compile(r"^(\d{4})_(\w+)\.(postgres|sqlite)\.sql$")

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


def load(engine: str) -> list[Migration]:
    """Every migration of `engine` ("postgres" or "sqlite"), oldest first."""
    found = []
    for entry in resources.files("store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match and match.group(3) == engine:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions for {engine}: {versions}")
    return found
