"""A checked batch's way into the store and onto the run queue, its margin check overlapped.

The margin check is one broker round trip, the write-ahead (the batch, and the legs it sends
first as PLACING) one store round: run one after the other they were the whole head start a
sequential placer has over a batch. Here the store writes while the broker answers, and the job
is dispatched only once the margin answer is in: no leg is sent before its basket's own margin
answer has arrived. A refusal after the write deletes what was written (nothing was placed), so
a refused batch leaves nothing stored, as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs
import trio

from store import BatchRecord, Store, StoreError
from store import IdempotencyConflict as KeyStoredBefore

from ..errors import MalformedRequest, StoreUnavailable
from ..requests import BatchRequest
from .accounts import AccountContext, Accounts, Job
from .checks import PreTrade
from .legs import first_wave
from .results import leg_record
from .validation import BatchSpec

__all__ = ["Intake"]

log = logging.getLogger("actors.batch")


class Intake:
    """Stores and dispatches validated, admitted batches for the coordinator."""

    def __init__(self, store: Store, checks: PreTrade, accounts: Accounts,
                 jobs: trio.MemorySendChannel[Job]) -> None:
        self._store = store
        self._checks = checks
        self._accounts = accounts
        self._jobs = jobs

    async def store_while_checking(
        self, ctx: AccountContext, job: Job, request: BatchRequest | MalformedRequest,
        request_hash: str, key: str | None,
    ) -> None:
        """Store the batch while its margin is checked, then dispatch it.

        A refused margin, a kill switch begun meanwhile or a cancellation discards what was
        stored: nothing was placed, and the idempotency key is free again, as if the batch had
        been refused before it was stored. A batch the check turns hedge-first is stored again
        as such (recovery unwinds it in that order). KeyStoredBefore: the key was taken."""
        checked: dict[str, Any] = {}

        async def check() -> None:
            try:
                checked["spec"] = await self._checks.check_margin(ctx, job.spec)
            except Exception as exc:  # raised below, once the batch is stored (to discard it)
                checked["error"] = exc

        stored = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(check)
                with trio.CancelScope(shield=True):
                    try:
                        job = await self._create(job, request, request_hash, key)
                        stored = True
                    except Exception as exc:  # raised below, not as a group
                        checked["store"] = exc
                        nursery.cancel_scope.cancel()  # the check is moot
            for failure in ("store", "error"):
                if failure in checked:
                    raise checked[failure]
            self._accounts.check_open(job.account)  # a kill switch began meanwhile?
            with trio.CancelScope(shield=True):  # stored means dispatched
                if checked["spec"] != job.spec:
                    await self._store.discard_batch(job.batch_id)
                    job = await self._create(attrs.evolve(job, spec=checked["spec"]), request,
                                             request_hash, key)
                await self._jobs.send(job)
        except BaseException:
            if stored:
                with trio.CancelScope(shield=True):
                    await self._discard(job.batch_id)
            raise

    async def _create(
        self, job: Job, request: BatchRequest | MalformedRequest, request_hash: str,
        key: str | None,
    ) -> Job:
        """Store the batch and its legs, those of its first wave PLACING (their write-ahead):
        the job, knowing which. StoreUnavailable, or KeyStoredBefore."""
        ahead = frozenset(leg.index for leg in first_wave(job.spec.execution, job.legs))
        now = time.time()
        record = BatchRecord(job.batch_id, job.account, key, request_hash,
                             _as_run(request, job.spec), "running", None, now, now)
        try:
            await self._store.create_batch(
                record, [leg_record(job.batch_id, leg, leg.index in ahead) for leg in job.legs])
        except KeyStoredBefore:
            raise
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return attrs.evolve(job, written_ahead=ahead)

    async def _discard(self, batch_id: str) -> None:
        """Delete a stored batch that placed nothing (if the store refuses, recovery at the
        next start settles it, placing nothing)."""
        try:
            await self._store.discard_batch(batch_id)
        except StoreError as exc:
            log.error("batch %s was refused before placing anything but could not be "
                      "discarded (%s): it stays stored running until the next start", batch_id,
                      exc)


def _as_run(request: BatchRequest | MalformedRequest, spec: BatchSpec) -> dict[str, Any]:
    """What is stored with a batch: its request, with the execution it runs with when the
    coordinator chose another (recovery unwinds it in that order)."""
    run = attrs.asdict(request)
    if spec.execution_reason is not None:
        run.update(execution=spec.execution, execution_reason=spec.execution_reason)
    return run
