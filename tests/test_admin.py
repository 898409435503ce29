"""The admin routes against the real service (`open_service`): paper venue, SQLite store, two
paper accounts, the web front on 127.0.0.1:0.

`open_admin_service` (tests/fixtures_admin.py) is also what tests/test_cli.py runs against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.fixtures_admin import (
    RECOVERY_S,
    actor_entry,
    admin_http,
    expire_at_venue,
    new_venue_token,
    open_admin_service,
    upstream_is,
    wait_tree,
)
from tests.fixtures_service import TOKENS

# -- tests ------------------------------------------------------------------------------------


ROUTES = [
    ("GET", "/admin/actors", None),
    ("POST", "/admin/accounts/primary/restart", None),
    ("PUT", "/admin/accounts/primary/credentials", {"access_token": "x"}),
    ("GET", "/admin/audit", None),
]


async def test_admin_routes_need_the_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            for token, status in ((None, 401), ("wrong", 401), (TOKENS["primary"], 403)):
                async with admin_http(running, token) as http:
                    for method, path, body in ROUTES:
                        response = await http.request(method, path, json=body)
                        assert response.status_code == status, (token, method, path)
                        assert response.json()["error"] in ("unauthorized", "forbidden")
            # The restart and credentials above were refused: nothing was audited.
            async with admin_http(running) as http:
                assert (await http.get("/admin/audit")).json()["entries"] == []


async def test_actors_reports_the_tree_and_every_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            body = await wait_tree(
                running,
                lambda b: upstream_is("primary", "connected")(b)
                and upstream_is("secondary", "connected")(b),
            )
            assert body["ok"] is True and body["summary"]["ok"] is True
            assert body["summary"]["degraded"] == []
            names = {entry["name"] for entry in body["actors"]}
            assert {"store", "venue", "web", "account:primary", "account:secondary"} <= names
            primary = actor_entry(body, "account:primary")
            assert primary["kind"] == "actor" and primary["state"] == "running"
            assert primary["restarts"] == 0
            assert set(body["accounts"]) == {"primary", "secondary"}
            assert body["accounts"]["secondary"]["subscribers"] == 0
            assert body["batches"]["recoveries_pending"] == 0


async def test_expired_token_degrades_and_new_credentials_reconnect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            await wait_tree(running, upstream_is("primary", "connected"))
            await expire_at_venue(running, "primary")
            body = await wait_tree(running, upstream_is("primary", "auth_expired"))
            assert body["ok"] is False  # 200 all the same: the CLI decides the exit code
            assert body["summary"]["degraded"] == ["account:primary"]
            assert actor_entry(body, "account:primary")["degraded"] is True
            assert "auth_expired" in {r["code"] for r in actor_entry(
                body, "account:primary")["reasons"]}
            assert body["accounts"]["secondary"]["upstream"] == "connected"

            token = await new_venue_token(running, "primary")
            async with admin_http(running) as http:
                loaded_at = trio.current_time()
                response = await http.put(
                    "/admin/accounts/primary/credentials", json={"access_token": token}
                )
                assert response.status_code == 200, response.text
                assert response.json()["upstream_before"] == "auth_expired"
            await wait_tree(running, upstream_is("primary", "connected"))
            body = await wait_tree(running, lambda b: b["ok"])  # after RECOVERY_S connected
            assert trio.current_time() - loaded_at >= RECOVERY_S
            assert actor_entry(body, "account:primary")["restarts"] == 0  # no restart needed

            async with admin_http(running) as http:
                audit = (await http.get("/admin/audit", params={"account": "primary"})).json()
            [entry] = audit["entries"]
            assert entry["action"] == "credentials" and entry["actor_name"] == "admin"
            assert entry["account"] == "primary" and entry["order_id"] is None
            assert token not in str(audit)  # the token's value is never stored


@attrs.frozen
class BadCredentials:
    name: str
    body: Any
    path: str
    rule: str


BAD_CREDENTIALS = [
    BadCredentials("missing", {}, "access_token", "required"),
    BadCredentials("null", {"access_token": None}, "access_token", "required"),
    BadCredentials("empty", {"access_token": ""}, "access_token", "non_empty"),
    BadCredentials("blank", {"access_token": "   "}, "access_token", "non_empty"),
    BadCredentials("number", {"access_token": 42}, "access_token", "type"),
    BadCredentials("not ASCII", {"access_token": "tok\u00e9n"}, "access_token",
                   "printable_ascii"),
    BadCredentials("control character", {"access_token": "tok\x01en"}, "access_token",
                   "printable_ascii"),
    BadCredentials("too long", {"access_token": "x" * 257}, "access_token", "max_length"),
]


async def test_credentials_input_is_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            async with admin_http(running) as http:
                for case in BAD_CREDENTIALS:
                    response = await http.put(
                        "/admin/accounts/primary/credentials", json=case.body
                    )
                    assert response.status_code == 422, case.name
                    body = response.json()
                    assert body["error"] == "invalid"
                    assert [(f["path"], f["rule"]) for f in body["fields"]] == [
                        (case.path, case.rule)
                    ], case.name
                ok = await http.put(
                    "/admin/accounts/primary/credentials", json={"access_token": "x" * 256}
                )
                # 256 characters is the limit, inclusive: it passes the checks and reaches
                # the broker, which refuses a token it never issued.
                assert [(f["path"], f["rule"]) for f in ok.json()["fields"]] == [
                    ("access_token", "refused_by_broker")
                ]
                unknown = await http.put(
                    "/admin/accounts/nobody/credentials", json={"access_token": "tok"}
                )
                assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
                garbage = await http.put(
                    "/admin/accounts/primary/credentials",
                    content=b"{not json",
                    headers={"Content-Type": "application/json"},
                )
                assert garbage.status_code == 400


async def test_restart_restarts_one_actor_and_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            await wait_tree(running, upstream_is("primary", "connected"))
            async with admin_http(running) as http:
                response = await http.post("/admin/accounts/primary/restart")
                assert response.status_code == 200, response.text
                assert response.json()["restarted"] is True
                assert response.json()["restarts"] == 1
                unknown = await http.post("/admin/accounts/nobody/restart")
                assert unknown.status_code == 404
            body = await wait_tree(running, upstream_is("primary", "connected"))
            assert actor_entry(body, "account:primary")["restarts"] == 1
            assert actor_entry(body, "account:primary")["state"] == "running"
            assert actor_entry(body, "account:secondary")["restarts"] == 0
            async with admin_http(running) as http:
                audit = (await http.get("/admin/audit")).json()
            assert [(e["account"], e["action"]) for e in audit["entries"]] == [
                ("primary", "restart")
            ]


async def test_audit_lists_entries_by_account_with_a_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from store import AuditEntry

    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            for i in range(5):
                account = "primary" if i % 2 == 0 else "secondary"
                await running.store.record_audit(
                    AuditEntry(account, "primary-desk", "place", f"ord{i}", {"i": i}, 1000.0 + i)
                )
            async with admin_http(running) as http:
                everything = (await http.get("/admin/audit")).json()
                assert len(everything["entries"]) == 5
                assert everything["limit"] == 100
                primary = (await http.get("/admin/audit?account=primary")).json()["entries"]
                assert {e["order_id"] for e in primary} == {"ord0", "ord2", "ord4"}
                assert all(e["actor_name"] == "primary-desk" for e in primary)
                two = (await http.get("/admin/audit?limit=2")).json()["entries"]
                assert len(two) == 2
                for bad in ("0", "1001", "many"):
                    response = await http.get(f"/admin/audit?limit={bad}")
                    assert response.status_code == 422
                    assert response.json()["fields"][0]["path"] == "limit"
