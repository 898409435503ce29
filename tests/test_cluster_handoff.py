"""[cluster] placement and handoff with real processes: `orderdesk serve` nodes on one Postgres and
one Redis, 12 accounts on one paper venue (in the test's process). Each node owns exactly the
accounts placed on it (placement.py); a node joining takes its share by handoff (a subscriber of
an account that moves, under load, sees every seq once, resuming with `since`); a node stopped
with SIGTERM hands its accounts over without their leases expiring; one killed with kill -9
fails over within a lease time, as without placement. `orderdesk cluster`'s report: accounts
per node, handoffs in progress."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from brokers.paper import VenueAddress
from supervision._cluster_command import _handoffs, _render, _report
from supervision.placement import place
from tests.fixtures_cli import cli_env, orderdesk, running_orderdesk
from tests.fixtures_cluster import NODE_LEASE_S, Follower, bind_of, node_config
from tests.fixtures_service import ADMIN, METRICS, TOKENS
from tests.fixtures_venue import kite_http, order_form
from tests.fixtures_venue import place as place_order
from tests.fixtures_waits import wait_until

EXTRA = [f"acct{i:02d}" for i in range(10)]
ACCOUNTS = [*TOKENS, *EXTRA]  # 12


def config_of(tmp_path: Path, pg_url: str, prefix: str, name: str) -> Path:
    config = node_config(tmp_path, pg_url, prefix, name)
    with config.open("a") as toml:
        toml.write("".join(f'\n[[accounts]]\nid = "{a}"\nbroker = "paper"\n'
                           f'tokens = [{{ name = "{a}-desk", token = "{a}-secret" }}]\n'
                           for a in EXTRA))
    return config


def placed(nodes: str) -> dict[str, set[str]]:
    """The accounts each of `nodes` (one letter each, equal weights) is placed."""
    found: dict[str, set[str]] = {node: set() for node in nodes}
    for account in ACCOUNTS:
        found[str(place(account, dict.fromkeys(nodes, 1.0)))].add(account)
    return found


async def owned(config: Path) -> set[str]:
    async with httpx.AsyncClient(base_url=f"http://{bind_of(config)}", timeout=5,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        accounts = (await http.get("/admin/actors")).json()["accounts"]
    return {a for a, view in accounts.items() if view["owner"]["state"] == "owner"}


def as_placed(configs: dict[str, Path]) -> Any:
    """A check for `wait_until`: each node owns exactly the accounts placed on it."""
    want = placed("".join(configs))

    async def check() -> bool:
        return all([await owned(config) == want[node] for node, config in configs.items()])

    return check


def handoffs_logged(node_dir: Path, to: str) -> list[float]:
    """When (wall clock) the node logged each handoff to node `to` it began."""
    started = []
    for line in (node_dir / "stderr.log").read_text().splitlines():
        if line.endswith(f": handing off to {to}"):
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            started.append(stamp.timestamp())
    return started


async def metric(config: Path, name: str) -> float:
    """The node's /metrics sample `name` (no labels)."""
    async with httpx.AsyncClient(base_url=f"http://{bind_of(config)}", timeout=5,
                                 headers={"Authorization": f"Bearer {METRICS}"}) as http:
        text = (await http.get("/metrics")).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name and not sample.labels)


async def owner_seq(account: str, configs: list[Path]) -> int | None:
    for config in configs:
        async with httpx.AsyncClient(base_url=f"http://{bind_of(config)}", timeout=5,
                                     headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            view = (await http.get("/admin/actors")).json()["accounts"][account]
        if view["owner"]["state"] == "owner":
            return int(view["seq"])
    return None


async def test_a_node_joining_takes_its_share_by_handoff_and_a_node_stopping_hands_it_back(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url)
    a, b, e = (config_of(tmp_path, pg_url, key_prefix, name) for name in "abe")
    moving = "secondary"  # a venue account, placed on a, then on e once e runs
    assert moving in placed("ab")["a"] and moving in placed("abe")["e"]
    follower = Follower(account=moving, token=f"{moving}-secret")
    on_node = [a]  # where the follower connects (again, with `since`) next
    with trio.fail_after(150):
        async with (
            kite_http(venue, moving) as kite,
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a), env=env),
            running_orderdesk(tmp_path / "b", "serve", "--config", str(b), env=env),
            trio.open_nursery() as nursery,
        ):
            await wait_until(as_placed({"a": a, "b": b}), "a and b to own their shares", 30)

            async def follow() -> None:
                while True:
                    await follower.follow(on_node[0])
                    await trio.sleep(0.1)  # a client's reconnect delay

            async def load() -> None:  # an order every 100 ms on the account that moves
                for price in range(20000, 21000):
                    await place_order(kite, order_form(price=price))
                    await trio.sleep(0.1)

            nursery.start_soon(follow)
            await wait_until(lambda: follower.snapshots == 1, "the snapshot from a")
            loading = trio.CancelScope()

            async def load_until_cancelled() -> None:
                with loading:
                    await load()

            nursery.start_soon(load_until_cancelled)
            await wait_until(lambda: len(follower.seqs) > 5, "updates through a")
            before = {n: await metric(config, "orderdesk_cluster_handoffs_done_total")
                      for n, config in (("a", a), ("b", b))}  # a handed b its share at start
            on_node[0] = e  # once a closes it (its owner handed the account off)
            async with running_orderdesk(tmp_path / "e", "serve", "--config", str(e),
                                         env=env) as e_node:
                await wait_until(as_placed({"a": a, "b": b, "e": e}), "e to take its share", 30)
                assert follower.closes, "a closed the subscriber when it handed off"
                started = handoffs_logged(tmp_path / "a", "e")  # paced: 5 a second
                assert len(started) == len(placed("ab")["a"] - placed("abe")["a"])
                assert all(t2 - t1 >= 0.19 for t1, t2 in zip(started, started[1:], strict=False))
                for n, config in (("a", a), ("b", b)):  # by handoff, not by lease expiry
                    moved = len(placed("ab")[n] - placed("abe")[n])
                    done = await metric(config, "orderdesk_cluster_handoffs_done_total")
                    assert done - before[n] == moved, (n, done, before)
                report = json.loads((await orderdesk(tmp_path, "cluster", "--config", str(a),
                                                     "--json", env=cli_env(tmp_path))).stdout)
                assert {n: report["nodes"][n]["accounts"] for n in "abe"} == {
                    n: len(accounts) for n, accounts in placed("abe").items()}
                mark = int(follower.last or 0)
                await wait_until(lambda: int(follower.last or 0) >= mark + 5, "updates via e")
                on_node[0] = a  # the account goes back to a when e stops
                e_node.send_signal(15)  # SIGTERM: a graceful stop
                stopped_at = trio.current_time()
                await wait_until(as_placed({"a": a, "b": b}), "a and b to own all again",
                                 NODE_LEASE_S + 10)
                took_s = trio.current_time() - stopped_at
                print(f"accounts back from e after SIGTERM: {took_s:.2f} s (lease {NODE_LEASE_S})")
                await e_node.wait()
                loading.cancel()

                async def caught_up() -> bool:
                    return follower.last == await owner_seq(moving, [a, b])

                await wait_until(caught_up, "the follower to see the last seq")
            nursery.cancel_scope.cancel()
    assert follower.snapshots == 1, follower  # each resume was a replay from `since`
    assert follower.gaps_and_repeats() == ([], []), follower.seqs
    assert len(follower.closes) >= 2, follower.closes  # a, then e, handed it off


async def test_kill_9_of_one_of_three_nodes_fails_its_accounts_over_within_a_lease(
    tmp_path: Path, pg_url: str, venue: VenueAddress, key_prefix: str
) -> None:
    env = cli_env(tmp_path, ORDERDESK_VENUE_URL=venue.rest_url)
    a, b, e = (config_of(tmp_path, pg_url, key_prefix, name) for name in "abe")
    with trio.fail_after(120):
        async with (
            running_orderdesk(tmp_path / "a", "serve", "--config", str(a), env=env),
            running_orderdesk(tmp_path / "b", "serve", "--config", str(b), env=env),
            running_orderdesk(tmp_path / "e", "serve", "--config", str(e), env=env) as e_node,
        ):
            await wait_until(as_placed({"a": a, "b": b, "e": e}), "each node's share", 30)
            e_node.kill()  # SIGKILL: no handoff, no release: its leases expire
            killed_at = trio.current_time()
            await e_node.wait()
            async def all_owned() -> bool:
                return (await owned(a)) | (await owned(b)) == set(ACCOUNTS)

            await wait_until(all_owned, "e's accounts owned again", NODE_LEASE_S + 10)
            took_s = trio.current_time() - killed_at
            await wait_until(as_placed({"a": a, "b": b}), "e's accounts where placed", 20)
            placed_s = trio.current_time() - killed_at
            print(f"after kill -9: e's accounts owned again in {took_s:.2f} s, each on its "
                  f"placed node in {placed_s:.2f} s (lease {NODE_LEASE_S})")
            assert took_s <= NODE_LEASE_S + 3, took_s  # as without placement
            report = json.loads((await orderdesk(tmp_path, "cluster", "--config", str(a),
                                                 "--json", env=cli_env(tmp_path))).stdout)
            assert report["handoffs"] == {} and report["nodes"]["e"]["accounts"] == 0


def test_the_cluster_report_counts_accounts_per_node_and_lists_handoffs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = time.time()
    nodes = {n: {"advertised": f"http://{n}", "seen_at": now, "forwards": True} for n in "ab"}
    holders = {"x": ("a", 3.0), "y": ("a", 3.0), "z": ("handoff:b", 2.0), "w": ("b", 1.0)}
    owners = {a: {"epoch": 2, "node": "a", "acquired_at": now} for a in holders}
    report = _report(4.0, nodes, holders, owners)
    report["handoffs"] = _handoffs(
        {"y": json.dumps({"from": "a", "to": "b", "since": now}), "bad": "{"}, holders)
    assert {n: row["accounts"] for n, row in report["nodes"].items()} == {"a": 2, "b": 1}
    assert report["handoffs"] == {
        "y": {"stage": "draining", "from": "a", "to": "b", "since": now},
        "z": {"stage": "released", "to": "b"}}
    assert report["problems"] == ["w: b holds the lease, a the epoch"]  # z: a handoff, not one
    _render(report)
    out = capsys.readouterr().out
    assert "handoffs in progress" in out and "draining" in out and "released" in out
