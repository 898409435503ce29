"""The store's retention job: the cutoff keeps today, the daily prune runs at its IST time,
and `orderdesk prune` does the same from the command line (issue 17)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import trio

from actors.calendar import IST
from actors.settings import RetentionSettings
from store import BatchRecord, Store, open_store
from supervision.retention import prune_cutoff, prune_daily, seconds_until
from tests.fixtures_cli import cli_env, orderdesk
from tests.fixtures_waits import wait_until


def _ist(*args: int) -> float:
    return dt.datetime(*args, tzinfo=IST).timestamp()


def test_the_cutoff_keeps_today_and_the_days_before_it() -> None:
    now = _ist(2026, 12, 2, 0, 30)  # just after midnight IST
    assert prune_cutoff(now, 1) == _ist(2026, 12, 2)
    assert prune_cutoff(now, 7) == _ist(2026, 11, 26)
    assert prune_cutoff(now, 0) == _ist(2026, 12, 2)  # never into today
    assert seconds_until(_ist(2026, 12, 2, 2, 0), dt.time(3, 0)) == 3600
    assert seconds_until(_ist(2026, 12, 2, 3, 0), dt.time(3, 0)) == 86_400


def _batch(batch_id: str, status: str, at: float) -> BatchRecord:
    return BatchRecord(batch_id=batch_id, account="acc", idempotency_key=batch_id,
                       request_hash="h", request={}, status=status, created_at=at,
                       updated_at=at)


async def test_the_daily_job_prunes_at_its_time(store: Store) -> None:
    start = _ist(2026, 12, 2, 2, 59, 59) + 0.5  # half a second before 03:00 IST
    origin = time.monotonic()

    def clock() -> float:  # the wall clock of that night, moving in real time
        return start + time.monotonic() - origin

    await store.create_batch(_batch("old", "success", _ist(2026, 11, 20)), [])
    await store.create_batch(_batch("kept", "success", _ist(2026, 11, 30)), [])
    await store.create_batch(_batch("open", "placing", _ist(2026, 11, 1)), [])
    settings = RetentionSettings(days=3, prune_at=dt.time(3, 0))
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: prune_daily(
            store, settings, task_status=task_status, clock=clock))
        assert await store.get_batch("old") is not None  # not before 03:00

        async def pruned() -> bool:
            return await store.get_batch("old") is None

        await wait_until(pruned, "the 03:00 prune", timeout_s=10)
        assert clock() >= _ist(2026, 12, 2, 3, 0)
        assert await store.get_batch("kept") is not None  # within 3 days
        assert await store.get_batch("open") is not None  # unfinished: recovery needs it
        nursery.cancel_scope.cancel()


async def test_orderdesk_prune_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/orderdesk.db"
    async with open_store(url) as store:
        await store.create_batch(_batch("old", "success", 1000.0), [])
        await store.create_batch(_batch("today", "success", time.time()), [])
        await store.append_events("acc", [{"order_id": "1", "status": "COMPLETE"}])
    result = await orderdesk(tmp_path, "prune", "--days", "1",
                             env=cli_env(tmp_path, DATABASE_URL=url))
    assert result.code == 0, result.stderr
    assert "1 batches" in result.stdout and "0 order_events" in result.stdout
    async with open_store(url) as store:
        assert await store.get_batch("old") is None
        assert await store.find_batch("acc", "today") is not None
        assert await store.last_seq("acc") == 1
