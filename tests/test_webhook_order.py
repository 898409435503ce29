"""Webhook order end to end, on SQLite and Postgres: a receiver sees each account's events in
seq order (every body carries `seq`), and a batch's event only after its legs' final
`order.updated`, even when the receiver fails at first (the outbox retries the failed event
before anything after it is sent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
import trio_asyncio

from actors.webhooks import WebhookConfig
from store import Store, WebhookDelivery
from supervision.service import Running
from tests.fixtures_orders import leg
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import NIFTY_CE, NIFTY_FUT
from tests.fixtures_webhooks import Receiver

SECRET_ENV = {"HOOK_SECRET": "hook-secret"}
FAST = WebhookConfig(timeout_s=0.5, initial_backoff_s=0.05, max_backoff_s=0.2, max_age_s=60,
                     poll_interval_s=0.05, lease_s=5)
FINAL = {"COMPLETE", "CANCELLED", "REJECTED"}
BATCHES = 4


def delivered(receiver: Receiver) -> list[dict[str, Any]]:
    """The bodies the receiver acknowledged, in the order they arrived."""
    return [json.loads(r.body) for r in receiver.on("/hook") if r.status == 200]


async def run_batches(running: Running) -> list[dict[str, Any]]:
    """Batches that complete and batches that roll back (a rejected leg), one after another."""
    results = []
    async with api(running) as http, venue_control(running) as venue:
        for n in range(BATCHES):
            rejecting = n % 2 == 1
            faults = {"reject_symbols": [NIFTY_CE] if rejecting else []}
            assert (await venue.post("/_venue/faults", json=faults)).status_code == 200
            response = await http.post(
                "/accounts/primary/batch-orders",
                json={"orders": [leg(NIFTY_FUT), leg(NIFTY_CE, "SELL")]})
            assert response.status_code == 200, response.text
            assert response.json()["status"] == ("rolled_back" if rejecting else "success")
            results.append(response.json())
    return results


async def test_events_arrive_in_seq_order_and_batches_after_their_legs(
    tmp_path: Path, store_url: str, nursery: trio.Nursery
) -> None:
    receiver = Receiver(fail={"/hook": 2})  # the first two posts fail: retried, in order
    await nursery.start(receiver.serve)
    hook = f'webhooks = [{{ url = "{receiver.url("/hook")}", secret_env = "HOOK_SECRET" }}]'
    with trio.fail_after(60):
        async with (
            trio_asyncio.open_loop(),
            open_test_service(tmp_path, database=store_url, account_toml={"primary": hook},
                              environ=SECRET_ENV, webhook_config=FAST) as running,
        ):
            results = await run_batches(running)
            last_seq = running.actors["primary"].seq
            ids = {result["batch_id"] for result in results}

            def everything(r: Receiver) -> bool:
                bodies = delivered(r)
                seqs = {b["seq"] for b in bodies if b["event_type"] == "order.updated"}
                batches = {b["data"]["batch_id"] for b in bodies
                           if b["event_type"].startswith("batch.")}
                return seqs >= set(range(1, last_seq + 1)) and batches >= ids

            await receiver.wait_for(everything)

    bodies = delivered(receiver)
    assert all(isinstance(b["seq"], int) for b in bodies), bodies
    seqs = [b["seq"] for b in bodies]
    assert seqs == sorted(seqs), seqs  # each account's events in seq order
    final_at: dict[str, int] = {}  # order_id -> index of its final update's delivery
    for index, body in enumerate(bodies):
        if body["event_type"] == "order.updated":
            order = body["data"]["order"]
            assert body["data"]["seq"] == body["seq"]
            if order["status"] in FINAL:
                final_at.setdefault(order["order_id"], index)
            continue
        legs = body["data"]["legs"]
        orders = [leg_["order_id"] for leg_ in legs if leg_["order_id"]]
        orders += [leg_["rollback"]["order_id"] for leg_ in legs
                   if leg_.get("rollback") and leg_["rollback"].get("order_id")]
        for order_id in orders:  # each leg (and reverse order) final before its batch's event
            assert final_at.get(order_id, len(bodies)) < index, (body["event_type"], order_id)


async def test_in_order_claims_hand_out_only_the_head_of_each_account_and_url(
    store: Store,
) -> None:
    def row(event_id: str, account: str = "acc", url: str = "https://a") -> WebhookDelivery:
        return WebhookDelivery(event_id, account, url, "order.updated", {"data": event_id})

    now = 2e9
    with trio.fail_after(10):
        await store.enqueue_webhooks([row("e1"), row("e2"), row("e3", url="https://b"),
                                      row("e4", account="other")])

        async def claim(at: float) -> list[str]:
            found = await store.claim_webhooks(10, at, 30, in_order=True)
            return [d.event_id for d in found]

        first = await store.claim_webhooks(10, now, 30, in_order=True)
        assert [d.event_id for d in first] == ["e1", "e3", "e4"]
        assert await claim(now + 1) == []  # e2 waits for e1, leased
        for delivered_row in first[1:]:
            await store.ack_webhook(delivered_row.id)  # type: ignore[arg-type]
        assert first[0].id is not None
        await store.retry_webhook(first[0].id, now + 100, "HTTP 500")
        assert await claim(now + 2) == []  # ... and for its retry
        assert await claim(now + 100) == ["e1"]
        await store.fail_webhook(first[0].id, "given up")  # a failed head no longer holds back
        assert await claim(now + 101) == ["e2"]
