"""Health of the running service: a store outage shows in the tree (and in `orderdesk status`),
and one account's failure leaves the other account and the web front serving.

Against the real service (`open_service`): embedded paper venue, two paper accounts, the web
front on loopback. Waits are on state (the tree, websocket messages), never sleeps to settle.
"""

from __future__ import annotations

import secrets
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import attrs
import pytest
import trio
import trio_asyncio
import trio_websocket

from actors.account import AccountActor, ActorConfig
from supervision.service import Running
from supervision.supervisor import RestartPolicy
from supervision.upstream_watch import HealthPolicy
from tests.fixtures_admin import admin_tree, wait_tree
from tests.fixtures_orders import leg
from tests.fixtures_service import ADMIN, TOKENS, api, open_test_service, venue_control
from tests.fixtures_venue import nifty_symbols
from tests.fixtures_web import Reader

ORDERDESK = str(Path(sys.executable).parent / "orderdesk")
FAST_CHECK_S = 0.05


def entry(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in body["actors"] if e["name"] == name)


async def orderdesk_status(running: Running) -> tuple[int, str]:
    process = await trio.run_process(
        [ORDERDESK, "status", "--url", f"http://{running.web_bind}", "--token", ADMIN],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    return process.returncode, process.stdout.decode() + process.stderr.decode()


# -- the store in the tree ------------------------------------------------------------------


@asynccontextmanager
async def sqlite_outage(running: Running) -> AsyncIterator[None]:
    """The SQLite worker thread stuck (as on a hung disk): every call waits, health times out.

    The job blocks on a threading.Event, so it holds no GIL while the test runs."""
    released = threading.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(running.store._run, lambda conn: released.wait(60))  # type: ignore[attr-defined]
        try:
            yield
        finally:
            released.set()


def _pg(url: str, *statements: str) -> None:
    import asyncio

    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@attrs.frozen
class Database:
    engine: str
    url: str | None = None  # None: the service's default SQLite under tmp_path
    admin_url: str = ""  # Postgres: the maintenance database, to close this one
    name: str = ""


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """The store under test; Postgres gets a database of its own (it is closed to connections)."""
    if request.param == "sqlite":
        yield Database("sqlite")
        return
    base = request.getfixturevalue("pg_database").rpartition("/")[0]
    name = f"orderdesk_outage_{secrets.token_hex(4)}"
    _pg(f"{base}/postgres", f'CREATE DATABASE "{name}"')
    try:
        yield Database("postgres", f"{base}/{name}", f"{base}/postgres", name)
    finally:
        _pg(f"{base}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_store_outage_shows_in_the_tree_and_in_orderdesk_status(
    tmp_path: Path, database: Database
) -> None:
    with trio.fail_after(60):
        async with (
            trio_asyncio.open_loop(),
            open_test_service(
                tmp_path, database=database.url, store_check_s=FAST_CHECK_S
            ) as running,
        ):
            body = await wait_tree(running, lambda b: b["ok"])
            assert entry(body, "store")["state"] == "running"
            assert "store-monitor" in {e["name"] for e in body["actors"]}
            code, out = await orderdesk_status(running)
            assert code == 0, out
            async with api(running, None) as http:
                assert (await http.get("/ready")).status_code == 200

            if database.engine == "sqlite":
                outage = sqlite_outage(running)
            else:
                outage = pg_outage(database.admin_url, database.name)
            async with outage:
                body = await wait_tree(running, lambda b: entry(b, "store")["state"] == "failed")
                assert not body["ok"] and "store" in body["summary"]["degraded"]
                assert entry(body, "store")["last_error"]["type"] == "StoreUnavailable"
                code, out = await orderdesk_status(running)
                assert code == 1, out
                assert "degraded" in out and "store" in out
                async with api(running) as http:
                    health = await http.get("/health")  # liveness: the process answers
                    assert health.status_code == 200 and not health.json()["store"]["ok"]
                    assert health.json()["status"] == "degraded"
                    assert "store: failed" in health.json()["reasons"]
                    assert (await http.get("/ready")).status_code == 503

            body = await wait_tree(running, lambda b: entry(b, "store")["state"] == "running")
            assert body["ok"], body["summary"]
            async with api(running, None) as http:
                assert (await http.get("/ready")).status_code == 200
            code, out = await orderdesk_status(running)
            assert code == 0, out


@asynccontextmanager
async def pg_outage(admin_url: str, name: str) -> AsyncIterator[None]:
    """The service's database refuses connections and its sessions are terminated."""
    await trio.to_thread.run_sync(
        _pg, admin_url,
        f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
    )
    try:
        yield
    finally:
        await trio.to_thread.run_sync(
            _pg, admin_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'
        )


# -- one account failing ----------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when this returns


@attrs.frozen
class Failure:
    name: str
    expect_state: str  # the failing account's supervision state, in the end
    expect_upstream: str | None  # ... and its upstream, when it matters


FAILURES = [
    # its broker is a closed port: the actor keeps reconnecting (no crash)
    Failure("unreachable_broker", "running", "reconnecting"),
    # its actor raises on every start: restarted with backoff until marked failed
    Failure("crash_loop", "failed", None),
]


@pytest.mark.parametrize("failure", FAILURES, ids=lambda f: f.name)
async def test_one_account_failing_leaves_the_other_and_the_web_serving(
    tmp_path: Path, failure: Failure, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: dict[str, Any] = {}
    if failure.name == "unreachable_broker":
        port = closed_port()
        options["account_toml"] = {"secondary": (
            f'rest_url = "http://127.0.0.1:{port}"\nticker_url = "ws://127.0.0.1:{port}/"'
        )}
    else:
        follow = AccountActor._follow_upstream

        async def crashing(self: AccountActor) -> None:
            if self.account == "secondary":
                raise RuntimeError("secondary is broken")
            await follow(self)

        monkeypatch.setattr(AccountActor, "_follow_upstream", crashing)
        options["actor_policy"] = RestartPolicy(
            initial_delay=0.02, max_delay=0.2, jitter=0.01, max_restarts=4, period=60
        )
    with trio.fail_after(60):
        async with open_test_service(tmp_path, **options) as running:

            def settled(body: dict[str, Any]) -> bool:
                second = entry(body, "account:secondary")
                upstream = body["accounts"]["secondary"]["upstream"]
                return (body["accounts"]["primary"]["upstream"] == "connected"
                        and second["state"] == failure.expect_state
                        and (failure.expect_upstream in (None, upstream))
                        and (second["restarts"] >= 4 or failure.name != "crash_loop")
                        and second["degraded"])  # unreachable: within 3 s without a frame

            body = await wait_tree(running, settled)
            if failure.name == "crash_loop":
                assert entry(body, "account:secondary")["last_error"]["message"] == (
                    "secondary is broken")
            else:
                assert running.actors["secondary"].status()["reconnects"] >= 1
            assert entry(body, "account:primary")["restarts"] == 0
            assert entry(body, "web")["state"] == "running"
            await primary_streams(running)
            async with api(running) as http:
                health = await http.get("/health")
                assert health.status_code == 200, health.text
                assert health.json()["status"] == "degraded"
                assert health.json()["actors"]["connected"] == 1
                assert health.json()["actors"]["failed"] == int(failure.name == "crash_loop")
                assert health.json()["accounts"]["primary"]["degraded"] is False
                ws_status = await http.get("/ws/status")
                assert ws_status.status_code == 200, ws_status.text
                assert (await http.get("/ready")).status_code == 200  # one account down: ready


async def primary_streams(running: Running) -> None:
    """The primary account's websocket gets its snapshot and the update of a new order."""
    url = f"ws://{running.web_bind}/ws/orders/primary?access_token={TOKENS['primary']}"
    async with (
        trio_websocket.open_websocket_url(url) as ws,
        api(running) as http,
        venue_control(running) as venue,
    ):
        reader = Reader(ws)
        assert (await reader.until(lambda m: m.get("type") == "snapshot"))["type"] == "snapshot"
        fut, _ = await nifty_symbols(venue)
        placed = await http.post("/accounts/primary/orders", json=leg(fut))
        assert placed.status_code == 200, placed.text
        order_id = placed.json()["order_id"]
        update = await reader.until(
            lambda m: m.get("type") == "order" and m["order"]["order_id"] == order_id
            and m["order"]["status"] == "COMPLETE"
        )
        assert update["seq"] >= 1


# -- a stalled ticker ------------------------------------------------------------------------

#: Production's 3 reconnects / 60 s and 3 s without a frame; recovery shrunk from 60 s.
STALL_RECOVERY_S = 2.0
STALL_SAMPLES = 5


async def test_a_stalled_ticker_degrades_status_and_health_but_not_readiness(
    tmp_path: Path,
) -> None:
    """The venue's ticker sends nothing (no frames, no heartbeats): every `orderdesk status`
    sample exits 1 while it stays stalled, `/health` (200) says degraded and why, `/ready`
    stays 200; once frames flow again the accounts are ok after the recovery period."""
    config = ActorConfig(health=HealthPolicy(recovery_s=STALL_RECOVERY_S))
    with trio.fail_after(90):
        async with (
            open_test_service(tmp_path, actor_config=config) as running,
            venue_control(running) as venue,
            api(running, None) as anonymous,
            api(running, ADMIN) as admin,
        ):
            await wait_tree(running, lambda b: b["ok"])
            code, out = await orderdesk_status(running)
            assert code == 0, out

            stalled = await venue.post("/_venue/faults", json={"stall_ticker": True})
            assert stalled.status_code == 200, stalled.text
            body = await wait_tree(running, lambda b: "stalled" in reason_codes(b, "primary"))
            assert "account:primary" in body["summary"]["degraded"]
            codes = set()
            for _ in range(STALL_SAMPLES):  # across several stall-and-reconnect cycles
                code, out = await orderdesk_status(running)
                assert code == 1, out
                assert "degraded" in out and "account:primary" in out
                codes |= reason_codes(await admin_tree(running), "primary")

                health = await anonymous.get("/health")
                assert health.status_code == 200, health.text
                assert health.json()["status"] == "degraded"
                assert any(line.startswith("2 accounts: ") for line in health.json()["reasons"])
                assert "primary" not in health.text  # no account names without a token
                assert (await anonymous.get("/ready")).status_code == 200

                told = (await admin.get("/health")).json()
                assert told["accounts"]["primary"]["degraded"] is True
                assert any(line.startswith("account:primary: ") for line in told["reasons"])
            assert codes <= {"stalled", "unsteady"} and "stalled" in codes

            for path in ("/ws/status", "/accounts/health/status"):
                async with api(running) as own:
                    (view,) = (await own.get(path)).json()["accounts"]
                assert view["account"] == "primary" and view["degraded"] is True, view

            cleared = await venue.delete("/_venue/faults")
            assert cleared.status_code == 200, cleared.text
            flowing_at = trio.current_time()
            await wait_tree(running, lambda b: b["ok"], timeout_s=70)
            assert trio.current_time() - flowing_at >= STALL_RECOVERY_S
            code, out = await orderdesk_status(running)
            assert code == 0, out


def reason_codes(body: dict[str, Any], account: str) -> set[str]:
    return {r["code"] for r in entry(body, f"account:{account}")["reasons"]}
