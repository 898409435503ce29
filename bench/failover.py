"""Failover of a two-node cluster under load (issue 18).

    .venv/bin/python bench/failover.py [--accounts 20] [--kills 3] [--follow {any,owner}]
        [--rate 20] [--lease 4] [--renew 0.4] [--margin 0.4]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/0] [--logs DIR]

A paper venue (`orderdesk venue`) and two `orderdesk serve` nodes with `[cluster]` (lease
--lease s, renewed every --renew s, margin --margin s) on a throwaway Postgres database and one
Redis, each its own process. One websocket subscriber per account, resuming with
`since=<last seq>` after every close. With `--follow any` (the default: issue 18's "subscribers
on both", and what a client behind a load balancer does now that any node serves any account,
the non-owner from the account's Redis stream), account i's subscriber starts on node i % 2, and
when its socket closes it reconnects at once to the other node (a refusal or a 503, a node not
able to follow the stream yet, is retried alternately after a short backoff); nothing moves it
back, as no load balancer would. One subscriber per account, not one per node: the same number
of sockets as `--follow owner`, so the two compare like for like, and half of them start on the
standby. With `--follow owner` (the behaviour before issue 19) it follows whichever node owns the
account (an owner map from both nodes' `/admin/actors`, polled every 100 ms): after a close it
connects to the owner the map names (none while the account has none; up to 100 ms stale).
The venue takes --rate MARKET orders a second in total, round-robin over the accounts, as the
accounts themselves would place them.

--kills times: `kill -9` of the node owning the accounts, then at once one probe order per
account at the venue; the failover time of an account is kill -> its subscriber receives the
probe's update (from the new owner: after its lease is taken, the epoch claimed, the stream
reconciled). The killed node is started again before the next kill, which waits until it owns
every account again (b weighs 1e-6 in placement: a takes them all back by handoff). One JSON line
per kill (min/median/max over the accounts, `all_owned_s`: kill -> the new owner's
`/admin/actors` shows every account owned, and `takeover_cpu_ms_per_account`: the CPU the new
owner's process used from the kill until the last probe arrived, per account: steadier than the
times on a shared machine; `by_node`: the failover times of the subscribers that were on the
killed node at the kill, on the surviving one, or between sockets), then one summing up:
failover times over every kill, and what the subscribers missed or saw twice (seq gaps and
repeats across every reconnect; orders whose last status seen is not the venue's). Targets:
<= 5 s, 0, 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import coredis
import httpx
import trio
import trio_websocket

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_stack import ADMIN_TOKEN, ORDERDESK, free_port, open_venue, token_for  # noqa: E402
from _pg import throwaway_database  # noqa: E402
from fanout import nifty_future  # noqa: E402


@attrs.define(eq=False)
class Follower:
    """One account's subscriber: the seqs it saw and each order's last status and first
    sighting (monotonic)."""

    account: str
    last_seq: int | None = None
    gaps: int = 0
    repeats: int = 0
    reconnects: int = 0
    opened: int = 0  # websockets opened (the handshake done)
    resyncs: int = 0  # fresh snapshots after a reconnect (not a gap, but not a replay either)
    on: str | None = None  # the URL of the node whose websocket is open (None: between)
    statuses: dict[str, str] = attrs.field(factory=dict)
    first_seen: dict[str, float] = attrs.field(factory=dict)
    seen: trio.Event = attrs.field(factory=trio.Event)  # set (and replaced) on each update

    def absorb(self, message: dict[str, Any]) -> None:
        if message.get("type") == "snapshot":
            if self.last_seq is not None:  # `since` older than the replay buffer: a resync
                self.resyncs += 1
            self.last_seq = max(self.last_seq or 0, int(message["seq"]))
            for order in message.get("orders", []):
                self._order(order)
            return
        if message.get("type") != "order":
            return
        seq = int(message["seq"])
        if self.last_seq is not None:
            if seq <= self.last_seq:
                self.repeats += 1
                return
            self.gaps += seq - self.last_seq - 1
        self.last_seq = seq
        self._order(message.get("order") or {})

    def _order(self, order: dict[str, Any]) -> None:
        order_id = order.get("order_id")
        if not order_id:
            return
        self.statuses[order_id] = str(order.get("status"))
        self.first_seen.setdefault(order_id, time.monotonic())
        self.seen.set()
        self.seen = trio.Event()


@attrs.define(eq=False)
class Node:
    name: str
    port: int
    config: Path
    process: trio.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def node_toml(name: str, port: int, database: str, args: argparse.Namespace, prefix: str,
              venue: str, accounts: list[str], weight: float = 1.0) -> str:
    ticker = "ws" + venue.removeprefix("http") + "/"
    lines = [
        "[server]", f'bind = "127.0.0.1:{port}"', f'admin_token = "{ADMIN_TOKEN}"', "",
        "[database]", f'url = "{database}"', "",
        "[cluster]", f'redis_url = "{args.redis}"', f'node_id = "{name}"',
        f"lease_s = {args.lease}", f"renew_s = {args.renew}", f"margin_s = {args.margin}",
        f'key_prefix = "{prefix}"', f"warm_standby = {str(args.warm_standby).lower()}",
    ]
    lines += [] if weight == 1.0 else [f"weight = {weight}"]
    lines += [""]
    if args.connect_rate is not None:
        lines += ["[ticker]", f"connect_rate_per_s = {args.connect_rate}", ""]
    for account in accounts:
        lines += ["[[accounts]]", f'id = "{account}"', 'broker = "paper"',
                  f'tokens = ["{token_for(account)}"]', f'rest_url = "{venue}"',
                  f'ticker_url = "{ticker}"']
    return "\n".join(lines) + "\n"


async def start(node: Node, work: Path) -> None:
    """`orderdesk serve` for `node`, back once its /health answers."""
    with (work / f"{node.name}.log").open("ab") as log:
        node.process = await trio.lowlevel.open_process(
            [ORDERDESK, "serve", "--config", str(node.config)], stdout=log, stderr=log,
            env={**os.environ, "ORDERDESK_VAR": str(work / f"var-{node.name}")})
    async with httpx.AsyncClient(timeout=2) as http:
        with trio.fail_after(120):
            while True:
                try:
                    if (await http.get(f"{node.url}/health")).status_code in (200, 503):
                        return
                except httpx.HTTPError:
                    pass
                if node.process.poll() is not None:
                    raise RuntimeError(f"node {node.name} exited; see {work}/{node.name}.log")
                await trio.sleep(0.1)


async def stop(node: Node) -> None:
    process = node.process
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(10):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


async def stop_all(nodes: list[Node], redis_url: str, prefix: str) -> None:
    """Stop every node and delete the run's Redis keys (shielded: the run's cleanup)."""
    with trio.CancelScope(shield=True):
        for node in nodes:
            await stop(node)
        async with coredis.Redis.from_url(redis_url) as redis:
            keys = [k async for k in redis.scan_iter(match=f"{{{prefix}:*")]
            if keys:
                await redis.delete(keys)


async def owners(nodes: list[Node], into: dict[str, str]) -> None:
    """Keep `into` (account -> the URL of the node owning it) up to date, every 100 ms."""
    async with httpx.AsyncClient(timeout=1,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        while True:
            found: dict[str, str] = {}
            for node in nodes:
                try:
                    response = await http.get(f"{node.url}/admin/actors")
                    accounts = response.json()["accounts"]
                except (httpx.HTTPError, ValueError, KeyError):
                    continue
                for account, view in accounts.items():
                    if (view.get("owner") or {}).get("state") == "owner":
                        found[account] = node.url
            into.clear()
            into.update(found)
            await trio.sleep(0.1)


#: Placement (weighted rendezvous hashing) would spread the accounts over both nodes; b weighs
#: next to nothing, so a owns every account while it lives, and each kill is of the owner of
#: all of them (a: started again, it is handed every account back, 5 a second, before the next).
WEIGHTS = {"a": 1.0, "b": 1e-6}


#: A subscriber's websocket handshake gives up after this long (and connects again).
CONNECT_S = 5.0


#: `--follow any`: the first retry after a connect that failed, doubling up to the second.
RETRY_S = 0.05
RETRY_MAX_S = 0.4


async def subscribe(follower: Follower, url: str) -> bool:
    """One websocket to the account at `url` (`since` its last seq) until it closes; whether
    it opened."""
    account = follower.account
    since = "" if follower.last_seq is None else f"?since={follower.last_seq}"
    ws_url = url.replace("http", "ws", 1) + f"/ws/orders/{account}{since}"
    opened = False
    # The connect is bounded here, not by trio-websocket's connect_timeout: when that
    # fires after the socket opened (a loaded bench process), open_websocket_url waits
    # for its reader task, which the frames already received (snapshot, status) keep
    # blocked on its one-message queue: the subscriber would hang for good.
    connecting = trio.CancelScope(deadline=trio.current_time() + CONNECT_S)
    try:
        with connecting:
            async with trio_websocket.open_websocket_url(
                    ws_url, extra_headers=[("Authorization", f"Bearer {token_for(account)}")],
                    connect_timeout=2 * CONNECT_S) as ws:
                connecting.deadline = math.inf
                follower.opened += 1
                follower.on = url
                opened = True
                while True:
                    payload = json.loads(await ws.get_message())
                    for message in payload if isinstance(payload, list) else [payload]:
                        follower.absorb(message)
    except (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError,
            trio.TooSlowError):
        pass
    finally:
        follower.on = None
    return opened


async def follow_owner(follower: Follower, owner_of: dict[str, str]) -> None:
    """`--follow owner`: subscribe at the node the owner map names, again after every close."""
    while True:
        url = owner_of.get(follower.account)
        if url is None:
            await trio.sleep(0.05)
            continue
        await subscribe(follower, url)
        follower.reconnects += 1
        await trio.sleep(0.05)


async def follow_any(follower: Follower, nodes: list[Node], first: int) -> None:
    """`--follow any`: start at `nodes[first]`; after a close go at once to the other node,
    after a failed connect (refused, 503) to the other node after a short backoff."""
    turn = first
    backoff = RETRY_S
    while True:
        opened = await subscribe(follower, nodes[turn % len(nodes)].url)
        follower.reconnects += 1
        turn += 1
        if opened:
            backoff = RETRY_S
            continue
        await trio.sleep(backoff)
        backoff = min(2 * backoff, RETRY_MAX_S)


class Venue:
    """Places MARKET orders at the venue as each account (Kite REST)."""

    def __init__(self, http: httpx.AsyncClient, symbol: str, lot: int) -> None:
        self._http = http
        self._form = {"variety": "regular", "exchange": "NFO", "tradingsymbol": symbol,
                      "transaction_type": "BUY", "order_type": "MARKET", "quantity": lot,
                      "product": "NRML", "validity": "DAY", "market_protection": -1}

    async def place(self, account: str) -> str:
        response = await self._http.post(
            "/orders/regular", data=self._form,
            headers={"X-Kite-Version": "3", "Authorization": f"token paper:paper-{account}"})
        response.raise_for_status()
        return str(response.json()["data"]["order_id"])

    async def orders(self, account: str) -> dict[str, str]:
        response = await self._http.get(
            "/orders", headers={"X-Kite-Version": "3",
                                "Authorization": f"token paper:paper-{account}"})
        response.raise_for_status()
        return {o["order_id"]: o["status"] for o in response.json()["data"]}

    async def load(self, accounts: list[str], rate: float) -> None:
        """--rate orders a second in total, round-robin over `accounts`, until cancelled."""
        if rate <= 0:
            return
        turn = 0
        while True:
            await self.place(accounts[turn % len(accounts)])
            turn += 1
            await trio.sleep(1 / rate)


async def until(check: Callable[[], bool], poll_s: float = 0.05) -> None:
    """Poll `check`: what it reads changes in other processes (no event tells of it)."""
    while True:
        if check():
            return
        await trio.sleep(poll_s)


def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "max": round(max(values), 3)}


async def one_kill(i: int, nodes: list[Node], owner_of: dict[str, str], venue: Venue,
                   followers: dict[str, Follower], work: Path) -> list[float]:
    """Kill the owner, probe every account, time each probe's arrival; restart the node."""
    accounts = list(followers)
    with trio.fail_after(120):
        await until(lambda: len(owner_of) == len(accounts)
                    and set(owner_of.values()) == {nodes[0].url})
    owner = nodes[0]  # the heavy one (WEIGHTS)
    assert owner.process is not None
    standby = next(n for n in nodes if n is not owner)
    cpu_before = cpu_s(standby)
    owner.process.kill()
    killed_at = time.monotonic()
    where = {a: f.on for a, f in followers.items()}
    probes: dict[str, str] = {}

    async def probe(account: str) -> None:
        probes[account] = await venue.place(account)

    owned: list[float] = []

    async def taken_over() -> None:  # the new owner's /admin/actors shows every account
        await until(lambda: len(owner_of) == len(accounts)
                    and owner.url not in owner_of.values(), poll_s=0.01)
        owned.append(time.monotonic() - killed_at)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(taken_over)
        async with trio.open_nursery() as probing:
            for account in accounts:
                probing.start_soon(probe, account)
        took = await arrivals(followers, probes, killed_at)
    takeover_cpu_s = cpu_s(standby) - cpu_before
    await owner.process.wait()
    groups = {"killed": owner.url, "surviving": standby.url, "between": None}
    by_node = {
        group: {"subscribers": sum(1 for a in accounts if where[a] == url),
                "failover_s": spread([t for a, t in took.items() if where[a] == url])}
        for group, url in groups.items()}
    print(json.dumps({"kill": i, "killed": owner.name, "accounts": len(accounts),
                      "all_owned_s": round(owned[0], 3), "arrived": len(took),
                      "failover_s": spread(list(took.values())), "by_node": by_node,
                      "takeover_cpu_ms_per_account": round(1000 * takeover_cpu_s / len(accounts),
                                                           2)}), flush=True)
    await start(owner, work)  # back as the standby
    return list(took.values())


def cpu_s(node: Node) -> float:
    """CPU seconds (user and system) `node`'s process has used so far (Linux)."""
    assert node.process is not None
    fields = Path(f"/proc/{node.process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def arrivals(followers: dict[str, Follower], probes: dict[str, str],
                   since: float) -> dict[str, float]:
    """Per account, seconds from `since` until its subscriber had its probe's update."""
    took: dict[str, float] = {}
    with trio.move_on_after(60):
        for account in probes:
            follower = followers[account]
            while probes[account] not in follower.first_seen:
                await follower.seen.wait()
            took[account] = follower.first_seen[probes[account]] - since
    return took


async def run(args: argparse.Namespace, database: str) -> None:
    accounts = [f"acct{i:03d}" for i in range(args.accounts)]
    prefix = f"bench{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="od-failover-") as tmp:
        work = Path(tmp if args.logs is None else tempfile.mkdtemp(dir=args.logs))
        async with open_venue(work, accounts) as venue_url:
            instrument = await nifty_future(venue_url)
            nodes = []
            for name in ("a", "b"):
                port = free_port()
                config = work / f"{name}.toml"
                config.write_text(node_toml(name, port, database, args, prefix, venue_url,
                                            accounts, weight=WEIGHTS[name]))
                nodes.append(Node(name, port, config))
            owner_of: dict[str, str] = {}
            followers = {a: Follower(a) for a in accounts}
            try:
                async with (
                    httpx.AsyncClient(base_url=venue_url, timeout=10) as http,
                    trio.open_nursery() as nursery,
                ):
                    venue = Venue(http, instrument.tradingsymbol, instrument.lot_size)
                    nursery.start_soon(owners, nodes, owner_of)
                    await start(nodes[0], work)
                    with trio.fail_after(120):  # a owns every account, then b is its standby
                        await until(lambda: len(owner_of) == len(accounts))
                    await start(nodes[1], work)
                    for n, follower in enumerate(followers.values()):
                        if args.follow == "any":
                            nursery.start_soon(follow_any, follower, nodes, n % len(nodes))
                        else:
                            nursery.start_soon(follow_owner, follower, owner_of)
                    with trio.move_on_after(120):
                        await until(lambda: all(f.last_seq is not None
                                                for f in followers.values()))
                    waiting = [a for a, f in followers.items() if f.last_seq is None]
                    if waiting:  # their owner flaps (see the nodes' "stepped down" lines)
                        print(json.dumps({"error": "no snapshot within 120 s",
                                          "accounts": args.accounts, "without": len(waiting),
                                          "opened_without": sum(followers[a].opened > 0
                                                                for a in waiting),
                                          "reconnects": sum(f.reconnects
                                                            for f in followers.values()),
                                          "owned_now": len(owner_of)}), flush=True)
                        nursery.cancel_scope.cancel()
                        return
                    load = trio.CancelScope()

                    async def loading() -> None:
                        with load:
                            await venue.load(accounts, args.rate)

                    nursery.start_soon(loading)
                    took: list[float] = []
                    for i in range(1, args.kills + 1):
                        took += await one_kill(i, nodes, owner_of, venue, followers, work)
                    load.cancel()
                    await summary(args, venue, followers, took)
                    nursery.cancel_scope.cancel()
            finally:
                await stop_all(nodes, args.redis, prefix)


async def summary(args: argparse.Namespace, venue: Venue, followers: dict[str, Follower],
                  took: list[float]) -> None:
    """Once every subscriber shows each order as the venue has it (or 10 s): the last line."""
    truth = {a: await venue.orders(a) for a in followers}

    def unconverged() -> int:
        return sum(1 for a, orders in truth.items() for order_id, status in orders.items()
                   if followers[a].statuses.get(order_id) != status)

    with trio.move_on_after(10):
        await until(lambda: not unconverged())
    print(json.dumps({
        "summary": True, "follow": args.follow, "accounts": args.accounts, "kills": args.kills,
        "rate": args.rate,
        "lease_s": args.lease, "renew_s": args.renew, "failover_s": spread(took),
        "orders": sum(len(o) for o in truth.values()),
        "lost_updates": sum(f.gaps for f in followers.values()),
        "duplicated_updates": sum(f.repeats for f in followers.values()),
        "orders_not_converged": unconverged(),
        "reconnects": sum(f.reconnects for f in followers.values()),
        "snapshot_resyncs": sum(f.resyncs for f in followers.values()),
        "targets": {"failover_s_max": 5, "lost": 0, "duplicated": 0},
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--follow", choices=("any", "owner"), default="any",
                        help="subscribers on both nodes, reconnecting to the other at once "
                             "(any), or each at its account's owner (owner)")
    parser.add_argument("--rate", type=float, default=20.0, help="venue orders a second")
    parser.add_argument("--lease", type=float, default=4.0, help="[cluster] lease_s")
    parser.add_argument("--renew", type=float, default=0.4, help="[cluster] renew_s")
    parser.add_argument("--margin", type=float, default=0.4, help="[cluster] margin_s")
    parser.add_argument("--warm-standby", action="store_true",
                        help="[cluster] warm_standby: the standby keeps each ticker socket open")
    parser.add_argument("--connect-rate", type=float, default=None,
                        help="[ticker] connect_rate_per_s (default: the node's, 200)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--logs", default=None,
                        help="keep the run's configs and logs in a new directory under LOGS")
    args = parser.parse_args()
    with throwaway_database(args.postgres, "od_failover") as database:
        trio.run(run, args, database)


if __name__ == "__main__":
    main()
