"""`/metrics` moves with the service: orders flowing, batches running, websockets connecting and
the upstream reconnecting (the venue drops its ticker). Against the real service; every wait is
on a scrape or a websocket message, never a sleep to settle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import trio
import trio_websocket
from prometheus_client.parser import text_string_to_metric_families

from actors.account import ActorConfig
from supervision.service import Running
from tests.fixtures_orders import leg
from tests.fixtures_service import METRICS, TOKENS, api, open_test_service, venue_control
from tests.fixtures_venue import nifty_symbols
from tests.fixtures_waits import wait_until
from tests.fixtures_web import Reader

FAST_ACTOR = ActorConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, reconnect_jitter_s=0.01)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(running: Running) -> Samples:
    async with api(running, METRICS) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until_scraped(running: Running, predicate: Callable[[Samples], bool]) -> Samples:
    async def matching() -> Samples | None:
        samples = await scrape(running)
        return samples if predicate(samples) else None

    return await wait_until(matching, "the scraped metrics", math.inf)


async def test_metrics_move_with_orders_batches_websockets_and_reconnects(
    tmp_path: Any,
) -> None:
    with trio.fail_after(60):
        async with (
            open_test_service(tmp_path, actor_config=FAST_ACTOR) as running,
            api(running) as http,
            venue_control(running) as venue,
        ):
            before = await until_scraped(
                running, lambda s: value(s, "upstream_connected", account="primary") == 1
            )
            assert value(before, "websocket_connections", account="primary") == 0

            # a websocket subscriber
            url = f"ws://{running.web_bind}/ws/orders/primary?access_token={TOKENS['primary']}"
            async with trio_websocket.open_websocket_url(url) as ws:
                reader = Reader(ws)
                await reader.until(lambda m: m.get("type") == "snapshot")
                connected = await scrape(running)
                assert value(connected, "websocket_connections", account="primary") == 1
                assert value(connected, "websocket_connections", account="secondary") == 0

                # a batch: its orders flow to the subscriber and into the counters
                fut, opt = await nifty_symbols(venue)
                body = {"orders": [leg(fut), leg(opt)]}
                response = await http.post("/accounts/primary/batch-orders", json=body)
                assert response.status_code == 200 and response.json()["status"] == "success"
                await reader.until(lambda m: m.get("type") == "order"
                                   and m["order"]["status"] == "COMPLETE")
            # A success is answered once every leg is COMPLETE; the batch's final status is
            # stored, counted and its event emitted just after (answer.py), so wait for both.
            after = await until_scraped(
                running, lambda s: value(s, "websocket_connections", account="primary") == 0
                and value(s, "batch_duration_seconds_count")
                > value(before, "batch_duration_seconds_count"))
            assert value(after, "order_updates_total", account="primary") >= value(
                before, "order_updates_total", account="primary") + 2
            assert value(after, "order_updates_total", account="secondary") == value(
                before, "order_updates_total", account="secondary")
            assert value(after, "batch_orders_total", status="success") == value(
                before, "batch_orders_total", status="success") + 1
            assert value(after, "batch_duration_seconds_count") == value(
                before, "batch_duration_seconds_count") + 1
            assert value(after, "batch_duration_seconds_sum") > value(
                before, "batch_duration_seconds_sum")
            assert value(after, "websocket_connection_duration_seconds_count") == value(
                before, "websocket_connection_duration_seconds_count") + 1

            # the venue drops every ticker socket: the actors reconnect
            dropped = await venue.post("/_venue/faults", json={"drop_ticker": True})
            assert dropped.status_code == 200, dropped.text
            await until_scraped(running, lambda s: all(
                value(s, "upstream_reconnects_total", account=a)
                > value(after, "upstream_reconnects_total", account=a)
                and value(s, "upstream_connected", account=a) == 1
                for a in ("primary", "secondary")
            ))


async def test_metrics_bind_serves_metrics_alone_without_a_token(tmp_path: Any) -> None:
    """`[server] metrics_bind`: a listener of its own for Prometheus, `/metrics` and nothing
    else, no token; the main bind still wants the metrics_token."""
    with trio.fail_after(30):
        async with open_test_service(
            tmp_path, server_toml='metrics_bind = "127.0.0.1:0"'
        ) as running:
            assert running.metrics_bind is not None
            assert running.metrics_bind != running.web_bind
            async with httpx.AsyncClient(
                base_url=f"http://{running.metrics_bind}", timeout=10
            ) as http:
                response = await http.get("/metrics")
                assert response.status_code == 200, response.text
                assert response.headers["content-type"].startswith("text/plain")
                assert 'upstream_connected{account="primary"}' in response.text
                for path in ("/health", "/accounts/primary/orders", "/admin/actors", "/"):
                    other = await http.get(path)
                    assert other.status_code == 404, (path, other.text)
                    assert other.json()["error"] == "not_found"
            async with api(running, None) as main:
                assert (await main.get("/metrics")).status_code == 401
