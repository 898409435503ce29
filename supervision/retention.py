"""The store's retention: a daily prune at `[retention] prune_at` (IST), outside the sessions'
hot path, and `orderdesk prune` for an operator. What is deleted, and what never is: the store's
`prune` (store/_retention.py)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from actors.calendar import IST
from actors.settings import RetentionSettings
from store import Pruned, Store

__all__ = ["prune_cutoff", "prune_daily", "prune_now", "seconds_until"]

log = logging.getLogger("supervision.retention")


def prune_cutoff(now: float, days: int) -> float:
    """The start (IST midnight) of the oldest day kept: `days` days, today included, so the
    current day's events, batches and idempotency keys are never before it."""
    today = dt.datetime.fromtimestamp(now, IST).date()
    first = today - dt.timedelta(days=max(1, days) - 1)
    return dt.datetime.combine(first, dt.time(), IST).timestamp()


def seconds_until(now: float, at: dt.time) -> float:
    """Seconds from the Unix time `now` to the next `at` (IST)."""
    local = dt.datetime.fromtimestamp(now, IST)
    then = dt.datetime.combine(local.date(), at, IST)
    if then.timestamp() <= now:
        then += dt.timedelta(days=1)
    return then.timestamp() - now


async def prune_now(store: Store, days: int, now: float | None = None) -> Pruned:
    """Prune what is older than `days` days (today included); logged with its counts."""
    cutoff = prune_cutoff(time.time() if now is None else now, days)
    pruned = await store.prune(cutoff)
    log.info("pruned the store before %s IST: %s",
             dt.datetime.fromtimestamp(cutoff, IST).date(), attrs.asdict(pruned))
    return pruned


async def prune_daily(
    store: Store, settings: RetentionSettings, *, task_status: Any = trio.TASK_STATUS_IGNORED,
    clock: Callable[[], float] = time.time,
) -> None:
    """Every day at `settings.prune_at` IST: `prune_now`. A failed prune is logged and
    tried again the next day (it deletes nothing the service needs, so late is harmless)."""
    task_status.started()
    while True:
        await trio.sleep(seconds_until(clock(), settings.prune_at))
        try:
            await prune_now(store, settings.days, clock())
        except Exception as exc:
            log.error("daily prune failed: %s: %s", type(exc).__name__, exc)
