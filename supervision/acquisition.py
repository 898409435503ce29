"""[cluster]: one acquirer per node tries, in one Redis round, the lease of every account the
node waits for, and claims in one Postgres statement the epochs of those it took.

Each standby owner trying its own SET NX every `renew_s` (jittered) spread a takeover of 200
accounts over two seconds of tries and 200 claims, on a node busy starting their actors. Now a
standby `AccountOwner` waits in `take`, and the `Acquirer` sends a round (`Leases.acquire_all`)
while any owner waits: every `renew_s`, sooner when the last round saw a key about to expire
(its holder stopped renewing: the keys of a node that died were renewed together and expire
together, and are tried the moment they do), and at once for an owner's first try (a starting
node takes its accounts one by one, as the supervision tree starts them). The leases taken are
renewed (`Renewer.hold`) from that moment on, then their epochs are claimed together
(`claim_accounts`: each bumped, so the previous owners' writes are refused from its commit on),
within the leases' deadline, and the state their actors start from is read in one go
(`prepare`: instead of three reads per actor). Each owner gets its lease, epoch and state
(`Attempt`), or who holds the account. A lease taken for an owner that stopped waiting
meanwhile is given up at once. With a placement (placement.py), an account placed on another
node is left out of the rounds for `grace_s` from when this node began waiting for it, so the
node it is placed on takes it first; after that it is tried as any other (a dead node's
accounts are taken the moment their leases expire, as without placement). An owner's first try
(a node starting) is not deferred: its node starts as soon as it knows who owns each account,
and hands off what it took that is placed elsewhere. An account `held_back` is not tried at all
meanwhile.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs
import trio

from store import AccountState, StoreError

from .lease import REDIS_ERRORS, Lease, Leases, Try
from .renewal import Renewer
from .takeover_gc import CollectorHold

log = logging.getLogger("orderdesk.cluster")

#: The shortest time between two rounds (a key about to expire is tried again no sooner).
MIN_GAP_S = 0.01


class EpochClaims(Protocol):
    """What acquisition needs of the store (the Postgres engine's fencing)."""

    async def claim_accounts(self, accounts: Sequence[str], node: str) -> dict[str, int]: ...
    def drop_account(self, account: str) -> None: ...


#: Reads the state the actors of the accounts claimed in a round start from, in one go.
Prepare = Callable[[list[str]], Awaitable[dict[str, AccountState]]]


@attrs.frozen
class Attempt:
    """What one round did for one account: its lease taken and epoch claimed; its lease taken
    but no epoch (`failure` says why: the owner gives the lease up); or not taken (`holder`:
    the node holding it, None when not known)."""

    lease: Lease | None
    epoch: int | None = None
    holder: str | None = None
    failure: str = ""
    #: Its actor's state, read after the claim with the others' of the round (None: the actor
    #: reads its own).
    loaded: AccountState | None = None


@attrs.define(eq=False)
class _Waiter:
    done: trio.Event = attrs.field(factory=trio.Event)
    attempt: Attempt = Attempt(None)
    gone: bool = False  # its owner stopped waiting (cancelled) before the round answered
    first: bool = False  # its owner's first try (`at_once`): never deferred by placement

    def finish(self, attempt: Attempt) -> None:
        self.attempt = attempt
        self.done.set()


class Acquirer:
    """The node's acquisition rounds (`run`), for every owner waiting in `take`."""

    def __init__(self, leases: Leases, renewer: Renewer, store: EpochClaims,
                 prepare: Prepare | None = None, collector: CollectorHold | None = None,
                 *, placed_here: Callable[[str], bool] = lambda account: True,
                 grace_s: float = 0.0,
                 held_back: Callable[[str], bool] = lambda account: False) -> None:
        self.leases = leases
        self._collector = collector  # held off while the accounts taken start
        self._renewer = renewer
        self._store = store
        self._prepare = prepare
        self._waiting: dict[str, _Waiter] = {}
        self._wake = trio.Event()
        self._at_once = False
        self._due_at = -math.inf
        self._placed_here = placed_here
        self._grace_s = grace_s
        self._held_back = held_back  # not tried at all meanwhile (looked at every `renew_s`)
        self._deferred: dict[str, float] = {}  # account placed elsewhere -> waited for since
        self.rounds = 0  # rounds sent
        self.failed_rounds = 0  # rounds that failed as a whole (Redis error)

    def statistics(self) -> dict[str, int]:
        return {"waiting": len(self._waiting), "rounds": self.rounds,
                "failed_rounds": self.failed_rounds}

    async def take(self, account: str, *, at_once: bool = False) -> Attempt:
        """Wait for the next round's try of `account`'s lease (`at_once`: send it now)."""
        waiter = _Waiter(first=at_once)
        self._waiting[account] = waiter
        self._at_once = self._at_once or at_once
        self._wake.set()
        try:
            await waiter.done.wait()
        finally:
            if not waiter.done.is_set():
                waiter.gone = True
                if self._waiting.get(account) is waiter:
                    del self._waiting[account]
        return waiter.attempt

    def replaced(self) -> None:
        """The placement changed: try the accounts now placed here at once."""
        self._at_once = True
        self._wake.set()

    async def run(self) -> None:
        """Rounds while any owner waits, until cancelled."""
        renew_s = self.leases.cluster.renew_s
        while True:
            sent = trio.current_time()
            ready, later = self._ready(sent)
            if ready and (self._at_once or sent >= self._due_at):
                waiting = {account: self._waiting.pop(account) for account in ready}
                self._at_once = False
                expires_at = await self._round(waiting)
                self._due_at = max(sent, min(sent + renew_s, expires_at)) + MIN_GAP_S
                continue
            self._wake = trio.Event()
            with trio.move_on_at(min(self._due_at if ready else math.inf, later)):
                await self._wake.wait()

    def _ready(self, now: float) -> tuple[list[str], float]:
        """The waiting accounts to try now, and when the next one placed elsewhere is."""
        ready, later = [], math.inf
        for account, waiter in self._waiting.items():
            if self._held_back(account):
                later = min(later, now + self.leases.cluster.renew_s)
                continue
            if waiter.first or self._placed_here(account):
                self._deferred.pop(account, None)
                ready.append(account)
                continue
            until = self._deferred.setdefault(account, now) + self._grace_s
            if now >= until:
                ready.append(account)
            else:
                later = min(later, until)
        return ready, later

    async def _round(self, waiting: dict[str, _Waiter]) -> float:
        """One try of every waiting account's lease, its answer to each waiter; returns when
        (trio clock) the first key another node holds has expired for sure (inf: not known)."""
        self.rounds += 1
        try:
            tries = await self.leases.acquire_all(list(waiting))
            # each ttl was read before the answer came: counted from now, the key is gone
            answered = trio.current_time()
        except REDIS_ERRORS as exc:
            self.failed_rounds += 1
            log.warning("cannot reach Redis for the leases of %d accounts: %s", len(waiting), exc)
            for waiter in waiting.values():
                waiter.finish(Attempt(None))
            return math.inf
        taken = [t.lease for t in tries if t.lease is not None]
        if taken and self._collector is not None:
            self._collector.takeover()
        for lease in taken:  # renewed from now on: claiming and starting may take a while
            self._renewer.hold(lease)
        epochs, failure = await self._claim(taken)
        loaded = await self._load(list(epochs), taken)
        unwanted = []
        for one in tries:
            waiter = waiting[one.account]
            if one.lease is None:
                waiter.finish(Attempt(None, holder=one.holder))
            elif waiter.gone:
                unwanted.append(one.lease)
            else:
                self._deferred.pop(one.account, None)
                waiter.finish(Attempt(one.lease, epochs.get(one.account), failure=failure,
                                      loaded=loaded.get(one.account)))
        for lease in unwanted:  # once the others have theirs
            await self._give_up(lease)
        return answered + min((t.expires_in_s for t in tries if _expiring(t)), default=math.inf)

    async def _claim(self, taken: list[Lease]) -> tuple[dict[str, int], str]:
        """The epochs of the accounts taken, claimed in one statement before their leases'
        deadline; else none, and why."""
        if not taken:
            return {}, ""
        with trio.move_on_at(min(lease.deadline for lease in taken)):
            try:
                accounts = [lease.account for lease in taken]
                return await self._store.claim_accounts(accounts, self.leases.node), ""
            except StoreError as exc:
                return {}, f"the epoch could not be claimed: {exc}"
        return {}, "the epoch could not be claimed within the lease"

    async def _load(self, accounts: list[str], taken: list[Lease]) -> dict[str, AccountState]:
        """The start of the claimed accounts' actors, read in one go before the leases'
        deadline; else none (each actor reads its own)."""
        if self._prepare is None or not accounts:
            return {}
        with trio.move_on_at(min(lease.deadline for lease in taken)):
            try:
                return await self._prepare(accounts)
            except StoreError as exc:
                log.warning("the state of %d accounts taken could not be read at once: %s",
                            len(accounts), exc)
        return {}

    async def _give_up(self, lease: Lease) -> None:
        """A lease taken for an owner that no longer waits: not renewed, not written for, and
        released (bounded: else it expires on its own)."""
        self._renewer.drop(lease)
        self._store.drop_account(lease.account)
        await self.leases.give_up(lease)


def _expiring(one: Try) -> bool:
    return one.lease is None and one.expires_in_s is not None
