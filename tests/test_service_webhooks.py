"""Webhooks end to end through the running service: an account configured with
`webhooks = [{ url, secret_env }]` gets signed `order.updated`, `batch.completed` and
`batch.rolled_back` POSTs when orders and batches happen, and a receiver that is down at first
gets them once it comes up (the outbox retries). The receiver is tests/fixtures_webhooks.py's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from actors.webhooks import verify_signature
from supervision.service import Running
from tests.fixtures_cli import free_port
from tests.fixtures_orders import leg
from tests.fixtures_service import api, open_test_service, scrape_metrics, venue_control
from tests.fixtures_venue import nifty_symbols
from tests.fixtures_waits import wait_until
from tests.fixtures_webhooks import (
    ENVIRON,
    HOOK_SECRET,
    SERVICE_FAST,
    PortReceiver,
    Received,
    Receiver,
    hooks_for,
)


def verified(received: Received) -> dict[str, Any]:
    headers = received.headers
    assert verify_signature(
        HOOK_SECRET, headers["x-orderdesk-timestamp"], received.body,
        headers["x-orderdesk-signature"], tolerance_s=300,
    ), headers
    assert not verify_signature("wrong", headers["x-orderdesk-timestamp"], received.body,
                                headers["x-orderdesk-signature"])
    body: dict[str, Any] = json.loads(received.body)
    return body


def by_event(receiver: Receiver) -> dict[str, list[Received]]:
    events: dict[str, list[Received]] = {}
    for received in receiver.on("/hook"):
        if received.status == 200:
            events.setdefault(received.headers["x-orderdesk-event"], []).append(received)
    return events


def batch_ids(receiver: Receiver, event: str) -> set[str]:
    return {verified(r)["data"]["batch_id"] for r in by_event(receiver).get(event, [])}


async def run_batches(running: Running) -> tuple[str, str]:
    """One batch that completes, one whose leg is rejected and rolls back; their ids."""
    async with api(running) as http, venue_control(running) as venue:
        fut, opt = await nifty_symbols(venue)
        done = await http.post("/accounts/primary/batch-orders",
                               json={"orders": [leg(fut), leg(opt)]})
        assert done.status_code == 200 and done.json()["status"] == "success", done.text
        fault = await venue.post("/_venue/faults", json={"reject_symbols": [opt]})
        assert fault.status_code == 200, fault.text
        undone = await http.post("/accounts/primary/batch-orders",
                                 json={"orders": [leg(fut), leg(opt)]})
        assert undone.status_code == 200, undone.text
        assert undone.json()["status"] == "rolled_back", undone.text
        await venue.delete("/_venue/faults")
    return done.json()["batch_id"], undone.json()["batch_id"]


def delivered_everything(completed: str, rolled_back: str) -> Any:
    def check(receiver: Receiver) -> bool:
        return (completed in batch_ids(receiver, "batch.completed")
                and rolled_back in batch_ids(receiver, "batch.rolled_back")
                and len(by_event(receiver).get("order.updated", [])) >= 4)

    return check


async def test_signed_order_and_batch_events_reach_the_receiver(tmp_path: Path) -> None:
    receiver = PortReceiver(port=free_port())
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(receiver.serve)
            async with open_test_service(
                tmp_path, account_toml=hooks_for(receiver), environ=ENVIRON,
                webhook_config=SERVICE_FAST,
            ) as running:
                completed, rolled_back = await run_batches(running)
                await receiver.wait_for(delivered_everything(completed, rolled_back))
                events = by_event(receiver)
                for received in (r for rs in events.values() for r in rs):
                    body = verified(received)
                    assert received.headers["content-type"].startswith("application/json")
                    assert received.event_id
                    assert body["data"]
                order = verified(events["order.updated"][0])["data"]
                assert order["order"]["tag"] and order["seq"] >= 1
                result = next(verified(r)["data"] for r in events["batch.completed"])
                assert result["status"] == "success" and result["account"] == "primary"
                metrics = await scrape_metrics(running)
                assert 'webhook_deliveries_total{result="delivered"}' in metrics
            nursery.cancel_scope.cancel()
    # only the account with webhooks has them: secondary's events were never posted
    assert all(r.path == "/hook" for r in receiver.requests)


async def test_a_receiver_down_at_first_gets_every_event_once_it_is_up(tmp_path: Path) -> None:
    receiver = PortReceiver(port=free_port())  # nothing listens there yet
    with trio.fail_after(60):
        async with open_test_service(
            tmp_path, account_toml=hooks_for(receiver), environ=ENVIRON,
            webhook_config=SERVICE_FAST,
        ) as running:
            completed, rolled_back = await run_batches(running)
            async def retrying() -> bool:  # the sender tried, failed, and scheduled a retry
                return 'webhook_deliveries_total{result="retry"}' in await scrape_metrics(running)

            await wait_until(retrying, "a retry scheduled", 10)
            assert receiver.requests == []
            async with trio.open_nursery() as nursery:
                await nursery.start(receiver.serve)
                await receiver.wait_for(delivered_everything(completed, rolled_back))
                nursery.cancel_scope.cancel()
            for received in receiver.requests:
                verified(received)
            ids = [r.event_id for r in receiver.requests if r.status == 200]
            assert len(ids) == len(set(ids)), "an acknowledged event was delivered again"
