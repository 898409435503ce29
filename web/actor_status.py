"""An account actor's own status as the web layer reads it: an actor that cannot report is
shown as data (or left out of a scrape), never turned into a 500."""

from __future__ import annotations

from typing import Any


def read_status(actor: Any) -> dict[str, Any] | None:
    """The actor's status, or None when reading it raised."""
    try:
        return dict(actor.status())
    except Exception:  # one misbehaving actor must not fail the route or the scrape
        return None


def actor_status(actor: Any) -> dict[str, Any]:
    """The actor's status; one that cannot be read is `upstream: "unknown"` and the error."""
    try:
        return dict(actor.status())
    except Exception as exc:  # one misbehaving actor shows up as data, never as a 500
        return {"upstream": "unknown", "error": f"{type(exc).__name__}: {exc}"}
