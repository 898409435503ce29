"""The per-account context the order path shares, and the work in flight.

The coordinator, single orders, recovery and the kill switch each take an `Accounts`: the
account's actor, order budget and its broker URL's instrument cache (`AccountContext`), and every
batch, recovery and single order not finished yet (`Work`), which shutdown and the kill switch
wait for. Nobody reaches into another part's fields: this is what they share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
import trio

from ..account import AccountActor
from ..budget import OrderBudget
from ..changes import Changes
from ..errors import AuthExpired, KillRunning, Unavailable
from ..instruments import InstrumentCache, InstrumentCaches
from ..outcomes import BatchResult
from .admission import Load
from .config import BatchConfig
from .legs import Leg
from .validation import BatchSpec

__all__ = ["AccountContext", "Accounts", "Job", "Work"]


@attrs.define(eq=False)
class AccountContext:
    """What the order path keeps per account: its actor, order budget and instrument cache."""

    actor: AccountActor
    limiter: OrderBudget
    instruments: InstrumentCache
    running: dict[str, trio.CancelScope] = attrs.field(factory=dict)
    killed: set[str] = attrs.field(factory=set)  # batches the kill switch stopped, still running

    @property
    def parked(self) -> bool:
        """The account's actor knows the broker refuses its access token."""
        return self.actor.upstream.state == "auth_expired"


@attrs.frozen
class Job:
    """A stored batch, dispatched to run."""

    account: str
    batch_id: str
    spec: BatchSpec
    legs: tuple[Leg, ...]
    written_ahead: frozenset[int] = frozenset()  # legs stored PLACING with the batch


@attrs.define(eq=False)
class Work:
    """A batch (from submission, or a recovery) or a single order, until it is finished: the
    kill switch waits for every one of its account's, and leaves their symbols alone if not."""

    account: str
    symbols: frozenset[tuple[str, str]]  # (exchange, tradingsymbol)
    done: trio.Event = attrs.field(factory=trio.Event)
    # Its outcome is known (`result`, or finished): a batch may answer before it is done.
    answered: trio.Event = attrs.field(factory=trio.Event)
    scope: trio.CancelScope | None = None  # a submitted batch's execution, once it started
    recovery: bool = False  # an unfinished batch of an earlier run, being recovered
    failures: int = 0  # failed recovery attempts
    retrying: bool = False  # waiting to retry its recovery after a failed attempt
    result: BatchResult | None = None  # the outcome it reached (None: cut short)
    legs: tuple[Leg, ...] = ()  # a submitted batch's

    def finish(self) -> None:
        self.answered.set()
        self.done.set()


class TrackedWork(dict[str, Work]):
    """Work in flight by id; adding or removing any notifies `changes` (the coordinator's
    statistics are counted from it)."""

    def __init__(self, changes: Changes) -> None:
        super().__init__()
        self.changes = changes

    def __setitem__(self, key: str, work: Work) -> None:
        super().__setitem__(key, work)
        self.changes.notify()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.changes.notify()

    def setdefault(self, key: str, work: Work) -> Work:  # type: ignore[override]
        if key not in self:
            self[key] = work
        return self[key]

    def pop(self, key: str, *default: Work | None) -> Work | None:  # type: ignore[override]
        if key in self:
            work = self[key]
            del self[key]
            return work
        if default:
            return default[0]
        raise KeyError(key)


class Accounts:
    """The configured accounts' contexts (made on first use, remade when an actor is replaced)
    and the work in flight, by account."""

    def __init__(self, actors: Mapping[str, AccountActor], config: BatchConfig,
                 instruments: InstrumentCaches,
                 owns: Callable[[str], bool] | None = None) -> None:
        self._actors = actors
        self._owns = owns  # [cluster]: whether this node owns the account now (None: always)
        self._config = config
        self._instruments = instruments
        self._contexts: dict[str, AccountContext] = {}
        #: Wakes waiters on what `batches` and recovery failures count (their statistics).
        self.changes = Changes()
        self.batches = TrackedWork(self.changes)  # batch id -> an unfinished batch or recovery
        self.singles: dict[str, Work] = {}  # tag -> a single order being placed
        self.killing: set[str] = set()  # accounts whose kill switch is running
        self.taking_over: set[str] = set()  # [cluster]: claimed, the old owner's batches untracked

    def context(self, account_id: str) -> AccountContext | None:
        """The account's context; None when the account is not configured."""
        actor = self._actors.get(account_id)
        if actor is None:
            return None
        ctx = self._contexts.get(account_id)
        if ctx is None or ctx.actor is not actor:
            ctx = AccountContext(
                actor,
                OrderBudget(self._config.budget),
                self._instruments.for_broker(actor.broker),
            )
            self._contexts[account_id] = ctx
        return ctx

    def contexts(self) -> list[AccountContext]:
        return list(self._contexts.values())

    def unfinished(self, account: str) -> dict[str, Work]:
        """The account's batches, recoveries and single orders not finished yet, by id/tag."""
        return {key: work for tracked in (self.batches, self.singles)
                for key, work in tracked.items() if work.account == account}

    def load(self, ctx: AccountContext, account: str, legs: int, store_latency_s: float) -> Load:
        """What is ahead of a new batch of `legs` legs of `account`: for admission control."""
        works = [work for work in self.batches.values() if work.account == account]
        unsent = sum(1 for work in works for leg in work.legs
                     if not leg.sent and leg.status in ("PENDING", "PLACING"))
        ahead = unsent + ctx.limiter.statistics().waiting
        return Load(len(works), ahead, store_latency_s, ctx.limiter.room(ahead + legs))

    def owned(self, account: str) -> bool:
        """Whether this node acts for `account` now (always, without [cluster])."""
        return self._owns is None or self._owns(account)

    def check_owned(self, account: str) -> None:
        """[cluster]: refuse (Unavailable) to act for an account another node owns."""
        if not self.owned(account):
            raise Unavailable(f"account {account!r} is owned by another node of the cluster")
        if account in self.taking_over:
            raise Unavailable(f"account {account!r} is changing owner (taken over by this node "
                              "or handed off to another); retry shortly")

    def check_open(self, account: str, ctx: AccountContext | None = None) -> None:
        """Refuse a new batch or order: the account's kill switch runs (KillRunning), or (with
        its `ctx`) its token is refused (AuthExpired)."""
        self.check_owned(account)
        if account in self.killing:
            raise KillRunning(f"the kill switch of account {account!r} is running: no new "
                              "orders until it has finished")
        if ctx is not None and ctx.parked:
            raise AuthExpired(account)
