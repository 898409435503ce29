"""[cluster] fan-out across nodes, in one process: the owner's `StreamAppender` and another node's
`StreamFeeds` on the real Redis (a key prefix of the test's own) and a store of the test's own.

The appender makes the stream a run of consecutive seqs, filling from the store what it lacks
(an owner that died before appending, Redis emptied); a subscriber fed from the stream gets the
seqs a local one would, whether it starts from a snapshot, from `since` in the stream or from
`since` older than the stream (the store), and the reader fills a jump from the store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import coredis
import pytest
import trio

from actors.account import ActorConfig, Subscription
from actors.account.frames import order_frame, status_frame
from actors.calendar import trading_day
from store import Store, open_store
from supervision.stream_append import StreamAppender, stream_key, upstream_key
from supervision.stream_feeds import StreamFeeds
from supervision.xread_connection import XReadConnection
from tests.fixtures_cluster import REDIS_URL, redis_proxy
from tests.fixtures_waits import wait_until

ACCOUNT = "primary"


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    client = coredis.Redis.from_url(REDIS_URL, decode_responses=True, stream_timeout=5)
    async with client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(f"sqlite:///{tmp_path / 'od.db'}") as opened:
        yield opened


class Owner:
    """Stands in for the owner's actor: commits updates to the store, then taps the appender."""

    def __init__(self, store: Store, appender: StreamAppender | None = None) -> None:
        self.store = store
        self.appender = appender
        self.count = 0

    async def commit(self, n: int = 1, *, tap: bool = True) -> list[int]:
        payloads = []
        for _ in range(n):
            self.count += 1
            payloads.append({"order_id": f"o{self.count}", "status": "OPEN", "tag": None,
                             "order_timestamp": f"{trading_day().isoformat()} 09:15:00"})
        seqs = await self.store.append_events(ACCOUNT, payloads)
        if tap and self.appender is not None:
            for seq, payload in zip(seqs, payloads, strict=True):
                self.appender.tap(seq, order_frame(ACCOUNT, seq, payload))
        return seqs


async def stream_seqs(redis: Any, prefix: str) -> list[str]:
    return [e.identifier for e in await redis.xrange(stream_key(prefix, ACCOUNT))]


def received(sub: Subscription) -> list[dict[str, Any]]:
    """What the subscription has been given so far: its initial messages, then its queue."""
    out = [json.loads(m) for m in sub.initial]
    sub.initial = []
    while True:
        try:
            out.append(json.loads(sub.receive.receive_nowait()))
        except trio.WouldBlock:
            return out


def seqs_of(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages if m["type"] == "order"]


async def test_the_stream_is_filled_from_the_store_and_again_after_redis_lost_it(
    redis: Any, store: Store, key_prefix: str
) -> None:
    appender = StreamAppender(redis, key_prefix, ACCOUNT, store, cap=3)
    owner = Owner(store, appender)
    await owner.commit(5, tap=False)  # committed by an owner that died before appending
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(appender.run, 5, status_frame(ACCOUNT, "connected"))
            # the last `cap` seqs from the store, then the status
            await wait_until(lambda: appender.appended == 5, "the stream to reach seq 5")
            assert await stream_seqs(redis, key_prefix) == ["3-0", "4-0", "5-0", "5-1"]
            assert json.loads(await redis.get(upstream_key(key_prefix, ACCOUNT)))["upstream"] \
                == "connected"
            await owner.commit(2)
            await wait_until(lambda: appender.appended == 7, "seqs 6 and 7 appended")
            entries = await redis.xrange(stream_key(key_prefix, ACCOUNT), "6-0", "+")
            assert [json.loads(e.field_values["m"])["seq"] for e in entries] == [6, 7]

            await redis.delete([stream_key(key_prefix, ACCOUNT),  # Redis restarted empty
                                upstream_key(key_prefix, ACCOUNT)])
            await owner.commit(1)
            await wait_until(lambda: appender.appended == 8, "seq 8 appended")
            assert await stream_seqs(redis, key_prefix) == ["5-0", "6-0", "7-0", "8-0", "8-1"]
            assert appender.fills == 2 and appender.errors == 0
            nursery.cancel_scope.cancel()


async def test_a_late_append_of_a_former_owner_changes_nothing(
    redis: Any, store: Store, key_prefix: str
) -> None:
    new = StreamAppender(redis, key_prefix, ACCOUNT, store, cap=100)
    old = StreamAppender(redis, key_prefix, ACCOUNT, store, cap=100)
    owner = Owner(store, new)
    await owner.commit(3)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(new.run, 0, status_frame(ACCOUNT, "connected"))
            await wait_until(lambda: new.appended == 3, "seqs 1..3 appended")
            old.tap(2, order_frame(ACCOUNT, 2, {"order_id": "stale"}))
            nursery.start_soon(old.run, 2, status_frame(ACCOUNT, "connected"))
            await wait_until(lambda: old.appended == 3, "the old owner to find the stream")
            entries = await redis.xrange(stream_key(key_prefix, ACCOUNT), "2-0", "2-0")
            assert json.loads(entries[0].field_values["m"])["order"]["order_id"] == "o2"
            nursery.cancel_scope.cancel()


async def test_subscribers_fed_from_the_stream_see_every_seq_once(
    redis: Any, store: Store, key_prefix: str
) -> None:
    appender = StreamAppender(redis, key_prefix, ACCOUNT, store, cap=5)
    owner = Owner(store, appender)
    feeds = StreamFeeds(redis, XReadConnection(REDIS_URL), key_prefix, store,
                        ActorConfig(replay_buffer=50))
    await owner.commit(3)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(appender.run, 0, status_frame(ACCOUNT, "connected"))
            await nursery.start(feeds.run)
            await wait_until(lambda: appender.appended == 3, "seqs 1..3 appended")

            fresh = await feeds.subscribe(ACCOUNT, None)  # a snapshot, then live
            first = received(fresh)
            assert first[0]["type"] == "snapshot" and first[0]["seq"] == 3
            assert [o["order_id"] for o in first[0]["orders"]] == ["o1", "o2", "o3"]
            assert first[1] == {"type": "status", "account": ACCOUNT, "upstream": "connected"}
            resumed = await feeds.subscribe(ACCOUNT, 1)  # 2 and 3 from the stream
            assert seqs_of(received(resumed)) == [2, 3]

            got: dict[str, list[int]] = {"fresh": [], "resumed": []}

            async def all_seen(upto: int) -> bool:
                for name, sub in (("fresh", fresh), ("resumed", resumed)):
                    got[name] += seqs_of(received(sub))
                return all(seqs and seqs[-1] == upto for seqs in got.values())

            for _ in range(10):  # while subscribers keep joining
                await owner.commit(2)
                joined = await feeds.subscribe(ACCOUNT, owner.count - 4)
                # from the stream, or live when the reader stood exactly at `since`
                seqs = seqs_of(received(joined))
                while not seqs:
                    seqs = seqs_of([json.loads(await joined.receive.receive())])
                assert seqs[0] == owner.count - 3
                feeds.unsubscribe(joined)
            await wait_until(lambda: all_seen(owner.count), "every seq delivered")
            assert got["fresh"] == got["resumed"] == list(range(4, owner.count + 1))

            # older than the stream (it keeps about 5): from the store, as far back as the
            # replay size; older than that: a snapshot
            old = await feeds.subscribe(ACCOUNT, 2)
            assert seqs_of(received(old)) == list(range(3, owner.count + 1))
            too_old = await feeds.subscribe(ACCOUNT, owner.count - 51)
            assert received(too_old)[0]["type"] == "snapshot"
            assert feeds.statistics()[ACCOUNT]["subscribers"] == 4
            nursery.cancel_scope.cancel()


async def test_the_reader_fills_a_jump_in_the_stream_from_the_store(
    redis: Any, store: Store, key_prefix: str
) -> None:
    appender = StreamAppender(redis, key_prefix, ACCOUNT, store, cap=100)
    owner = Owner(store, appender)
    feeds = StreamFeeds(redis, XReadConnection(REDIS_URL), key_prefix, store, ActorConfig())
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(appender.run, 0, status_frame(ACCOUNT, "connected"))
            await nursery.start(feeds.run)
            await owner.commit(2)
            await wait_until(lambda: appender.appended == 2, "seqs 1, 2 appended")
            sub = await feeds.subscribe(ACCOUNT, 2)
            assert seqs_of(received(sub)) == []
            await owner.commit(3, tap=False)  # never appended: the stream then starts over
            await redis.delete([stream_key(key_prefix, ACCOUNT)])
            await owner.commit(1)
            seen: list[int] = []

            async def upto_6() -> bool:
                seen.extend(seqs_of(received(sub)))
                return bool(seen) and seen[-1] == 6

            await wait_until(upto_6, "seq 6 delivered")
            assert seen == [3, 4, 5, 6]
            nursery.cancel_scope.cancel()


async def test_a_burst_of_subscribers_all_get_in_without_the_reader_reconnecting(
    redis: Any, store: Store, key_prefix: str
) -> None:
    accounts = [f"acct{i:02d}" for i in range(50)]
    appenders = [StreamAppender(redis, key_prefix, a, store, cap=100) for a in accounts]

    async def commit_all() -> None:
        for appender in appenders:
            [seq] = await store.append_events(appender.account, [{"order_id": "o", "tag": None}])
            appender.tap(seq, order_frame(appender.account, seq, {"order_id": "o"}))

    await commit_all()
    subs: list[Subscription] = []

    async def join(i: int) -> None:
        await trio.sleep(i * 0.004)  # arrivals spread over 0.4 s, as a load balancer sends them
        subs.append(await feeds.subscribe(accounts[i // 2], None))

    with trio.fail_after(30):
        async with redis_proxy() as proxy, trio.open_nursery() as nursery, \
                coredis.Redis.from_url(proxy.url, decode_responses=True,
                                       stream_timeout=5) as reader:
            xread = XReadConnection(proxy.url)
            feeds = StreamFeeds(reader, xread, key_prefix, store, ActorConfig())
            for appender in appenders:
                nursery.start_soon(appender.run, 0, status_frame(appender.account, "connected"))
            await nursery.start(feeds.run)
            await wait_until(lambda: all(a.appended == 1 for a in appenders), "seq 1 appended")
            async with trio.open_nursery() as joins:
                for i in range(2 * len(accounts)):
                    joins.start_soon(join, i)
            assert len(subs) == 100 and all(seqs_of(received(s)) == [] for s in subs)
            assert feeds.snapshot_reads == len(accounts)  # one per account, shared
            await commit_all()
            seen: dict[int, list[int]] = {id(s): [] for s in subs}

            def all_got_seq_2() -> bool:
                for sub in subs:
                    seen[id(sub)] += seqs_of(received(sub))
                return all(got == [2] for got in seen.values())

            await wait_until(all_got_seq_2, "every subscriber to get seq 2")
            # the blocking XREAD's connection and one shared by the other calls, kept
            assert proxy.connections <= 3, proxy.connections
            assert feeds.wakes > 0  # joins did find the reader blocked in XREAD
            assert xread.connects == 1
            nursery.cancel_scope.cancel()
