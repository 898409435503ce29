"""A group-commit round is shared by many accounts; a fault in one account's write is not.

The database itself refuses one account's inserts (a trigger), while thousands of others append
in the same rounds: only that account's appends fail, every other account's seq advances without
a gap, and the refused appends consume no seq.
"""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import trio

from store import Store, StoreError, open_store

REFUSED = "refused"
ACCOUNTS = 2000
ROUNDS = 3

def _refuse(url: str, account: str | None = REFUSED) -> None:
    """Make the database refuse every order event of `account` (of every account: None), by
    a trigger another connection creates."""
    if url.startswith("sqlite:///"):
        when = "1" if account is None else f"NEW.account = '{account}'"
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        try:
            conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON order_events WHEN {when}"
                         " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        finally:
            conn.close()
        return
    when = "true" if account is None else f"NEW.account = '{account}'"

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN"
                f" IF {when} THEN RAISE EXCEPTION 'refused by the test'; END IF;"
                " RETURN NEW; END $$ LANGUAGE plpgsql;"
                " CREATE TRIGGER refuse BEFORE INSERT ON order_events"
                " FOR EACH ROW EXECUTE FUNCTION refuse()")
        finally:
            await conn.close()

    asyncio.run(run())


def _order(account: str, n: int) -> dict[str, object]:
    return {"order_id": f"{account}-{n}", "status": "OPEN", "tag": f"t{n}"}


async def test_a_refused_write_fails_only_its_own_account(aio_loop: object, store_url: str) -> None:
    with trio.fail_after(120):
        async with open_store(store_url) as store:
            assert await store.append_events("a0", [_order("a0", 0)]) == [1]
            await trio.to_thread.run_sync(_refuse, store_url)
            seqs: dict[str, list[int]] = {}
            refused: list[BaseException] = []

            async def account(name: str, first: int) -> None:
                for n in range(ROUNDS):
                    try:
                        got = await store.append_events(name, [_order(name, first + n)])
                    except StoreError as exc:
                        refused.append(exc)
                    else:
                        seqs.setdefault(name, []).extend(got)

            committer = store._committer  # type: ignore[attr-defined]
            rounds = committer.rounds
            async with trio.open_nursery() as nursery:
                for i in range(ACCOUNTS // 2):
                    nursery.start_soon(account, f"a{i}", 1)
                nursery.start_soon(account, REFUSED, 0)  # in the middle of the crowd
                for i in range(ACCOUNTS // 2, ACCOUNTS):
                    nursery.start_soon(account, f"a{i}", 1)
            shared = committer.rounds - rounds
            appends = ACCOUNTS * ROUNDS

            assert len(refused) == ROUNDS and REFUSED not in seqs
            assert all("refused by the test" in str(exc) for exc in refused)
            assert seqs["a0"] == [2, 3, 4]
            assert all(seqs[f"a{i}"] == [1, 2, 3] for i in range(1, ACCOUNTS))
            assert shared < appends // 10  # the refused appends did share their rounds
            # nothing refused left a trace, and everyone goes on
            assert await store.last_seq(REFUSED) == 0
            assert await store.append_events("a1", [_order("a1", 9)]) == [4]
            assert [e.seq for e in await store.read_events("a1", 0)] == [1, 2, 3, 4]


async def test_a_payload_the_database_cannot_store_fails_only_its_append(store: Store) -> None:
    """A refused payload (one the database cannot store) fails its append alone; the next
    append of the same account gets the next seq."""
    with trio.fail_after(20):
        assert await store.append_events("acc", [_order("acc", 1)]) == [1]
        results: list[object] = []

        async def append(payload: dict[str, object]) -> None:
            try:
                results.append(await store.append_events("acc", [payload]))
            except StoreError as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(append, {**_order("acc", 2), "bad": {1, 2}})  # not JSON
            nursery.start_soon(append, _order("acc", 3))
        assert sum(isinstance(r, StoreError) for r in results) == 1
        assert [2] in results
        assert [e.seq for e in await store.read_events("acc", 0)] == [1, 2]


async def test_a_fault_failing_every_round_costs_a_few_rounds_not_one_per_request(
    aio_loop: object, store_url: str
) -> None:
    """Every write refused (as by a database that stays locked): the split gives up after a
    bounded number of failed rounds instead of trying each request alone."""
    with trio.fail_after(60):
        async with open_store(store_url) as store:
            await trio.to_thread.run_sync(_refuse, store_url, None)
            committer = store._committer  # type: ignore[attr-defined]
            failures: list[StoreError] = []

            async def append(n: int) -> None:
                try:
                    await store.append_events(f"a{n}", [_order(f"a{n}", 0)])
                except StoreError as exc:
                    failures.append(exc)

            async with trio.open_nursery() as nursery:
                for n in range(1024):
                    nursery.start_soon(append, n)
            assert len(failures) == 1024
            assert committer.failed_rounds < 200  # one round per request would be 1024+
