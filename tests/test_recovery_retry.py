"""A recovery at start that fails is retried until it succeeds, or until the coordinator stops.

The crash is simulated as in test_batch_recovery (the store holds an unfinished batch, the venue
the leg that had reached it); the day's access token is expired at the venue when the coordinator
starts, so every recovery attempt fails with TokenExpired until a new token is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import httpx
import pytest
import trio

from actors.account import AccountActor
from actors.orders import BatchConfig, BatchCoordinator
from actors.requests import BatchRequest
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress
from store import Store, open_store
from tests.fixtures_desk import FAST, FAST_ACTOR, crashed_batch, place_at_venue
from tests.fixtures_orders import leg
from tests.fixtures_venue import kite_http
from tests.fixtures_web import replied, typed

RETRY = attrs.evolve(FAST, recovery_retry_initial_s=0.05, recovery_retry_max_s=0.2)
LEGS = [("BUY", "PLACED"), ("SELL", "PLACING")]


@attrs.define
class Started:
    coordinator: BatchCoordinator
    actor: AccountActor
    store: Store
    control: httpx.AsyncClient


@asynccontextmanager
async def start_expired(
    venue: VenueAddress, store_url: str, config: BatchConfig = RETRY
) -> AsyncIterator[Started]:
    """Expire the account's token at the venue, then start the actor and the coordinator (the
    actor parks in auth_expired: it is not waited for, unlike test_batch's `open_desk`)."""
    broker = KiteBroker(KiteSettings("paper", "paper-primary", venue.rest_url, venue.ticker_url,
                                     stall_timeout_s=2.0))
    async with (
        open_store(store_url) as store,
        httpx.AsyncClient(base_url=venue.rest_url, timeout=10.0) as control,
        trio.open_nursery() as nursery,
    ):
        expired = await control.post("/_venue/accounts/primary/expire")
        assert expired.status_code == 200, expired.text
        actor = AccountActor("primary", broker, store, FAST_ACTOR)
        await nursery.start(actor.run)
        coordinator = BatchCoordinator(store, {"primary": actor}, config)
        await nursery.start(coordinator.run)
        try:
            yield Started(coordinator, actor, store, control)
        finally:
            nursery.cancel_scope.cancel()
            await broker.aclose()


async def failures_reach(coordinator: BatchCoordinator, n: int) -> None:
    with trio.fail_after(10):
        await coordinator.statistics_until(lambda stats: stats.recovery_failures >= n)


async def test_failed_recovery_is_retried_until_a_new_token_is_loaded(
    venue: VenueAddress, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors.batch")
    batch_id, leg_tags = await crashed_batch(sqlite_url, "retry-1", LEGS)
    with trio.fail_after(30):
        await place_at_venue(venue, "BUY", leg_tags[0])  # what reached the broker
        async with start_expired(venue, sqlite_url) as started:
            coordinator = started.coordinator
            await failures_reach(coordinator, 3)  # retried, not given up after the first
            stats = coordinator.statistics()
            assert (stats.recoveries_pending, stats.batches_running) == (1, 0)
            found = await started.store.get_batch(batch_id)
            assert found is not None and found[0].status == "running"
            failed = [r for r in caplog.records
                      if r.levelno == logging.WARNING and "recovery of batch" in r.getMessage()]
            assert len(failed) >= 3 and "TokenExpired" in failed[0].getMessage()

            issued = await started.control.post("/_venue/accounts/primary/token")
            assert issued.status_code == 200, issued.text
            token = issued.json()["data"]["access_token"]
            started.actor.set_access_token(token)

            # A client retrying with the key waits for the recovered, final result.
            body = {"orders": [leg(side=side) for side, _ in LEGS]}
            status, result = await replied(coordinator.submit(
                "primary", *typed(body, BatchRequest), "retry-1", "test"))
            assert status == 200 and result["status"] == "rolled_back", result
            assert result["legs"][0]["rollback"]["action"] == "flattened"
            assert result["legs"][1]["status"] == "NOT_PLACED"
            stats = coordinator.statistics()
            assert (stats.recoveries_pending, stats.recoveries_retrying) == (0, 0)
            async with kite_http(venue, token=token) as kite:
                positions = (await kite.get("/portfolio/positions")).json()["data"]["net"]
                assert {p["tradingsymbol"]: p["quantity"] for p in positions
                        if p["quantity"]} == {}
                orders = (await kite.get("/orders")).json()["data"]
                assert sorted(o["tag"] for o in orders) == sorted(
                    [leg_tags[0], f"od{batch_id}0R0"])  # nothing placed twice


async def test_a_recovery_waiting_for_a_retry_gives_up_when_the_coordinator_drains(
    venue: VenueAddress, sqlite_url: str
) -> None:
    slow = attrs.evolve(RETRY, recovery_retry_initial_s=60.0, recovery_retry_max_s=60.0)
    batch_id, _ = await crashed_batch(sqlite_url, "retry-2", LEGS)
    with trio.fail_after(20):
        async with start_expired(venue, sqlite_url, slow) as started:
            await failures_reach(started.coordinator, 1)
            assert started.coordinator.statistics().recoveries_retrying == 1
            with trio.fail_after(2):  # not the minute its backoff would take
                await started.coordinator.drain(grace_s=10.0)
            assert started.coordinator.statistics().recoveries_pending == 0
            found = await started.store.get_batch(batch_id)
            assert found is not None and found[0].status == "running"  # for the next start
