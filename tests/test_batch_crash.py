"""The gateway killed mid-batch (SIGKILL, a real `orderdesk serve` process), then started again.

The paper venue runs as its own process (`orderdesk venue`), so it and its orders survive the
gateway's death, as a broker would. The test never sleeps to let things settle: it waits on
observable state (the store file, read-only; the venue's `/orders`; the gateway's answers) in
bounded loops, and every test is bounded on the Trio clock.

- Killed once the store shows the resting leg placed (the others COMPLETE): the next start rolls
  the batch back; the venue's net positions are back to the start and no tag was placed twice.
- Killed after every leg COMPLETE at the venue (the gateway frozen with SIGSTOP first, so it has
  not concluded the batch): the next start marks it `success` and places nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import trio

from tests.fixtures_orders import batch_concluded, leg, post_batch_never_answered
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_FUT, kite_headers
from tests.fixtures_waits import wait_until

ORDERDESK = Path(sys.executable).with_name("orderdesk")
PROCESS_START_S = 30.0  # deadlines, not waits: each ends as soon as its condition holds
TEST_TIMEOUT_S = 90.0
TOKEN = "primary-secret"
KEY = "crash-test-1"
T = TypeVar("T")

VENUE_TOML = """
[server]
admin_token = "unused"

[venue]
rate_limit_per_s = 0
read_limit_per_s = 0

[[accounts]]
id = "primary"
broker = "paper"
tokens = ["unused-account-token"]
"""

GATEWAY_TOML = """
[server]
admin_token = "admin-secret"

[database]
url = "sqlite:///{store}"

[[accounts]]
id = "primary"
broker = "paper"
rest_url = "{venue}"
ticker_url = "{ticker}"
tokens = ["{token}"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@attrs.frozen
class Stack:
    """The paths and addresses of one test's venue and gateways."""

    tmp: Path
    venue_port: int
    gateway_port: int

    @property
    def store(self) -> Path:
        return self.tmp / "od.db"

    @property
    def venue_url(self) -> str:
        return f"http://127.0.0.1:{self.venue_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERDESK_")}
        env.pop("DATABASE_URL", None)
        return {**env, "ORDERDESK_VAR": str(self.tmp / "var")}


@asynccontextmanager
async def running(stack: Stack, name: str, *args: str) -> AsyncIterator[trio.Process]:
    """`orderdesk ARGS` as a child process; stopped (SIGTERM, then SIGKILL) on the way out."""
    with (stack.tmp / f"{name}.log").open("ab") as log:
        process = await trio.lowlevel.open_process(
            [str(ORDERDESK), *args], stdout=log, stderr=subprocess.STDOUT, cwd=stack.tmp,
            env=stack.env(),
        )
        try:
            yield process
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGCONT)  # in case a test froze it
                    process.terminate()
                    with trio.move_on_after(5):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()


@asynccontextmanager
async def open_venue(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A standalone venue; yields a client for its Kite API as `primary` (and `/_venue`)."""
    (stack.tmp / "venue.toml").write_text(VENUE_TOML)
    async with (
        running(stack, "venue", "venue", "--config", str(stack.tmp / "venue.toml"),
                "--bind", f"127.0.0.1:{stack.venue_port}"),
        httpx.AsyncClient(base_url=stack.venue_url, headers=kite_headers(), timeout=10) as kite,
    ):
        # an interpreter start: seconds on a loaded machine
        await wait_until(lambda: _answers(kite, "/orders"), "the venue", PROCESS_START_S)
        yield kite


@asynccontextmanager
async def open_gateway(stack: Stack) -> AsyncIterator[tuple[trio.Process, httpx.AsyncClient]]:
    """`orderdesk serve` on the store and the venue; ready once `/health` answers 200."""
    config = stack.tmp / "orderdesk.toml"
    config.write_text(GATEWAY_TOML.format(store=stack.store, venue=stack.venue_url,
                                          ticker=stack.venue_url.replace("http", "ws") + "/",
                                          token=TOKEN))
    async with (
        running(stack, "gateway", "serve", "--config", str(config),
                "--bind", f"127.0.0.1:{stack.gateway_port}") as process,
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as api,
    ):
        await wait_until(lambda: _answers(api, "/health"), "the gateway", PROCESS_START_S)
        yield process, api


async def _answers(client: httpx.AsyncClient, path: str) -> bool:
    try:
        return (await client.get(path)).status_code == 200
    except httpx.TransportError:
        return False


# -- what the store and the venue show ----------------------------------------------------------


def _read_store(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The batch stored under KEY and its legs, read-only (the gateway owns the file)."""
    if not path.exists():
        return None, []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    conn.row_factory = sqlite3.Row
    try:
        batch = conn.execute("SELECT batch_id, status FROM batches WHERE idempotency_key = ?",
                             (KEY,)).fetchone()
        if batch is None:
            return None, []
        legs = conn.execute(
            "SELECT idx, kind, tag, status, order_id FROM batch_legs WHERE batch_id = ? "
            "ORDER BY kind, idx", (batch["batch_id"],)).fetchall()
        return dict(batch), [dict(leg) for leg in legs]
    except sqlite3.OperationalError:  # the schema is not there yet
        return None, []
    finally:
        conn.close()


async def stored(stack: Stack) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    return await trio.to_thread.run_sync(_read_store, stack.store)


def placed(leg: dict[str, Any]) -> bool:
    return leg["kind"] == "leg" and leg["order_id"] is not None and leg["status"] not in (
        "PENDING", "PLACING", "UNKNOWN")


async def venue_orders(kite: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await kite.get("/orders")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


async def positions(kite: httpx.AsyncClient) -> dict[str, int]:
    response = await kite.get("/portfolio/positions")
    assert response.status_code == 200, response.text
    return {p["tradingsymbol"]: p["quantity"] for p in response.json()["data"]["net"]
            if p["quantity"]}


async def faults(kite: httpx.AsyncClient, **values: Any) -> None:
    response = await kite.post("/_venue/faults", json=values)
    assert response.status_code == 200, response.text


def new_stack(tmp_path: Path) -> Stack:
    return Stack(tmp_path, free_port(), free_port())


# -- the tests --------------------------------------------------------------------------------


async def test_killed_once_a_resting_leg_is_placed_rolls_back_at_the_next_start(
    tmp_path: Path,
) -> None:
    stack = new_stack(tmp_path)
    body = {"orders": [leg(NIFTY_FUT, "BUY", 75), leg(BANKNIFTY_FUT, "SELL", 35),
                       leg(NIFTY_FUT, "BUY", 75, order_type="LIMIT", price=20000.0)],
            "rollback_on_failure": True, "timeout_s": 60}
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_venue(stack) as kite:
            assert await positions(kite) == {}
            async with open_gateway(stack) as (gateway, api), trio.open_nursery() as client:
                client.start_soon(post_batch_never_answered, api, body, KEY)

                async def leg_2_placed() -> list[dict[str, Any]] | None:
                    batch, legs = await stored(stack)
                    done = (len(legs) == 3 and placed(legs[2])
                            and all(row["status"] == "COMPLETE" for row in legs[:2]))
                    return legs if done else None

                await wait_until(leg_2_placed, "leg 2 placed, legs 0 and 1 COMPLETE")
                gateway.kill()  # SIGKILL: no shutdown grace, no rollback
                await gateway.wait()
            batch, legs = await stored(stack)
            assert batch is not None and batch["status"] == "running", batch
            batch_id = batch["batch_id"]
            assert {o["tag"]: o["status"] for o in await venue_orders(kite)} == {
                legs[0]["tag"]: "COMPLETE", legs[1]["tag"]: "COMPLETE", legs[2]["tag"]: "OPEN"}

            async with open_gateway(stack) as (_, api):
                result = await batch_concluded(api, batch_id, "recovery")
                assert result["status"] == "rolled_back", result
                assert [item["rollback"]["action"] for item in result["legs"]] == [
                    "flattened", "flattened", "cancelled"]
                assert await positions(kite) == {}
                orders = await venue_orders(kite)
                tags = Counter(o["tag"] for o in orders)
                assert tags == Counter({legs[0]["tag"]: 1, legs[1]["tag"]: 1, legs[2]["tag"]: 1,
                                        f"od{batch_id}0R0": 1, f"od{batch_id}1R0": 1}), tags
                assert {o["tag"]: o["status"] for o in orders}[legs[2]["tag"]] == "CANCELLED"
                # The client retrying with the same key gets the recovered result.
                retry = await api.post("/accounts/primary/batch-orders", json=body,
                                       headers={"Idempotency-Key": KEY})
                assert retry.status_code == 200 and retry.json() == result
                assert len(await venue_orders(kite)) == 5


async def test_killed_after_every_leg_completed_is_success_at_the_next_start(
    tmp_path: Path,
) -> None:
    stack = new_stack(tmp_path)
    body = {"orders": [leg(NIFTY_FUT, "BUY", 75), leg(BANKNIFTY_FUT, "SELL", 35)],
            "rollback_on_failure": True, "timeout_s": 60}
    with trio.fail_after(TEST_TIMEOUT_S):
        async with open_venue(stack) as kite:
            await faults(kite, fill_delay_ms=1500)  # placed, then OPEN for 1.5 s
            async with open_gateway(stack) as (gateway, api), trio.open_nursery() as client:
                client.start_soon(post_batch_never_answered, api, body, KEY)

                async def all_placed() -> list[dict[str, Any]] | None:
                    _, legs = await stored(stack)
                    return legs if len(legs) == 2 and all(map(placed, legs)) else None

                legs = await wait_until(all_placed, "both legs placed")
                # Freeze the gateway so it cannot conclude, let the venue fill, then kill it.
                gateway.send_signal(signal.SIGSTOP)

                async def all_complete() -> bool:
                    return {o["tag"]: o["status"] for o in await venue_orders(kite)} == {
                        row["tag"]: "COMPLETE" for row in legs}

                await wait_until(all_complete, "both legs COMPLETE at the venue")
                gateway.kill()
                await gateway.wait()
            batch, _ = await stored(stack)
            assert batch is not None and batch["status"] == "running", batch
            await faults(kite, fill_delay_ms=0)

            async with open_gateway(stack) as (_, api):
                result = await batch_concluded(api, batch["batch_id"], "recovery")
                assert result["status"] == "success", result
                assert [item["status"] for item in result["legs"]] == ["COMPLETE"] * 2
                assert [item["filled_quantity"] for item in result["legs"]] == [75, 35]
                assert await positions(kite) == {NIFTY_FUT: 75, BANKNIFTY_FUT: -35}
                tags = Counter(o["tag"] for o in await venue_orders(kite))
                assert tags == Counter({row["tag"]: 1 for row in legs}), tags
