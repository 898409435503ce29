"""[cluster] warm_standby: the standby keeps each account's ticker connection open, drops what it
reads there, and takes the connection over with the account: no connect at the takeover, and
nothing the dropped frames said is missing (the takeover's reconcile lists it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from brokers.paper import VenueAddress
from tests.fixtures_cluster import cluster_settings, cluster_toml
from tests.fixtures_service import open_test_service
from tests.fixtures_venue import kite_http, order_form, place, venue_orders
from tests.fixtures_waits import wait_until
from tests.test_cluster_ownership import run_node, seqs, state


async def ticker_connects(control: httpx.AsyncClient) -> tuple[int, int]:
    """The venue's ticker sockets: opened so far, open now."""
    data = (await control.get("/_venue/ticker/connects")).json()["data"]
    return len(data["connected_at"]), data["open"]


async def test_the_warm_standby_takes_its_kept_connection_over(
    aio_loop: Any, tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    with trio.fail_after(40):
        stop_a, a_stopped = trio.Event(), trio.Event()
        async with (
            trio.open_nursery() as nursery, kite_http(venue) as kite,
            httpx.AsyncClient(base_url=venue.rest_url, timeout=10) as control,
        ):
            a = await nursery.start(run_node, tmp_path, pg_url, venue, key_prefix, "a", stop_a,
                                    a_stopped)
            await place(kite, order_form())
            await wait_until(lambda: a.actors["primary"].seq >= 1, "a to commit the order")
            (tmp_path / "b").mkdir()
            async with open_test_service(
                tmp_path / "b", database=pg_url,
                environ={"ORDERDESK_VENUE_URL": venue.rest_url},
                extra_toml=cluster_toml(cluster_settings(key_prefix, "b", warm_standby=True)),
            ) as b:
                assert state(b) == "standby"
                warm = b.actors["primary"].warm
                assert warm is not None and b.actors["secondary"].warm is not None
                await wait_until(lambda: warm.opened == 1
                                 and b.actors["secondary"].warm.opened == 1,  # type: ignore
                                 "b to open its standby connections")
                # pushed to both nodes' sockets: a commits it, b drops it
                await place(kite, order_form(price=20001))
                await wait_until(lambda: a.actors["primary"].seq >= 2, "a to commit it")
                assert b.actors["primary"].seq == 0
                opened, _ = await ticker_connects(control)
                stop_a.set()  # a gives its leases up
                await a_stopped.wait()
                dropped = await place(kite, order_form(price=20002))  # b may still stand by
                await wait_until(lambda: state(b) == "owner" and state(b, "secondary") == "owner",
                                 "b to take both accounts", 5)
                await wait_until(lambda: b.actors["primary"].order(dropped) is not None,
                                 "b to have the order placed during the takeover")
                assert warm.taken == 1 and warm.opened == 1
                assert (await ticker_connects(control)) == (opened, 2)  # no connect: its own
                last = b.actors["primary"].seq
                await place(kite, order_form(price=20003))  # on the socket it took over
                await wait_until(lambda: b.actors["primary"].seq > last, "b to commit it")
                venue_status = {o["order_id"]: o["status"] for o in await venue_orders(kite)}
                assert {o["order_id"]: o["status"] for o in b.actors["primary"].orders()} == (
                    venue_status)
                assert await seqs(pg_url) == list(range(1, b.actors["primary"].seq + 1))
