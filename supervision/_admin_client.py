"""Reaching a running server's `/admin/*` routes, and what its answers mean as exit codes.

`Unreachable` (exit 2) is no usable answer at all; `Refused` (exit 1) is an answer that said no.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx

from web.settings import DEFAULT_BIND

EXIT_OK = 0
EXIT_DEGRADED = 1  # also: the server answered and refused (404, 422, 503)
EXIT_UNREACHABLE = 2  # also: configuration errors of the server commands

DEFAULT_URL = f"http://{DEFAULT_BIND}"
DEFAULT_TIMEOUT_S = 10.0


class Unreachable(Exception):
    """No usable answer: refused, timed out, not orderdesk, or the admin token was refused."""


class Refused(Exception):
    """The server answered and said no (unknown account, invalid input, unavailable)."""


@attrs.frozen
class AdminClient:
    """A short-lived, synchronous client of one server's `/admin/*` routes."""

    url: str
    token: str | None = attrs.field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None
    ) -> AdminClient:
        env = os.environ if environ is None else environ
        url = (args.url or env.get("ORDERDESK_URL") or DEFAULT_URL).rstrip("/")
        if "://" not in url:
            url = f"http://{url}"
        return cls(url, _admin_token(args.token, env), args.timeout)

    def open(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)

    def call(
        self, http: httpx.Client, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise Unreachable(f"{self.url} did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {_reason(exc)}") from None
        body = _json_or_none(response)
        if response.status_code in (401, 403):
            what = "no admin token was given" if not self.token else "the admin token was refused"
            raise Unreachable(
                f"{self.url} answered {response.status_code} "
                f"{_message(body) or response.reason_phrase}: {what} "
                "(pass --token or set ORDERDESK_ADMIN_TOKEN)"
            )
        if not isinstance(body, dict):
            raise Unreachable(
                f"{self.url}{path} answered {response.status_code} without JSON: "
                "is this an orderdesk server?"
            )
        if response.status_code == 404 and path == "/admin/actors":
            raise Unreachable(f"{self.url} has no {path}: is this an orderdesk server?")
        if response.status_code >= 400:
            raise Refused(f"{response.status_code} {_message(body) or response.reason_phrase}")
        return body


def _admin_token(explicit: str | None, env: Mapping[str, str]) -> str | None:
    if explicit:
        return explicit
    if env.get("ORDERDESK_ADMIN_TOKEN"):
        return env["ORDERDESK_ADMIN_TOKEN"]
    path = Path(env.get("ORDERDESK_VAR", "var")) / "secrets.json"
    try:
        token = json.loads(path.read_text()).get("admin_token")
    except (OSError, ValueError, AttributeError):
        return None
    return token if isinstance(token, str) and token else None


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused (is `orderdesk serve` running there?)"
    return text


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    message = str(body.get("message") or body.get("error") or "")
    fields = body.get("fields") or []
    details = "; ".join(
        f"{f.get('path')}: {f.get('message')}" for f in fields if isinstance(f, dict)
    )
    return f"{message} ({details})" if details else message


def fail(exc: Exception) -> int:
    print(f"orderdesk: {exc}", file=sys.stderr)
    return EXIT_UNREACHABLE if isinstance(exc, Unreachable) else EXIT_DEGRADED
