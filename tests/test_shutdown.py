"""SIGTERM during a batch, through the real entry points as subprocesses.

The paper venue runs as its own process (`orderdesk venue`), so it outlives the gateway
(`orderdesk serve --config ...`) and a second gateway start sees what the first left behind.
The test waits on state (the store shows the batch running, the venue shows its legs), never on
sleeps to settle; then it signals the gateway and checks the exit, the stored batch, recovery
at the next start, and the venue's net positions.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from store import open_store
from supervision.settings import ConfigError, load_settings
from tests.fixtures_waits import wait_until

BIN = Path(sys.executable).parent
ORDERDESK = str(BIN / "orderdesk")
ADMIN = "admin-secret"
TOKEN = "primary-secret"
KITE = {"X-Kite-Version": "3", "Authorization": "token paper:paper-primary"}
UNFINISHED = ("running", "rolling_back")
WAIT_S = 20

CONFIG = """
[server]
bind = "127.0.0.1:{port}"
admin_token = "{admin}"
shutdown_grace_s = {grace}

[database]
url = "sqlite:///{tmp}/od.db"

[[accounts]]
id = "primary"
broker = "paper"
rest_url = "http://127.0.0.1:{venue_port}"
ticker_url = "ws://127.0.0.1:{venue_port}/"
tokens = ["{token}"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERDESK_")}
    env.update(ORDERDESK_VAR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    return env


@attrs.define(eq=False)
class Proc:
    process: trio.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@asynccontextmanager
async def spawn(tmp_path: Path, name: str, *args: str) -> AsyncIterator[Proc]:
    """`orderdesk ARGS...` with its output in tmp_path/NAME.log; killed if still running."""
    log = tmp_path / f"{name}.log"
    with log.open("ab") as out:
        process = await trio.lowlevel.open_process(
            [ORDERDESK, *args], cwd=tmp_path, env=_env(tmp_path),
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        yield Proc(process, log)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


#: Polls what the serve processes and the venue show, through their sockets.
until = functools.partial(wait_until, timeout_s=WAIT_S, retry_on=(httpx.TransportError,))


@attrs.define
class GatewayStack:
    """The standalone venue and the gateway's config; `gateway()` starts one serve process."""

    tmp_path: Path
    venue: httpx.AsyncClient
    config: Path
    port: int

    @asynccontextmanager
    async def gateway(self, name: str) -> AsyncIterator[tuple[Proc, httpx.AsyncClient]]:
        async with (
            spawn(self.tmp_path, name, "serve", "--config", str(self.config)) as proc,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        ):

            async def connected() -> bool:
                assert proc.process.returncode is None, proc.output()
                body = (await http.get("/health")).json()
                return body["status"] == "ok" and body["actors"]["connected"] == 1

            await until(connected, "the gateway serves with its upstream connected")
            yield proc, http

    async def orders(self) -> dict[str, dict[str, Any]]:
        rows = (await self.venue.get("/orders", headers=KITE)).json()["data"]
        return {row["tag"]: row for row in rows if row.get("tag")}

    async def positions(self) -> dict[str, int]:
        data = (await self.venue.get("/portfolio/positions", headers=KITE)).json()["data"]
        return {p["tradingsymbol"]: p["quantity"] for p in data["net"] if p["quantity"]}

    async def faults(self, **faults: Any) -> None:
        response = await self.venue.post("/_venue/faults", json=faults)
        assert response.status_code == 200, response.text

    async def ltp(self, symbol: str, price: float) -> None:
        response = await self.venue.post("/_venue/ltp", json={f"NFO:{symbol}": price})
        assert response.status_code == 200, response.text

    async def legs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A NIFTY future bought at market, and a NIFTY option LIMIT far under its price."""
        rows = list(csv.DictReader(io.StringIO((await self.venue.get("/instruments/NFO")).text)))
        nifty = sorted((r for r in rows if r["name"] == "NIFTY"), key=lambda r: r["expiry"])
        fut = next(r for r in nifty if r["instrument_type"] == "FUT")
        opt = next(r for r in nifty if r["instrument_type"] == "CE")
        key = f"NFO:{opt['tradingsymbol']}"
        ltp = (await self.venue.get("/quote/ltp", params={"i": key}, headers=KITE)).json()
        tick = float(opt["tick_size"])
        far = round(int(ltp["data"][key]["last_price"] * 0.5 / tick) * tick, 2)
        base = {"exchange": "NFO", "transaction_type": "BUY", "product": "NRML"}
        return (
            {**base, "tradingsymbol": fut["tradingsymbol"], "order_type": "MARKET",
             "quantity": int(fut["lot_size"])},
            {**base, "tradingsymbol": opt["tradingsymbol"], "order_type": "LIMIT",
             "price": far, "quantity": int(opt["lot_size"])},
        )


@asynccontextmanager
async def open_gateway_stack(tmp_path: Path, grace_s: float) -> AsyncIterator[GatewayStack]:
    venue_port, port = free_port(), free_port()
    config = tmp_path / "orderdesk.toml"
    config.write_text(CONFIG.format(port=port, admin=ADMIN, grace=grace_s, tmp=tmp_path,
                                    venue_port=venue_port, token=TOKEN))
    async with (
        spawn(tmp_path, "venue", "venue", "--bind", f"127.0.0.1:{venue_port}",
              "--accounts", "primary") as venue,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{venue_port}", timeout=10) as http,
    ):

        async def up() -> bool:
            assert venue.process.returncode is None, venue.output()
            return (await http.get("/instruments/NFO")).status_code == 200

        await until(up, "the venue serves")
        try:
            yield GatewayStack(tmp_path, http, config, port)
        finally:
            venue.process.send_signal(signal.SIGTERM)


async def submit_in_background(
    nursery: trio.Nursery, http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    """POST the batch; the gateway going down may cut the answer, which is fine here."""

    async def post() -> None:
        try:
            await http.post("/accounts/primary/batch-orders", json=body, timeout=120)
        except httpx.HTTPError:
            pass

    nursery.start_soon(post)


async def running_batch(desk: GatewayStack, legs_at_venue: frozenset[str]) -> tuple[str, list[str]]:
    """Wait until the store holds the batch as running and the venue shows each of its legs in
    one of `legs_at_venue`; its id and leg tags."""
    async with open_store(f"sqlite:///{desk.tmp_path}/od.db") as store:

        async def stored() -> tuple[str, list[str]] | None:
            unfinished = await store.unfinished_batches()
            if not unfinished:
                return None
            ((batch, records),) = unfinished
            assert batch.status == "running", batch
            return batch.batch_id, [r.tag for r in records if r.kind == "leg"]

        batch_id, tags = await until(stored, "the batch is stored, running")

    async def placed() -> bool:
        orders = await desk.orders()
        return all(orders.get(t, {}).get("status") in legs_at_venue for t in tags)

    await until(placed, f"every leg at the venue is one of {sorted(legs_at_venue)}")
    return batch_id, tags


async def stored_status(desk: GatewayStack, batch_id: str) -> str:
    async with open_store(f"sqlite:///{desk.tmp_path}/od.db") as store:
        found = await store.get_batch(batch_id)
    assert found is not None
    return found[0].status


async def recovered(desk: GatewayStack, batch_id: str) -> dict[str, Any]:
    """Start the gateway again: its recovery brings the batch to a final state."""
    async with desk.gateway("gateway-2") as (proc, http):

        async def final() -> dict[str, Any] | None:
            body = (await http.get(f"/accounts/primary/batch-orders/{batch_id}")).json()
            return body if body.get("status") in ("success", "rolled_back") else None

        result = await until(final, "recovery finishes the batch")
        proc.process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await proc.process.wait() == 0, proc.output()
    return result


@attrs.frozen
class Case:
    name: str
    grace_s: float
    cross_in_grace: bool  # after the signal the price comes down to the resting LIMIT leg
    expect: str  # the batch's final status
    flat: bool  # the venue's net positions end flat (else: both legs held)
    cut_short: bool = False  # the grace is binding: stored unfinished, exit soon after it


CASES = [
    # the resting leg fills inside the grace: the batch completes, nothing is undone
    Case("finishes_within_grace", grace_s=20, cross_in_grace=True, expect="success",
         flat=False),
    # the leg still rests when the grace runs out: the batch is cut short (the grace is
    # binding), stored unfinished; the next start cancels the leg and flattens the other
    Case("grace_runs_out", grace_s=0.5, cross_in_grace=False, expect="rolled_back", flat=True,
         cut_short=True),
]
#: Past the grace, at most one shielded call in flight (BatchConfig.place_timeout_s, 3 s) and
#: the process winding down.
CUT_SHORT_EXIT_S = 3 + 4


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_sigterm_during_a_batch(tmp_path: Path, case: Case) -> None:
    with trio.fail_after(90):
        async with open_gateway_stack(tmp_path, case.grace_s) as desk:
            market, limit = await desk.legs()
            body = {"orders": [market, limit], "timeout_s": 45}
            async with desk.gateway("gateway-1") as (proc, http), trio.open_nursery() as nursery:
                await submit_in_background(nursery, http, body)
                batch_id, tags = await running_batch(desk, frozenset({"OPEN", "COMPLETE"}))
                proc.process.send_signal(signal.SIGTERM)
                await until(lambda: "shutting down" in proc.output(), "the shutdown started")
                if case.cross_in_grace:
                    assert await stored_status(desk, batch_id) == "running"
                    await desk.ltp(limit["tradingsymbol"], limit["price"])
                with trio.fail_after(case.grace_s + (CUT_SHORT_EXIT_S if case.cut_short
                                                     else 20)):
                    code = await proc.process.wait()
                assert code == 0, proc.output()
            status = await stored_status(desk, batch_id)
            if case.cut_short:
                assert status in UNFINISHED, status
                assert f"batch {batch_id}: cut short by shutdown" in proc.output()
            else:  # finished in the shutdown, or (a rollback cut short) stored for recovery
                assert status in (case.expect, *UNFINISHED), status
            result = await recovered(desk, batch_id)
            assert result["status"] == case.expect, result
            positions = await desk.positions()
            if case.flat:
                assert positions == {}, positions
            else:
                assert positions == {market["tradingsymbol"]: market["quantity"],
                                     limit["tradingsymbol"]: limit["quantity"]}, positions
            orders = await desk.orders()
            assert all(orders[t]["status"] in ("COMPLETE", "CANCELLED") for t in tags), orders


async def test_second_signal_exits_at_once_and_the_next_start_recovers(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with open_gateway_stack(tmp_path, grace_s=60) as desk:
            market, limit = await desk.legs()
            body = {"orders": [market, limit], "timeout_s": 55}
            async with desk.gateway("gateway-1") as (proc, http), trio.open_nursery() as nursery:
                await submit_in_background(nursery, http, body)
                batch_id, _ = await running_batch(desk, frozenset({"OPEN", "COMPLETE"}))
                proc.process.send_signal(signal.SIGTERM)
                # The first signal started a shutdown that would wait up to 60 s for the batch.
                await until(lambda: "shutting down" in proc.output(), "the shutdown started")
                assert proc.process.returncode is None
                proc.process.send_signal(signal.SIGTERM)
                with trio.fail_after(5):
                    code = await proc.process.wait()
                assert code == -signal.SIGTERM, proc.output()
            # Cut short: stored unfinished, one leg filled and one resting at the venue.
            assert await stored_status(desk, batch_id) in UNFINISHED
            assert await desk.positions() == {market["tradingsymbol"]: market["quantity"]}
            result = await recovered(desk, batch_id)
            assert result["status"] == "rolled_back", result
            assert await desk.positions() == {}


@pytest.mark.parametrize(("line", "expect"), [
    ("", 10.0), ("shutdown_grace_s = 2.5", 2.5), ("shutdown_grace_s = 0", 0.0),
    ("shutdown_grace_s = -1", None), ('shutdown_grace_s = "10"', None),
    ("shutdown_grace_s = true", None),
])
def test_shutdown_grace_is_read_from_the_server_table(
    tmp_path: Path, line: str, expect: float | None
) -> None:
    path = tmp_path / "orderdesk.toml"
    text = CONFIG.format(port=1, admin=ADMIN, grace=0, tmp=tmp_path, venue_port=2, token=TOKEN)
    path.write_text(text.replace("shutdown_grace_s = 0\n", line + "\n"))
    if expect is None:
        with pytest.raises(ConfigError, match="server.shutdown_grace_s"):
            load_settings(str(path), environ={})
    else:
        assert load_settings(str(path), environ={}).shutdown_grace_s == expect
