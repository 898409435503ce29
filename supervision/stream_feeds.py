"""[cluster]: this node's websocket subscribers of accounts it does not own, fed from their streams.

The owner appends every committed update to the account's Redis stream (stream_append.py); here
one reader task per node follows the streams of every account that has such subscribers here,
in one blocking XREAD: one Redis connection and one round trip for any number of accounts,
where a task per account would hold a connection each (it needs a single Redis, or one reader
per shard under Redis Cluster: a later slice).

An account joining must get into the XREAD under way. Cancelling it is no way to do that: a
connection whose blocking command is cancelled must be dropped (its reply would otherwise land
on the next command; coredis drops it, and so does xread_connection.py), so every join would
cost a reconnect and a burst of joins starves the reader. Nor is a short BLOCK: joins would
wait for it, and an idle node would send the whole list of keys several times a second. So
each XREAD also reads a wake stream of this reader's own, and a joiner that finds the reader
blocked adds an entry to it (one per XREAD however many join): the XREAD returns at once and
the next one includes the account.

A subscriber gets what a local one gets, with the same seqs: a snapshot (built from the store at
a seq) or the updates after `since` (from the stream, or from the store where the stream does
not reach back; older than the replay size: a snapshot, as locally), a status, then live frames.
It joins the account's set only once what it was given ends exactly where the reader's
deliveries stand, with no await in between: no gap, nothing twice. The reader delivers a seq
only after the one before it; a jump (the stream started over, an owner's append lost) is filled
from the store first, and seqs already delivered are skipped.

Not (yet) served here: `positions` (the owner's), a fresh snapshot after a burst or at the day's
turn (the owner sends one; here every update is sent).
"""

from __future__ import annotations

import json
import logging
import secrets

import attrs
import coredis
import trio

from actors.account import (
    ActorConfig,
    SubscriberSet,
    Subscription,
    frames_between,
    stored_snapshot,
)
from actors.account.frames import status_frame
from actors.backoff import Backoff
from store import Store, StoreError
from web.errors import ServiceUnavailable

from .lease import REDIS_ERRORS
from .stream_append import stream_key, upstream_key
from .xread_connection import XReadConnection

__all__ = ["StreamFeeds"]

log = logging.getLogger("orderdesk.cluster")

#: How long a subscriber waits for the reader to reach the seq the store is at.
CATCH_UP_S = 5.0
#: Entries per stream per XREAD, and how long one blocks.
READ_COUNT = 1_000
BLOCK_MS = 1_000
#: A wake stream outlives a reader that died by this long at most (it is renewed on each use).
WAKE_TTL_MS = 3_600_000


@attrs.define(eq=False)
class _Follow:
    """One account followed here: its subscribers and where the reader stands."""

    account: str
    subs: SubscriberSet = attrs.field(factory=SubscriberSet)
    position: str | None = None  # the last stream id read (None: not started)
    delivered: int = 0  # the last seq delivered
    status: str = ""  # the latest status frame
    joining: int = 0  # subscribers on their way in
    advanced: trio.Event = attrs.field(factory=trio.Event)
    deliveries: int = 0  # frames written to (or queued for) subscribers
    snapshot: tuple[int, str] | None = None  # the latest read from the store: seq, frame
    reading: trio.Event | None = None  # a snapshot read under way (set when it ends)

    def moved(self) -> None:
        self.advanced.set()
        self.advanced = trio.Event()


class StreamFeeds:
    """The subscribers this node serves from streams, and the reader that feeds them."""

    def __init__(self, client: object, xread: XReadConnection, prefix: str, store: Store,
                 config: ActorConfig) -> None:
        self._client = client  # every call but the blocking XREAD
        self._xread = xread
        self._prefix = prefix
        self._store = store
        self._config = config
        self._follows: dict[str, _Follow] = {}
        self._changed = trio.Event()
        #: This reader's wake stream (a key of its own), where it stands in it, whether an
        #: XREAD is under way and whether it has been woken already.
        self._wake_key = f"{{{prefix}:feeds:{secrets.token_hex(8)}}}:wake"
        self._wake_position = "0-0"
        self._blocked = False
        self._woken = False
        self.read_errors = 0
        self.wakes = 0  # entries added to the wake stream
        self.snapshot_reads = 0  # snapshots read from the store

    def statistics(self) -> dict[str, dict[str, int]]:
        """Per followed account: subscribers here, frames delivered from its stream."""
        return {a: {"subscribers": len(f.subs), "deliveries": f.deliveries}
                for a, f in self._follows.items()}

    async def subscribe(self, account: str, since: int | None) -> Subscription:
        """A subscriber of `account` fed from its stream; `ServiceUnavailable` (503) when the
        stream cannot be followed within `CATCH_UP_S`, or Redis or the store do not answer."""
        try:
            return await self._subscribe(account, since)
        except* (*REDIS_ERRORS, StoreError) as group:
            exc = group.exceptions[0]
            raise ServiceUnavailable(
                f"the updates of account {account!r} cannot be read here now "
                f"({type(exc).__name__}: {exc}); try again shortly") from None

    async def _subscribe(self, account: str, since: int | None) -> Subscription:
        follow = self._follows.get(account)
        new = follow is None
        if follow is None:
            follow = self._follows[account] = _Follow(account)
        follow.joining += 1
        try:
            if new:
                await self._wake_reader()
            with trio.move_on_after(CATCH_UP_S):
                while follow.position is None:
                    await follow.advanced.wait()
                initial, upto = await self._initial(follow, since)
                while True:  # until what it was given ends where deliveries stand
                    if follow.delivered > upto:
                        initial += [f for _, f in await self._between(account, upto,
                                                                        follow.delivered)]
                        upto = max(upto, follow.delivered)
                    elif follow.delivered < upto:
                        await follow.advanced.wait()
                    else:
                        sub = Subscription(account, [*initial, follow.status],
                                           self._config.subscriber_queue)
                        follow.subs.add(sub)
                        return sub
            raise ServiceUnavailable(
                f"the updates of account {account!r} do not reach this node in time now (its "
                "stream lags the store, or the store is slow); try again shortly")
        finally:
            follow.joining -= 1
            self._forget_if_unused(follow)

    def unsubscribe(self, sub: Subscription) -> None:
        follow = self._follows.get(sub.account)
        if follow is not None:
            follow.subs.remove(sub)
            self._forget_if_unused(follow)
        sub.close("unsubscribed")

    def close_all(self, reason: str) -> None:
        for follow in self._follows.values():
            follow.subs.close_all(reason)

    def _forget_if_unused(self, follow: _Follow) -> None:
        if not follow.subs and not follow.joining and self._follows.get(follow.account) is follow:
            del self._follows[follow.account]

    async def _initial(self, follow: _Follow, since: int | None) -> tuple[list[str], int]:
        """What a new subscriber is sent first, and the seq it ends at."""
        if since is not None and 0 <= since:
            if since > follow.delivered and since <= await self._store.last_seq(follow.account):
                while follow.delivered < since:  # seen on a node ahead of this one
                    await follow.advanced.wait()
            if follow.delivered - self._config.replay_buffer <= since <= follow.delivered:
                return [], since
        seq, frame = await self._snapshot(follow)
        return [frame], seq

    async def _snapshot(self, follow: _Follow) -> tuple[int, str]:
        """The account's snapshot from the store, read once for every subscriber that joins
        while it is read or before the account moves on (each then gets what follows its seq,
        as from any snapshot): a burst of joins reads each account's orders once, not once a
        subscriber (what made joins time out under load)."""
        while follow.reading is not None:
            await follow.reading.wait()
            if follow.snapshot is not None:
                return follow.snapshot
        if follow.snapshot is not None and follow.snapshot[0] >= follow.delivered:
            return follow.snapshot
        follow.reading, follow.snapshot = trio.Event(), None
        try:
            follow.snapshot = await stored_snapshot(
                self._store, follow.account, _upstream_of(follow.status), self._config)
            self.snapshot_reads += 1
            return follow.snapshot
        finally:
            follow.reading.set()
            follow.reading = None

    async def _between(self, account: str, after: int, upto: int) -> list[tuple[int, str]]:
        """(seq, frame) of the order frames `after` < seq <= `upto` (and status frames among
        them): from the stream when it holds them all, else from the store."""
        if upto <= after:
            return []
        entries = await self._client.xrange(  # type: ignore[attr-defined]
            stream_key(self._prefix, account), f"{after}-1", f"{upto}-0")
        found = [(_seq_of(e.identifier), e.field_values["m"]) for e in entries]
        seqs = [seq for seq, _ in found if seq]
        if seqs == list(range(after + 1, upto + 1)):
            return [(seq or after, m) for seq, m in found]
        return await frames_between(self._store, account, after, upto)

    async def _wake_reader(self) -> None:
        """Have the reader take a new account: the next round does; one blocked in XREAD is
        woken through the wake stream (once per XREAD)."""
        self._changed.set()
        if self._blocked and not self._woken:
            self._woken = True
            self.wakes += 1
            async with self._client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
                pipe.xadd(self._wake_key, {"m": "wake"}, trim_strategy=coredis.PureToken.MAXLEN,
                          threshold=1)
                pipe.pexpire(self._wake_key, WAKE_TTL_MS)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The node's reader, until cancelled."""
        task_status.started()
        backoff = Backoff(0.1, 2.0)
        try:
            while True:
                if not self._follows:
                    await self._changed.wait()
                self._changed = trio.Event()
                try:
                    await self._start_follows()
                    await self._read_round()
                    backoff.reset()
                except REDIS_ERRORS as exc:
                    self.read_errors += 1
                    log.warning("cannot read the accounts' streams: %s", exc)
                    await trio.sleep(backoff.next())
        finally:
            await self._xread.aclose()

    async def _start_follows(self) -> None:
        """Where each newly followed account's stream stands: its last entry (else, empty, the
        store's seq) and status, for all of them in one round trip."""
        new = [f for f in self._follows.values() if f.position is None]
        if not new:
            return
        async with self._client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
            for follow in new:
                pipe.xrevrange(stream_key(self._prefix, follow.account), count=1)
                pipe.get(upstream_key(self._prefix, follow.account))
        replies = pipe.results or ()
        for follow, top, status in zip(new, replies[::2], replies[1::2], strict=True):
            if top:
                follow.delivered = _seq_of(top[0].identifier, whole=True)
                follow.position = top[0].identifier
            else:
                follow.delivered = await self._store.last_seq(follow.account)
                follow.position = f"{follow.delivered}-0"
            follow.status = status or status_frame(follow.account, "starting")
            follow.moved()

    async def _read_round(self) -> None:
        follows = {stream_key(self._prefix, f.account): f for f in self._follows.values()
                   if f.position is not None}
        if not follows or self._changed.is_set():  # an account joined: start it first
            return
        positions = {key: f.position for key, f in follows.items()}
        positions[self._wake_key] = self._wake_position
        self._blocked, self._woken = True, False
        try:
            found = await self._xread.xread(positions, READ_COUNT, BLOCK_MS)
        finally:
            self._blocked = False
        for key, entries in found.items():
            if key == self._wake_key:
                self._wake_position = entries[-1][0]
                continue
            follow = follows[key]
            for entry_id, frame in entries:
                await self._deliver(follow, entry_id, frame)

    async def _deliver(self, follow: _Follow, entry_id: str, frame: str) -> None:
        seq = _seq_of(entry_id)
        follow.position = entry_id
        if not seq:  # a status frame
            follow.status = frame
            follow.subs.broadcast(frame)
            return
        if seq <= follow.delivered:  # delivered already (the stream started over)
            return
        if seq > follow.delivered + 1:  # a jump: what the stream lacks comes from the store
            log.warning("account %s: its stream jumps from seq %d to %d: from the store",
                        follow.account, follow.delivered, seq)
            for missed, missed_frame in await frames_between(
                    self._store, follow.account, follow.delivered, seq - 1):
                self._send(follow, missed, missed_frame)
        self._send(follow, seq, frame)
        follow.moved()

    @staticmethod
    def _send(follow: _Follow, seq: int, frame: str) -> None:
        follow.subs.broadcast(frame)
        follow.deliveries += len(follow.subs)
        follow.delivered = seq


def _seq_of(entry_id: str, *, whole: bool = False) -> int:
    """The seq of an order frame's entry id (`<seq>-0`); 0 for a status frame (`<seq>-<n>`)
    unless `whole` (then the seq it follows)."""
    seq, _, sub = entry_id.partition("-")
    return int(seq) if whole or sub == "0" else 0


def _upstream_of(status: str) -> str:
    try:
        return str(json.loads(status)["upstream"])
    except (ValueError, KeyError, TypeError):
        return "starting"
