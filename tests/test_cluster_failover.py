"""[cluster] with real processes: two `orderdesk serve` on one Postgres and one Redis, trading on
one paper venue. `kill -9` of the owner: the other node owns the account within the lease time
and a few seconds, and the seq continues from the store. `orderdesk cluster` reports both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from brokers.paper import VenueAddress
from tests.fixtures_cli import cli_env, free_port, orderdesk, running_orderdesk
from tests.fixtures_cluster import NODE_LEASE_S, node_config, owner_is, primary
from tests.fixtures_venue import kite_http, order_form, place
from tests.fixtures_waits import wait_until

LEASE_S = NODE_LEASE_S


async def cluster_report(tmp_path: Path, config: Path) -> tuple[int, Any]:
    result = await orderdesk(tmp_path, "cluster", "--config", str(config), "--json",
                             env=cli_env(tmp_path))
    return result.code, (result.json() if result.code != 2 else result.stderr)


async def test_kill_9_of_the_owner_and_the_other_node_takes_over(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url)
    a_config = node_config(tmp_path, pg_url, key_prefix, "a")
    b_config = node_config(tmp_path, pg_url, key_prefix, "b")
    with trio.fail_after(90):
        async with (
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a_config), env=env) as a,
            kite_http(venue) as kite,
        ):
            assert (await primary(a_config))["owner"]["state"] == "owner"
            async with running_orderdesk(tmp_path / "b", "serve", "--config", str(b_config),
                                         env=env):
                seen_from_b = (await primary(b_config))["owner"]
                assert (seen_from_b["node"], seen_from_b["state"]) == ("a", "standby")
                code, report = await cluster_report(tmp_path, a_config)
                assert code == 0, report
                assert report["accounts"]["primary"]["owner"] == "a"
                assert report["accounts"]["primary"]["epoch"] == 1
                assert set(report["nodes"]) == {"a", "b"}
                for price in (20000, 20001):
                    await place(kite, order_form(price=price))
                await wait_until(lambda: _seq_at_least(a_config, 2), "a to commit both")
                last = (await primary(a_config))["seq"]

                a.kill()  # SIGKILL: no step-down, no release: b waits for the lease to expire
                killed_at = trio.current_time()
                await a.wait()
                await wait_until(owner_is(b_config), "b to own primary", LEASE_S + 5)
                took_s = trio.current_time() - killed_at
                print(f"takeover after kill -9: {took_s:.2f} s (lease {LEASE_S} s)")
                assert took_s <= LEASE_S + 3, took_s
                view = await primary(b_config)
                assert view["seq"] == last and view["owner"]["epoch"] == 2
                await place(kite, order_form(price=20002))
                await wait_until(lambda: _seq_at_least(b_config, last + 1), "b to commit")
                code, report = await cluster_report(tmp_path, b_config)
                assert code == 0, report
                assert report["accounts"]["primary"]["owner"] == "b"
                assert report["nodes"]["a"]["alive"] is False  # silent since the kill
                assert report["nodes"]["b"]["alive"] is True


async def _seq_at_least(config: Path, seq: int) -> bool:
    return int((await primary(config))["seq"]) >= seq


async def test_cluster_command_exit_codes(tmp_path: Path, pg_url: str, key_prefix: str) -> None:
    with trio.fail_after(30):
        config = node_config(tmp_path, pg_url, key_prefix, "a")
        code, report = await cluster_report(tmp_path, config)
        assert code == 1  # nobody owns anything yet
        assert report["problems"] == ["primary: no owner", "secondary: no owner"]
        down = node_config(tmp_path, pg_url, key_prefix, "down",
                           url=f"redis://127.0.0.1:{free_port()}/0")
        code, stderr = await cluster_report(tmp_path, down)
        assert code == 2
        assert stderr.strip().startswith("orderdesk: cannot reach Redis at redis://127.0.0.1:")
        assert len(stderr.strip().splitlines()) == 1
