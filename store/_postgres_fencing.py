"""Postgres: [cluster] fencing by the epoch in `account_owner` (and the sealed access tokens
that a node taking an account over loads).

A node that acquires an account's lease bumps the account's epoch (`claim_account`) and keeps
it; from then on every write on behalf of the account (the event append of the seq path and the
batch writes) reads the owner row `FOR SHARE` in the write's own transaction and is refused with
`FencedOut` unless the epoch is still the one this node claimed. The bump takes the row's
exclusive lock, so a write racing it either commits first (the bump waits for it) or sees the new
epoch and writes nothing. A write that holds the row and never ends (its node paused between two
messages of one statement, where Postgres' idle-in-transaction timeout does not run) would hold
the bump, and the takeover, for as long as that node stays paused: after `stuck_write_s` the
claim ends the sessions it waits for (`_end_blockers`). Reads are not fenced. Without [cluster]
`_fences` stays None: no statement is added, no transaction is opened that was not there before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import asyncpg

from ._postgres_bridge import CALL_FENCE, Fence, PostgresPart
from .base import BatchRecord, BatchWithLegs, FencedOut, Json, LegRecord
from .group_commit import GroupCommitter

log = logging.getLogger("orderdesk.store")

#: Every account of $1 (sorted: rows are locked in the order `check_epochs` locks them) gets
#: the next epoch (the first: 1), for node $2, in one statement.
_CLAIM = (
    "INSERT INTO account_owner (account, epoch, node, acquired_at)"
    " SELECT account, 1, $2, $3 FROM unnest($1::text[]) AS claimed(account) ORDER BY account"
    " ON CONFLICT (account) DO UPDATE SET epoch = account_owner.epoch + 1,"
    " node = EXCLUDED.node, acquired_at = EXCLUDED.acquired_at RETURNING account, epoch"
)


async def check_epochs(
    conn: asyncpg.Connection, fences: Mapping[str, int], accounts: Sequence[str]
) -> None:
    """In the caller's transaction: lock the owner rows of `accounts` (shared) and raise
    `FencedOut` naming those whose epoch is not the one this node holds (or never held)."""
    wanted = sorted(set(accounts))
    rows = await conn.fetch(
        "SELECT account, epoch FROM account_owner WHERE account = ANY($1::text[])"
        " ORDER BY account FOR SHARE",
        wanted,
    )
    current = {r["account"]: r["epoch"] for r in rows}
    stale = [a for a in wanted if a not in fences or current.get(a) != fences[a]]
    if stale:
        raise FencedOut(stale)


def _account_fence(fences: Mapping[str, int], account: str) -> Fence:
    async def fence(conn: asyncpg.Connection) -> None:
        await check_epochs(conn, fences, [account])

    return fence


def _batch_fence(fences: Mapping[str, int], batch_id: str) -> Fence:
    async def fence(conn: asyncpg.Connection) -> None:
        account = await conn.fetchval("SELECT account FROM batches WHERE batch_id = $1", batch_id)
        if account is not None:  # no such batch: the write itself says NotFound
            await check_epochs(conn, fences, [account])

    return fence


class PostgresFencing(PostgresPart):
    """Ownership claims, and the batch writes of the `Store` wrapped in the epoch check."""

    _committer: GroupCommitter
    #: How long a claim waits for the writes holding the owner row before it ends their
    #: sessions. The lease is this node's now, so the old owner is past its own deadline: its
    #: writes would be refused anyway; a write in flight normally ends within milliseconds.
    stuck_write_s: float = 1.0

    def start_fencing(self) -> None:
        """[cluster]: from now on a write on behalf of an account this node has not claimed
        (or has dropped) is refused."""
        if self._fences is None:
            self._fences = {}
            self._refused: Counter[str] = Counter()

    async def claim_account(self, account: str, node: str) -> int:
        """Bump `account`'s epoch for `node` (this node, holding the lease); returns it. Writes
        of whoever held it before are refused from its commit on."""
        return (await self.claim_accounts([account], node))[account]

    async def claim_accounts(self, accounts: Sequence[str], node: str) -> dict[str, int]:
        """`claim_account` for each of `accounts` (leases this node holds), in one statement:
        one transaction bumps every epoch. The epoch of each, by account."""
        self.start_fencing()
        assert self._fences is not None
        wanted = sorted(set(accounts))

        async def q(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            ender = asyncio.ensure_future(self._end_blockers(wanted, conn.get_server_pid()))
            try:
                return list(await conn.fetch(_CLAIM, wanted, node, time.time()))
            finally:
                ender.cancel()

        epochs = {r["account"]: int(r["epoch"]) for r in await self._call(q)}
        for account, epoch in epochs.items():
            self._committer.forget(account)  # another node may have appended since we did
            self._fences[account] = epoch
        return epochs

    async def _end_blockers(self, accounts: Sequence[str], claimer: int) -> None:
        """(asyncio) Every `stuck_write_s` while the claim of `accounts` (session `claimer`)
        waits: end the sessions it waits for. Postgres may refuse (another role without
        pg_signal_backend): then the claim waits on, bounded by the caller's lease."""
        while True:
            await asyncio.sleep(self.stuck_write_s)
            try:
                async with self._pool.acquire() as conn:
                    ended = await conn.fetch(
                        "SELECT pid, pg_terminate_backend(pid) AS ended"
                        " FROM unnest(pg_blocking_pids($1)) AS pid", claimer)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("accounts %s: cannot end the sessions holding their claim: %s",
                            ", ".join(accounts), exc)
                continue
            if ended:
                log.warning("accounts %s: the claim waited %.1f s for sessions %s holding"
                            " owner rows (a previous owner paused mid-write?): ended them",
                            ", ".join(accounts), self.stuck_write_s, [r["pid"] for r in ended])

    def drop_account(self, account: str) -> None:
        """Stop writing for `account` (the lease is lost or given up): its writes are refused."""
        if self._fences is not None:
            self._fences.pop(account, None)

    def refused_writes(self, account: str) -> int:
        """Batch and leg writes for `account` refused by epoch since start (the appends are
        the account owner's to count: it steps down on the first)."""
        return 0 if self._fences is None else self._refused[account]

    def epoch_of(self, account: str) -> int | None:
        """The epoch this node holds for `account`, or None."""
        return None if self._fences is None else self._fences.get(account)

    async def save_access_token(self, account: str, sealed: str, node: str) -> None:
        """[cluster]: keep `account`'s access token (`sealed`: encrypted by the caller) for
        whichever node owns the account next. Not fenced: any node may receive it."""
        async def q(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO access_tokens (account, sealed, node, updated_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (account) DO UPDATE SET"
                " sealed = EXCLUDED.sealed, node = EXCLUDED.node,"
                " updated_at = EXCLUDED.updated_at", account, sealed, node, time.time())

        await self._call(q)

    async def load_access_token(self, account: str) -> str | None:
        """[cluster]: the sealed access token last kept for `account`, or None."""
        async def q(conn: asyncpg.Connection) -> str | None:
            found = await conn.fetchval(
                "SELECT sealed FROM access_tokens WHERE account = $1", account)
            return None if found is None else str(found)

        return await self._call(q)

    async def owners(self) -> list[Json]:
        """Every `account_owner` row: account, epoch, node, acquired_at (for `orderdesk
        cluster`)."""
        rows = await self._fetch_owner_rows()
        return [dict(r) for r in rows]

    async def _fetch_owner_rows(self) -> list[asyncpg.Record]:
        async def q(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(
                "SELECT account, epoch, node, acquired_at FROM account_owner ORDER BY account"))

        return await self._call(q)

    @contextmanager
    def _fenced(self, fence: Fence | None) -> Iterator[None]:
        if fence is None:
            yield
            return
        token = CALL_FENCE.set(fence)
        try:
            yield
        except FencedOut as exc:
            self._refused.update(exc.accounts)
            raise
        finally:
            CALL_FENCE.reset(token)

    def _by_account(self, account: str) -> Fence | None:
        return None if self._fences is None else _account_fence(self._fences, account)

    def _by_batch(self, batch_id: str) -> Fence | None:
        return None if self._fences is None else _batch_fence(self._fences, batch_id)

    # -- the batch writes, fenced -------------------------------------------------------

    async def create_batch(self, batch: BatchRecord, legs: Sequence[LegRecord]) -> None:
        with self._fenced(self._by_account(batch.account)):
            await super().create_batch(batch, legs)  # type: ignore[misc]

    async def add_leg(self, leg: LegRecord) -> None:
        with self._fenced(self._by_batch(leg.batch_id)):
            await super().add_leg(leg)  # type: ignore[misc]

    async def update_batch(self, batch_id: str, *, status: str, result: Json | None = None) -> None:
        with self._fenced(self._by_batch(batch_id)):
            await super().update_batch(batch_id, status=status, result=result)

    async def update_leg(
        self, batch_id: str, index: int, *, status: str, order_id: str | None = None,
        detail: Json | None = None,
    ) -> None:
        with self._fenced(self._by_batch(batch_id)):
            await super().update_leg(batch_id, index, status=status, order_id=order_id,
                                     detail=detail)

    async def unfinished_batches(self) -> list[BatchWithLegs]:
        """Under fencing, only those of the accounts this node owns: another node's running
        batches are not this node's to recover."""
        found: list[BatchWithLegs] = await super().unfinished_batches()  # type: ignore[misc]
        fences = self._fences
        return found if fences is None else [b for b in found if b[0].account in fences]

