"""[cluster]: an account's actor runs on this node only while this node owns the account.

`AccountOwner.run` is the account's child in the supervision tree in place of the actor's own
`run`. It waits (standby) until the node's `Acquirer` takes the account's Redis lease and bumps
its epoch in Postgres (from then on the previous owner's writes are refused), in rounds shared
with every other account the node waits for; it loads the access token kept in the store
(`tokens`), then runs the actor while the node's `Renewer` renews the lease (from the moment it
is taken, in one Redis round with every other account's), and has the order path
recover the batches the previous owner left unfinished (`Takeovers`: new orders of the account
are refused until they are tracked), and appends each update the actor commits to the
account's Redis stream (`StreamAppender`, made per ownership period: the stream first reaches
the seq the actor loaded, filled from the store). It steps down (stops the actor, stops writing,
gives the lease up) when:
- the lease is lost: another node holds it, or no renewal succeeded before this node's own
  deadline (sent + lease - margin), which comes before Redis expires the key, so the actor is
  stopped while the lease still stands (Redis unreachable counts the same);
- the store refuses a write by epoch (`FencedOut`): another node claimed the account.
Then it is standby again. Cancelled (shutdown), it gives the lease up at once so a standby need
not wait for it to expire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

import trio

from actors.account import AccountActor
from actors.account.frames import status_frame
from actors.health import HealthEntry
from store import AccountState, FencedOut

from .acquisition import Acquirer, Attempt
from .lease import Lease
from .renewal import Renewer
from .stream_append import StreamAppender
from .tokens import AccountTokens, TokenVault

log = logging.getLogger("orderdesk.cluster")

#: Why the subscribers of an account this node stops owning are closed (they reconnect, to
#: whichever node owns it now).
STEPPED_DOWN = "owner stepped down"


class Takeovers(Protocol):
    """What a takeover needs of the order path (the batch coordinator): hold new orders of
    the account, then recover what the previous owner left unfinished."""

    def taking_over(self, account: str) -> None: ...
    async def recover_account(self, account: str) -> None: ...


class Claims(Protocol):
    """What ownership needs of the store (the Postgres engine's fencing)."""

    async def claim_accounts(self, accounts: Sequence[str], node: str) -> dict[str, int]: ...
    async def load_accounts(self, accounts: Sequence[str], recent: int
                            ) -> dict[str, AccountState]: ...
    def drop_account(self, account: str) -> None: ...
    def refused_writes(self, account: str) -> int: ...


class AccountOwner:
    """One account's ownership on this node; `view()` is what `/admin/actors` shows of it."""

    def __init__(
        self, actor: AccountActor, acquirer: Acquirer, renewer: Renewer, store: Claims,
        health: HealthEntry | None, takeovers: Callable[[], Takeovers | None] = lambda: None,
        tokens: TokenVault | None = None,
        appender: Callable[[str], StreamAppender] | None = None, *, warm: bool = False,
    ) -> None:
        self.account = actor.account
        #: [cluster] warm_standby: the ticker connection kept while standing by.
        self._warm = actor.keep_warm() if warm else None
        self._acquirer = acquirer
        #: Makes the appender of each ownership period (None: nothing is appended).
        self._new_appender = appender
        self.appender: StreamAppender | None = None  # the current or last period's
        self._renewer = renewer
        self._takeovers = takeovers
        self._tokens = None if tokens is None else AccountTokens(tokens, actor)
        self._actor = actor
        self._health = health
        self._watch = None if health is None else health.upstream_watch
        self._leases = renewer.leases
        self._store = store
        self.state = "standby"  # standby | owner
        self.epoch: int | None = None
        self.lease: Lease | None = None
        self.last_step_down: str | None = None
        self.holder: str | None = None  # the node holding the lease when this one last looked
        self.takeovers = 0  # times this node took the account
        self.step_downs = 0
        self.calls_fenced = 0  # broker writes refused: not the owner, or the lease ends first
        self.fenced_out = 0  # store writes refused by epoch (another node claimed the account)
        #: Set (and replaced) at each step-down, once the lease is given up (handoff.py waits).
        self.stepped_down = trio.Event()

    def view(self) -> dict[str, Any]:
        lease = self.lease
        return {
            "node": self._leases.node if self.state == "owner" else self.holder,
            "this_node": self._leases.node,
            "state": self.state,
            "epoch": self.epoch,
            "lease_remaining_s": None if lease is None else round(lease.remaining(), 3),
            "acquired_at": None if lease is None else lease.acquired_at,
            "last_step_down": self.last_step_down,
            "calls_fenced": self.calls_fenced,
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the account whenever possible, until cancelled. Ready once the actor runs, or at
        once when another node owns the account (standby is a healthy state)."""
        ready: trio.TaskStatus[None] | None = task_status
        self._health_standby()
        first = True
        while True:
            attempt, lease, ready = await self._stand_by(first, ready)
            first = False
            told = await self._own(lease, attempt, ready)
            if ready is not None and not told:
                ready.started()
            ready = None
            # stepped down: the node that made it gets to own it
            await trio.sleep(self._leases.cluster.renew_s)

    async def _stand_by(self, first: bool, ready: trio.TaskStatus[None] | None
                        ) -> tuple[Attempt, Lease, trio.TaskStatus[None] | None]:
        """Standby until a round takes the lease (ready meanwhile at the first round that does
        not). A warm standby keeps the account's ticker connection open from the first round
        that does not take it until one does, and hands it to the actor (`WarmStream`)."""
        async with trio.open_nursery() as nursery:
            while True:
                attempt = await self._acquirer.take(self.account, at_once=first)
                first = False
                self.holder = attempt.holder
                if attempt.lease is not None:
                    lease = attempt.lease
                    break
                if ready is not None:
                    ready.started()
                    ready = None
                if self._warm is not None and not nursery.child_tasks:
                    nursery.start_soon(self._warm.keep)
            if self._warm is not None:
                self._warm.handing = True
            nursery.cancel_scope.cancel()
        return attempt, lease, ready

    async def _own(self, lease: Lease, attempt: Attempt,
                   ready: trio.TaskStatus[None] | None) -> bool:
        """Run the actor while the lease holds (the `Renewer` renews it from when it was
        taken); True if it got as far as telling `ready`."""
        self.lease = lease
        reason = attempt.failure or "shutdown"
        told = False
        try:
            if attempt.epoch is None:  # taken, but the store did not claim it: give it up
                return told
            self.epoch = attempt.epoch
            if self._tokens is not None:  # the token another node may have loaded
                with trio.move_on_at(lease.deadline):
                    await self._tokens.load()
            self.takeovers += 1
            if self._health is not None:  # its upstream is judged again
                self._health.upstream_watch = self._watch
            log.warning("account %s: owned by this node (%s), epoch %s",
                        self.account, self._leases.node, self.epoch)
            appender = None if self._new_appender is None else self._new_appender(self.account)
            self.appender = appender
            try:
                async with trio.open_nursery() as nursery:

                    async def keep() -> None:  # from the start: the lease may end mid-start
                        nonlocal reason
                        reason = await self._keep(lease)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(keep)
                    if appender is not None:  # every update committed from the start on
                        self._actor.tap = appender.tap
                    await nursery.start(partial(self._actor.run, loaded=attempt.loaded))
                    if appender is not None:  # the stream reaches the loaded seq first
                        nursery.start_soon(appender.run, self._actor.seq, status_frame(
                            self.account, self._actor.upstream.state))
                    if self._tokens is not None:
                        nursery.start_soon(self._tokens.follow, self._leases.cluster.renew_s)
                    takeovers = self._takeovers()
                    if takeovers is not None:  # new orders wait for the old owner's batches
                        takeovers.taking_over(self.account)
                        nursery.start_soon(takeovers.recover_account, self.account)
                    self.state = "owner"
                    if ready is not None:
                        ready.started()
                        told = True
            except* FencedOut:
                self.fenced_out += 1
                reason = "fenced out: another node claimed the account"
            return told
        finally:
            self._actor.tap = None
            if self._warm is not None:  # ended before the actor took the connection
                await self._warm.discard()
            self._renewer.drop(lease)
            with trio.CancelScope(shield=True):
                await self._step_down(lease, reason)

    async def _keep(self, lease: Lease) -> str:
        """Wait while the node's renewal rounds (`Renewer`) keep the lease; returns why it
        ended. Never returns later than this node's deadline for the lease, which each
        successful round moves on."""
        while not lease.lost.is_set() and lease.remaining() > 0:
            with trio.move_on_at(lease.deadline):
                await lease.lost.wait()
        if lease.handoff_to is not None:
            return f"handed off to {lease.handoff_to}"
        if lease.lost.is_set():
            return "lease lost: another node holds it"
        return "lease expired: no renewal succeeded in time"

    def _health_standby(self) -> None:
        """A standby account has no upstream to judge: its silence is not a stall."""
        if self._health is not None:
            self._health.upstream_watch = None
            self._health.upstream = "standby"

    async def _step_down(self, lease: Lease, reason: str) -> None:
        """Stop writing for the account, close its subscribers, give the lease up (bounded)."""
        self._store.drop_account(self.account)
        was_owner = self.state == "owner"
        self.state = "standby"
        self._health_standby()
        self.lease = None
        if was_owner:
            self.step_downs += 1
            self.last_step_down = f"{time.strftime('%H:%M:%S')} {reason}"
            log.warning("account %s: stepped down: %s", self.account, reason)
            self._actor.close_subscribers(STEPPED_DOWN)
        await self._leases.give_up(lease)
        self.stepped_down.set()
        self.stepped_down = trio.Event()
