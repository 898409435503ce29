"""The browser Origin rule: no Origin (not a browser), our own page, or a configured origin."""

import pytest

from web.auth import origin_allowed

ALLOWED = ("http://desk.example:8081",)


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        (None, "127.0.0.1:8081", True),
        ("http://127.0.0.1:8081", "127.0.0.1:8081", True),  # the built-in page, any bound port
        ("http://desk.example:8081/", None, True),
        ("http://evil.example", "127.0.0.1:8081", False),
        ("http://127.0.0.1:9999", "127.0.0.1:8081", False),
        ("null", "127.0.0.1:8081", False),
    ],
)
def test_origin_allowed(origin: str | None, host: str | None, ok: bool) -> None:
    assert origin_allowed(origin, ALLOWED, host) is ok
