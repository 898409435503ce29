"""Who sees what on the status routes, on the real web stack (venue, SQLite store, two actors).

Without a token: the overall status and counts, no account id, seq, order count or subscriber
count. An account token: its own account only. The admin token: every account. `/metrics`:
Prometheus' own metrics_token only, never an account's nor the admin's.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from tests.fixtures_web import ADMIN_TOKEN, METRICS_TOKEN, TOKENS, WebStack, bearer

ACCOUNTS = ("primary", "secondary")


@attrs.frozen
class Caller:
    name: str
    token: str | None
    sees: tuple[str, ...]


CALLERS = [
    Caller("anonymous", None, ()),
    Caller("primary's token", TOKENS["primary"], ("primary",)),
    Caller("admin", ADMIN_TOKEN, ACCOUNTS),
]


def hidden(text: str, sees: tuple[str, ...]) -> list[str]:
    """The accounts this caller must not see that the answer names anyway."""
    return [account for account in ACCOUNTS if account not in sees and account in text]


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c.name)
async def test_status_routes_reveal_only_what_the_caller_may_see(
    web_stack: WebStack, caller: Caller
) -> None:
    with trio.fail_after(10):
        async with web_stack.http(caller.token) as http:
            health = await http.get("/health")
            assert health.status_code == 200, health.text
            assert health.json()["actors"]["total"] == 2
            assert sorted(health.json()["accounts"]) == list(caller.sees)
            assert ("supervision" in health.json()) is (caller.token == ADMIN_TOKEN)

            accounts = await http.get("/accounts/health/status")
            assert accounts.status_code == 200, accounts.text
            assert [a["account"] for a in accounts.json()["accounts"]] == list(caller.sees)
            assert accounts.json()["summary"]["total"] == 2

            status = await http.get("/ws/status")
            assert status.status_code == 200, status.text
            body = status.json()
            assert [a["account"] for a in body["accounts"]] == list(caller.sees)
            assert body["status"] == "ok" and body["summary"]["connected"] == 2
            for view in body["accounts"]:
                assert {"seq", "orders", "subscribers"} <= set(view)

            ready = await http.get("/ready")
            for response in (health, accounts, status, ready):
                assert hidden(response.text, caller.sees) == [], response.text
                assert "seq" not in response.text or caller.sees


async def test_a_wrong_token_is_401_not_anonymous(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with web_stack.http("wrong") as http:
            for path in ("/health", "/accounts/health/status", "/ws/status"):
                response = await http.get(path)
                assert response.status_code == 401, (path, response.text)
                assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("wrong", 401), (TOKENS["primary"], 403), (ADMIN_TOKEN, 403),
     (METRICS_TOKEN, 200)],
    ids=["none", "wrong", "account", "admin", "metrics_token"],
)
async def test_metrics_take_the_metrics_token_only(
    web_stack: WebStack, token: str | None, status: int
) -> None:
    with trio.fail_after(10):
        async with web_stack.http() as http:
            response = await http.get("/metrics", headers=bearer(token) if token else {})
    assert response.status_code == status, response.text
    if status == 200:
        assert 'upstream_connected{account="primary"} 1.0' in response.text
    else:
        assert "primary" not in response.text
        assert "metrics_token" in response.json()["message"]


async def test_the_metrics_token_reaches_nothing_else(web_stack: WebStack) -> None:
    with trio.fail_after(10):
        async with web_stack.http(METRICS_TOKEN) as http:
            for path in ("/accounts/primary/orders", "/admin/actors", "/ws/status", "/health"):
                response = await http.get(path)
                assert response.status_code == 401, (path, response.text)
