"""Postgres: the order-event log and the latest payload per order.

A group-commit round is one statement, so one round trip: both inserts in one data-modifying
CTE (atomic as any statement is, no BEGIN/COMMIT round trips), each table fed by unnest arrays
whatever the round size, every payload encoded once (as text, cast to jsonb by the server).
Under [cluster] the same one statement first locks and checks the accounts' epochs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import asyncpg

from ._postgres_bridge import PostgresPart
from ._rows import event_rows
from ._sql import ORDERS_UPSERT_TAIL
from .base import AccountState, FencedOut, Json, OrderEvent
from .group_commit import assign_seqs

_LAST_SEQS = (
    "SELECT account, max(seq) AS seq FROM order_events WHERE account = ANY($1::text[])"
    " GROUP BY account"
)
#: Every order of the accounts $1, each account's in the order they were last updated.
_LOAD_ORDERS = (
    "SELECT account, payload FROM orders WHERE account = ANY($1::text[]) ORDER BY account, seq"
)
#: The last $2 events of each account of $1 (the newest first), each read by its primary key.
_LAST_EVENTS = (
    "SELECT a.account, e.seq, e.order_id, e.payload FROM unnest($1::text[]) AS a(account)"
    " CROSS JOIN LATERAL (SELECT seq, order_id, payload FROM order_events"
    " WHERE account = a.account ORDER BY seq DESC LIMIT $2) AS e"
)
_APPEND = (
    "WITH events AS (INSERT INTO order_events (account, seq, order_id, payload, created_at)"
    " SELECT a, s, o, p::jsonb, $5 FROM unnest($1::text[], $2::bigint[], $3::text[],"
    " $4::text[]) AS x(a, s, o, p))"
    " INSERT INTO orders (account, order_id, payload, status, tag, seq, updated_at)"
    " SELECT a, o, p::jsonb, st, t, s, $5 FROM unnest($6::text[], $7::text[], $8::text[],"
    " $9::text[], $10::text[], $11::bigint[]) AS x(a, o, p, st, t, s)"
    + ORDERS_UPSERT_TAIL
)

#: [cluster]: the same round in one statement that first locks the owner rows of its accounts
#: (shared, in account order) and inserts only if every epoch is still this node's. The lock is
#: the statement's own transaction's: a claim racing the round either waits for its commit or,
#: having committed first, is the row version the lock sees (read committed re-reads it), and
#: then nothing is written. Returns the epochs it saw, so the caller names the stale accounts.
_FENCED_APPEND = (
    "WITH fence AS (SELECT account, epoch FROM account_owner"
    " WHERE account = ANY($12::text[]) ORDER BY account FOR SHARE),"
    " ok AS (SELECT count(*) = cardinality($12::text[]) AS ok FROM fence"
    " JOIN unnest($12::text[], $13::bigint[]) AS w(a, e) ON fence.account = w.a"
    " AND fence.epoch = w.e),"
    " events AS (INSERT INTO order_events (account, seq, order_id, payload, created_at)"
    " SELECT a, s, o, p::jsonb, $5 FROM unnest($1::text[], $2::bigint[], $3::text[],"
    " $4::text[]) AS x(a, s, o, p) WHERE (SELECT ok FROM ok)),"
    " latest AS (INSERT INTO orders (account, order_id, payload, status, tag, seq, updated_at)"
    " SELECT a, o, p::jsonb, st, t, s, $5 FROM unnest($6::text[], $7::text[], $8::text[],"
    " $9::text[], $10::text[], $11::bigint[]) AS x(a, o, p, st, t, s) WHERE (SELECT ok FROM ok)"
    + ORDERS_UPSERT_TAIL + ")"
    " SELECT account, epoch FROM fence"
)


class PostgresEvents(PostgresPart):
    """`_write_round` for the committer, and the start of many actors in one read (the other
    event reads are `SharedQueries`)."""

    async def load_accounts(self, accounts: Sequence[str], recent: int) -> dict[str, AccountState]:
        """For each of `accounts`, in one crossing: what `load_orders`, `last_seq` and
        `read_events` of its last `recent` updates would say (a node taking many accounts over
        starts their actors from it)."""
        wanted = sorted(set(accounts))

        async def q(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], ...]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return (list(await conn.fetch(_LOAD_ORDERS, wanted)),
                        list(await conn.fetch(_LAST_EVENTS, wanted, max(1, recent))))

        orders, events = await self._call(q)
        states = {a: AccountState([], 0, []) for a in wanted}
        for row in orders:
            states[row["account"]].orders.append(row["payload"])
        for row in reversed(events):  # oldest first
            state = states[row["account"]]
            state.recent.append(OrderEvent(row["account"], row["seq"], row["order_id"],
                                           row["payload"]))
        for account, state in states.items():
            seq = state.recent[-1].seq if state.recent else 0
            kept = [e for e in state.recent if e.seq > seq - recent]
            states[account] = AccountState(state.orders, seq, kept)
        return states

    async def _write_round(
        self, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int]
    ) -> list[list[int]]:
        return await self._call(self._write_round_aio, requests, known, self._fences)

    @staticmethod
    async def _write_round_aio(
        conn: asyncpg.Connection, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int],
        fences: dict[str, int] | None,
    ) -> list[list[int]]:
        return await _append_round(conn, requests, known, fences)


async def _append_round(
    conn: asyncpg.Connection, requests: list[tuple[str, Sequence[Json]]], known: dict[str, int],
    fences: dict[str, int] | None,
) -> list[list[int]]:
    missing = sorted({a for a, _ in requests} - known.keys())
    if missing:  # an account's first round since start (or since a failed round)
        known.update(dict.fromkeys(missing, 0))
        for row in await conn.fetch(_LAST_SEQS, missing):
            known[row["account"]] = row["seq"]
    per_request, numbered = assign_seqs(requests, known)
    events, latest = event_rows(numbered, json.dumps)
    now = time.time()
    # A seq another writer took meanwhile fails the statement on the primary key: nothing
    # is written, and the committer re-reads the seqs.
    columns = (*zip(*events, strict=True), now, *zip(*latest, strict=True))
    if fences is None:
        await conn.execute(_APPEND, *columns)
        return per_request
    accounts = sorted({a for a, _ in requests})
    held = [fences.get(a, -1) for a in accounts]  # -1: never claimed here, never current
    seen = {r["account"]: r["epoch"] for r in await conn.fetch(_FENCED_APPEND, *columns,
                                                                 accounts, held)}
    stale = [a for a, epoch in zip(accounts, held, strict=True) if seen.get(a) != epoch]
    if stale:  # nothing of the round was written
        raise FencedOut(stale)
    return per_request
