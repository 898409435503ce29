"""AccountActor: owns one account's upstream order stream, order book, seq and subscribers.

Every update goes the same way: checked against the book, given the next `seq` by the store's
group commit, committed, and only then encoded once and offered to every subscriber, so a seq a
client has seen is never reused after a crash. After every (re)connect the actor reconciles with
`GET /orders`; ticker frames that arrive meanwhile are held and applied after it.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import trio

from brokers.base import Broker, BrokerError, Order, TokenExpired, UpstreamLost
from store import AccountState, Store

from ..backoff import Backoff
from ..calendar import trading_day
from ..connect_pacer import ConnectPacer
from ..health import HealthEntry, UpstreamWatch
from .book import Accepted, Conflict, OrderBook, of_day
from .config import ActorConfig
from .day import roll_daily
from .frames import order_frame, snapshot_frame, status_frame
from .live_positions import LivePositions
from .opening import WarmStream, open_paced
from .position_book import fill_changed
from .positions import PositionsReport
from .reconnect import reconcile_periodic, reconcile_staggered
from .replay import framed, load_state, replay_after
from .subscribers import SubscriberSet, Subscription
from .upstream import UpstreamState, pump_frames
from .watchers import Watchers

log = logging.getLogger("actors.account")  # its name before the move: log configs name it


class AccountActor:
    """One per account. `run()` may be restarted by its supervisor; subscribers survive it."""

    def __init__(
        self, account: str, broker: Broker, store: Store, config: ActorConfig = ActorConfig(),
        *, health: HealthEntry | None = None,
        on_update: Callable[[str, int, dict[str, Any]], None] | None = None,
        pacer: ConnectPacer | None = None,  # the process's, shared by every account
    ) -> None:
        self.account = account
        self._pacer = pacer
        self.broker = broker
        self._store = store
        self._config = config
        self._on_update = on_update
        self._health = health
        self._watch = UpstreamWatch(config.health)
        if health is not None:
            health.upstream_watch = self._watch
        self._book = OrderBook(keep_finished=config.book_finished)
        self._seq = 0
        self._replay: deque[tuple[int, str]] = deque(maxlen=config.replay_buffer)
        self._subscribers = SubscriberSet()
        self.live = LivePositions(account, broker, config, self._subscribers,
                                  lambda: self._book.fill_payloads())
        self._watchers = Watchers()
        self._expected: set[str] = set()  # placed here, not final in the book yet
        self._credentials = trio.Event()
        self._token_generation = 0
        self._connected = False
        self._random = random.Random()
        self.upstream = UpstreamState()
        self.order_conflicts = 0  # updates refused as another order under a known id
        #: [cluster]: hears each committed order frame (its seq) and status frame (None), after
        #: the store commit; set by the owner, which appends them to the account's stream.
        self.tap: Callable[[int | None, str], None] | None = None
        self.warm: WarmStream | None = None  # [cluster] warm standby (`keep_warm`)

    # -- state others read -------------------------------------------------------------

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def replay_size(self) -> int:
        """How many of its last updates the actor keeps to replay (what `run(loaded=)` needs)."""
        return self._config.replay_buffer

    def orders(self) -> list[dict[str, Any]]:
        return [dict(p) for p in self._book.payloads()]

    def orders_tagged(self, prefix: str) -> list[dict[str, Any]]:
        """Orders whose tag starts with `prefix`, those retired from the book too."""
        return [dict(p) for p in self._book.tagged(prefix)]

    def recent_orders(self) -> tuple[list[dict[str, Any]], str | None]:
        """As the snapshot: every working order, the newest final ones, the paging cursor."""
        orders, older = self._book.snapshot(self._config.snapshot_finished)
        return [dict(p) for p in orders], older

    def order(self, order_id: str) -> dict[str, Any] | None:
        payload = self._book.get(order_id)
        return dict(payload) if payload is not None else None

    def positions(self) -> PositionsReport:
        """Net positions and live P&L (`GET /accounts/{id}/positions`)."""
        return self.live.report()

    def status(self) -> dict[str, Any]:
        last = self.upstream.last_event_at
        return {
            "account": self.account,
            "upstream": self.upstream.state,
            "subscribers": len(self._subscribers),
            "seq": self._seq,
            "orders": len(self._book),
            "reconnects": self.upstream.reconnects,
            "last_error": self.upstream.last_error,
            "last_event_age_s": None if last is None else round(time.time() - last, 3),
            "max_queue_depth": self._subscribers.max_depth(),
            "order_conflicts": self.order_conflicts,
        }

    # -- the actor's life --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  loaded: AccountState | None = None) -> None:
        """Load the book and seq from the store (or start from `loaded`, read for it with many
        others'), then follow the upstream until cancelled."""
        await self._load(loaded)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.live.publish)
            nursery.start_soon(roll_daily, self._config.wall_clock, self._new_day)
            await self._follow_with_backoff()
            nursery.cancel_scope.cancel()

    async def _follow_with_backoff(self) -> None:
        backoff = self._reconnect_backoff()
        try:
            while True:
                generation = self._token_generation
                self._connected = False
                try:
                    await self._follow_upstream()
                except TokenExpired as exc:
                    self._set_upstream("auth_expired", str(exc))
                    self._watch.fault()
                    while generation == self._token_generation:  # no new token since we tried
                        await self._credentials.wait()
                    self._watch.fault()  # the recovery counts from the new token
                    backoff.reset()
                    continue
                except BrokerError as exc:  # lost, unavailable, rate limited, refused listing
                    self._set_upstream("reconnecting", f"{type(exc).__name__}: {exc}")
                if self._connected:
                    backoff.reset()
                self.upstream.reconnects += 1
                self._watch.reconnecting()
                jitter = self._random.uniform(0, self._config.reconnect_jitter_s)
                await trio.sleep(backoff.next() + jitter)
        finally:
            # Crash or stop: subscribers must not keep believing the stream is live.
            if self.upstream.state == "connected":
                self._set_upstream("reconnecting", None)

    def set_access_token(self, access_token: str) -> None:
        """New credentials: leave auth_expired and reconnect now."""
        set_token = getattr(self.broker, "set_access_token", None)
        if set_token is not None:
            set_token(access_token)
        self._token_generation += 1
        self._credentials.set()
        self._credentials = trio.Event()

    async def _load(self, loaded: AccountState | None = None) -> None:
        """Book, seq and replay buffer from the store, swapped in at once (no await between)."""
        day = trading_day(self._config.wall_clock()).isoformat()
        if loaded is None:
            loaded = await load_state(self._store, self.account, self._config.replay_buffer)
        payloads, seq = of_day(loaded.orders, day), loaded.seq
        recent = framed(self.account, loaded.recent, seq, self._config.replay_buffer)
        replay = deque(((s, m) for s, _, m in recent), maxlen=self._config.replay_buffer)
        missed = [e for e in recent if e[0] > self._seq] if len(self._subscribers) else []
        self._book = OrderBook(payloads, keep_finished=self._config.book_finished)
        self._replay = replay
        self._seq = seq
        self.live.orders_changed(filled=True)
        # Committed by a run that was cancelled before it fanned them out: send them now.
        for event_seq, payload, message in missed:
            self._subscribers.broadcast(message)
            self._updated(event_seq, payload)

    async def _follow_upstream(self) -> None:
        held_send, held_receive = trio.open_memory_channel[Order](self._config.held_frames)
        lost: list[BrokerError] = []
        async with (open_paced(self.broker, self._pacer, self.warm) as stream,
                    trio.open_nursery() as nursery):
            self._watch.streaming(stream)
            nursery.start_soon(pump_frames, stream, held_send, lost, self._watch)
            nursery.start_soon(self.live.fetch_when_wanted)
            nursery.start_soon(self.live.follow_market, stream)
            try:
                await self._reconcile_within_budget()
            except BrokerError as exc:
                self._watch.reconcile_failed(f"{type(exc).__name__}: {exc}")
                lost.append(exc)
                nursery.cancel_scope.cancel()
            else:
                self._watch.reconcile_ok()
                self._connected = True
                self._set_upstream("connected", None)
                await self._follow_frames(held_receive)
                nursery.cancel_scope.cancel()  # the positions fetch ends with the stream
        if lost:
            raise lost[0]
        raise UpstreamLost("ticker stream ended")

    async def _follow_frames(self, held: trio.MemoryReceiveChannel[Order]) -> None:
        """Apply ticker frames as they come and, while an order is working, reconcile every
        `reconcile_interval_s`: in this one task, so updates get their seq one at a time, and
        a push the ticker lost is found without a reconnect."""
        interval = self._config.reconcile_interval_s
        reconcile_at = trio.current_time() + interval
        async with held:
            while True:
                order = None
                with trio.move_on_at(reconcile_at):
                    try:
                        order = await held.receive()
                    except trio.EndOfChannel:
                        return
                if order is None:
                    reconcile_at = trio.current_time() + interval
                    if self._working():
                        await reconcile_periodic(self._reconcile, self.account)
                    continue
                batch = [order]
                while len(batch) < 500:
                    try:
                        batch.append(held.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._apply(batch, source="ticker")

    async def _reconcile_within_budget(self) -> None:
        await reconcile_staggered(self._reconcile, self._reconnect_backoff(), self.account,
                                  self._config.reconcile_slots)

    def keep_warm(self) -> WarmStream:
        """[cluster] warm standby: the connection this node keeps open for the account while
        standing by (its owner runs `keep`); the next run's first follow takes it over."""
        self.warm = WarmStream(self.account, self.broker, self._pacer, self._reconnect_backoff())
        return self.warm

    def _reconnect_backoff(self) -> Backoff:
        return Backoff(self._config.reconnect_initial_s, self._config.reconnect_max_s)

    async def _reconcile(self) -> None:
        expected = set(self._expected)
        listing = await self.broker.orders()
        await self._apply([o for o in listing if self._book.changed(o)], source="reconcile")
        self.live.reconciled()
        # Placed but not listed by the broker (an earlier day's): nothing left to follow.
        self._expected -= expected - {o.order_id for o in listing}

    def expect(self, order_id: str) -> None:
        """An order placed for this account: followed by the periodic reconcile until the book
        shows it final, even if the ticker never pushes a word of it."""
        if not self._book.final(order_id):
            self._expected.add(order_id)

    def _working(self) -> bool:
        """Whether any order may still change: one not final in the book, or expected."""
        self._expected = {oid for oid in self._expected if not self._book.final(oid)}
        return bool(self._expected) or self._book.working()

    # -- the update path ---------------------------------------------------------------

    async def _apply(self, orders: Sequence[Order], *, source: str) -> None:
        accepted: list[tuple[Order, Accepted]] = []
        filled = False
        for order in orders:
            before = self._book.get(order.order_id)
            taken = self._book.apply(order)
            if taken is None:
                continue
            if isinstance(taken, Conflict):
                self.report_conflict(taken.reason)
                self._watchers.notify(order)  # never stored; legs match by id and tag
            else:
                accepted.append((order, taken))
                filled = filled or fill_changed(before, taken.payload)
        if not accepted:
            return
        try:
            seqs = await self._store.append_events(
                self.account, [a.payload for _, a in accepted]
            )
        except BaseException:
            self._book.discard()
            raise
        self._book.commit()
        self.live.orders_changed(filled=filled)
        # A burst larger than half a subscriber queue (a big reconcile) goes out as one fresh
        # snapshot, so that it cannot close every subscriber as a slow consumer.
        burst = len(accepted) > self._config.subscriber_queue // 2
        for seq, (_, taken) in zip(seqs, accepted, strict=True):
            self._seq = seq
            message = order_frame(self.account, seq, taken.payload, source=source,
                                  event=taken.event)
            self._replay.append((seq, message))
            if self.tap is not None:
                self.tap(seq, message)
            if not burst:
                self._subscribers.broadcast(message)
            self._updated(seq, taken.payload)
        if burst:
            self._subscribers.broadcast(self.snapshot_message())
        # Waiters (the batch coordinator) hear of an update once it is committed and reported:
        # what a batch concludes from it is then never ahead of the account's seq (its webhook
        # comes after its legs' updates).
        for order, _ in accepted:
            self._watchers.notify(order)
        self.upstream.last_event_at = time.time()
        if self._health is not None:
            self._health.touch()
        self._report(self._subscribers.depth)  # as the fan-out found it: no scan per update

    def report_conflict(self, reason: str) -> None:
        """A disagreement with the broker (one line): counted, logged and shown in health; the
        account degrades with the reason until the operator restarts it."""
        self.order_conflicts += 1
        log.error("account %s: %s", self.account, reason)
        if self._health is not None:
            self._health.order_conflicts += 1
            self._health.last_conflict = reason
            self._health.touch()

    def _updated(self, seq: int, payload: Any) -> None:
        """Metrics and webhooks hear of a committed update; their failure is not ours."""
        if self._on_update is None:
            return
        try:
            self._on_update(self.account, seq, dict(payload))
        except Exception:
            log.exception("on_update hook failed for %s seq %d", self.account, seq)

    def _report(self, depth: int | None = None) -> None:
        if self._health is not None:
            self._health.upstream = self.upstream.state
            self._health.subscribers = len(self._subscribers)
            depth = self._subscribers.max_depth() if depth is None else depth
            self._health.queue_depths = {"max_subscriber": depth}

    def _set_upstream(self, state: str, error: str | None) -> None:
        if state != self.upstream.state:
            self.upstream.state = state
            frame = status_frame(self.account, state)
            self._subscribers.broadcast(frame)
            if self.tap is not None:
                self.tap(None, frame)
        if error is not None:
            self.upstream.last_error = error
            log.warning("account %s upstream %s: %s", self.account, state, error)
        self._report()

    # -- subscribers -------------------------------------------------------------------

    def subscribe(self, since: int | None = None, *, positions: bool = False) -> Subscription:
        """Register a subscriber: a snapshot (or the updates after `since`), then live."""
        initial = replay_after(self._replay, self._seq, since)
        if initial is None:
            initial = [self.snapshot_message()]
        initial.append(status_frame(self.account, self.upstream.state))
        if positions:
            initial.append(self.live.message())
        sub = Subscription(self.account, initial, self._config.subscriber_queue,
                           positions=positions)
        self._subscribers.add(sub)
        self._report()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.remove(sub)
        self.live.release(sub)
        sub.close("unsubscribed")
        self._report()

    def close_subscribers(self, reason: str) -> None:
        self._subscribers.close_all(reason)

    def snapshot_message(self) -> str:
        """Every working order and the last `snapshot_finished` final ones: its cost does not
        grow with the day (older ones are paged by GET /accounts/{id}/orders?before=)."""
        orders, older = self._book.snapshot(self._config.snapshot_finished)
        return snapshot_frame(self.account, self._seq, self.upstream.state, orders, older)

    def _new_day(self, day: str) -> None:
        """The IST day turned over while running: the book keeps that day's orders only, and
        subscribers get a fresh snapshot (the seq goes on)."""
        self._book.roll(day)
        self.live.orders_changed(filled=True)
        self._subscribers.broadcast(self.snapshot_message())

    # -- in-process waiters (the batch coordinator) ------------------------------------

    def watch(
        self, key: str, capacity: int = 256
    ) -> AbstractContextManager[trio.MemoryReceiveChannel[Order]]:
        """Updates for an order_id or a tag, from now on; register before placing the order."""
        return self._watchers.watch(key, capacity)

