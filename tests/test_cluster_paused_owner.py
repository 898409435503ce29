"""[cluster] an owner paused (SIGSTOP) between storing a leg's intent and calling the broker,
past its lease, then resumed. The legs of a batch are stored PLACING before their POSTs, and
with one order a second at the broker the later legs wait their turn after their intent is
stored: the owner is stopped right then. The standby takes the account over, finds by tag what
reached the broker and rolls the batch back. The old owner, resumed, must not send the legs it
was about to send (its lease deadline, on the monotonic clock, has passed), its store writes are
refused by epoch, and it steps down: the venue shows every tag at most once and a flat book."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio

from brokers.paper import VenueAddress
from tests.fixtures_cli import cli_env, running_orderdesk
from tests.fixtures_cluster import (
    NODE_LEASE_S,
    node_client,
    node_config,
    owner_is,
    primary,
    primary_metric,
)
from tests.fixtures_orders import batch_concluded, leg
from tests.fixtures_venue import kite_http, net_positions
from tests.fixtures_waits import wait_until

LEGS = 4  # placed one a second: when the first is at the venue, the rest wait with intents stored



async def refused_by_epoch(config: Path) -> float:
    return await primary_metric(config, "orderdesk_cluster_fenced_out_total")


async def test_a_paused_owner_resumed_past_its_lease_sends_nothing_and_steps_down(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url)
    one_a_second = "orders_per_s = 1\n"
    a_config = node_config(tmp_path, pg_url, key_prefix, "a", limits_toml=one_a_second)
    b_config = node_config(tmp_path, pg_url, key_prefix, "b", limits_toml=one_a_second)
    body = {"orders": [leg(quantity=75 * (i + 1)) for i in range(LEGS)],
            "rollback_on_failure": True, "timeout_s": 60}
    answers: list[httpx.Response | Exception] = []

    async def post_batch() -> None:
        async with node_client(a_config) as api:
            try:
                answers.append(await api.post("/accounts/primary/batch-orders", json=body,
                                              headers={"Idempotency-Key": "paused-1"}))
            except httpx.TransportError as exc:
                answers.append(exc)

    with trio.fail_after(120):
        async with (
            kite_http(venue) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a_config), env=env) as a,
            running_orderdesk(tmp_path / "b", "serve", "--config", str(b_config), env=env) as b,
            trio.open_nursery() as nursery,
        ):
            assert (await primary(a_config))["owner"]["state"] == "owner"
            epoch_a = (await primary(a_config))["owner"]["epoch"]
            nursery.start_soon(post_batch)

            async def first_leg_at_the_venue() -> list[dict[str, Any]] | None:
                orders = (await kite.get("/orders")).json()["data"]
                return orders or None

            await wait_until(first_leg_at_the_venue, "the first leg at the venue", 30,
                             poll_s=0.01)
            a.send_signal(signal.SIGSTOP)
            try:
                at_stop = {o["tag"] for o in (await kite.get("/orders")).json()["data"]}
                batch_id = next(iter(at_stop))[2:12]
                async with node_client(b_config) as api:
                    stored = (await api.get(f"/accounts/primary/batch-orders/{batch_id}")).json()
                intents = {item["tag"] for item in stored["legs"]}
                waiting = intents - at_stop  # stored PLACING, not sent when the owner stopped
                assert len(intents) == LEGS and waiting, (stored, at_stop)
                assert all(item["status"] == "PLACING" for item in stored["legs"]
                           if item["tag"] in waiting), stored

                await wait_until(owner_is(b_config), "b to own primary", NODE_LEASE_S + 20)
                async with node_client(b_config) as api:
                    result = await batch_concluded(api, batch_id, "b to recover the batch", 30)
                assert result["status"] == "rolled_back", result
                assert await net_positions(kite) == {}
            finally:
                a.send_signal(signal.SIGCONT)

            async def a_stepped_down() -> dict[str, Any] | None:
                owner = (await primary(a_config))["owner"]
                return owner if owner["state"] == "standby" and owner["last_step_down"] else None

            stepped = await wait_until(a_stepped_down, "a to step down", 30)
            assert "lease" in stepped["last_step_down"] or "fenced" in stepped["last_step_down"]
            assert (await primary(b_config))["owner"]["epoch"] > epoch_a
            # a's batch ends without another order: its answer comes (or its socket closes)
            await wait_until(lambda: bool(answers), "a's batch to end", 60)
            assert await refused_by_epoch(a_config) >= 1  # its leg writes after b's claim
            a.send_signal(signal.SIGTERM)  # everything a would ever send is sent by its exit
            with trio.fail_after(30):
                await a.wait()

            orders = (await kite.get("/orders")).json()["data"]
            sent = Counter(o["tag"] for o in orders)
            assert not waiting & set(sent), (waiting, sent)  # never sent, by either node
            assert all(n == 1 for n in sent.values()), sent
            assert await net_positions(kite) == {}
            async with node_client(b_config) as api:  # the store holds b's result, not a's
                assert (await api.get(f"/accounts/primary/batch-orders/{batch_id}")
                        ).json()["status"] == "rolled_back"
            assert b.returncode is None
