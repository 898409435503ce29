"""Kite's error vocabulary: an exception that carries its HTTP status and `error_type`."""

from __future__ import annotations

from typing import Any


class VenueError(Exception):
    """Becomes `{"status": "error", "message": ..., "error_type": ..., "data": null}`."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.error_type, self.message)


def error_envelope(error_type: str, message: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "error_type": error_type, "data": None}


def input_error(message: str) -> VenueError:
    return VenueError(400, "InputException", message)


def token_error(message: str = "Incorrect `api_key` or `access_token`.") -> VenueError:
    return VenueError(403, "TokenException", message)


def general_error(message: str, status: int = 500) -> VenueError:
    return VenueError(status, "GeneralException", message)


def rate_limited() -> VenueError:
    return VenueError(429, "NetworkException", "Too many requests")
