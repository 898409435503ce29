"""Group commit for order-event appends.

Many account actors append at once; one committer task drains every request that is waiting and
writes them in a single transaction, so a caller waits about one commit and the fsync is shared.
The per-account `seq` is assigned inside that transaction from a cache that is only advanced
after the commit succeeds: a failed or cancelled round consumes no seqs.

A round is shared, its faults are not: a round the database refuses (a constraint, a trigger, a
value it cannot store) is split in halves and each half written again, down to the one request
that is refused, so one account's bad write fails only that account's append, at a cost of
about 2·log2(n) extra rounds, paid only on failure. The failed rounds a split may take are
bounded by that (`_split_budget`), so a fault that fails every round (a locked database) costs a
few rounds, not one per request. A store that is gone (`StoreUnavailable`) fails the whole round
at once: a retry could not succeed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from .base import FencedOut, Json, StoreError, StoreUnavailable

#: engine hook: (requests, last committed seq per account, maybe incomplete) -> seqs per request
Requests = list[tuple[str, Sequence[Json]]]
WriteRound = Callable[[Requests, dict[str, int]], Awaitable[list[list[int]]]]


@attrs.define(eq=False)
class _Request:
    account: str
    orders: Sequence[Json]
    done: trio.Event = attrs.field(factory=trio.Event)
    taken: bool = False
    abandoned: bool = False
    seqs: list[int] | None = None
    error: BaseException | None = None


class GroupCommitter:
    """Owns the append queue; `run` is the committer task, `append` is what callers await."""

    def __init__(
        self, write_round: WriteRound, *, queue_size: int = 4096, max_events: int = 5000
    ) -> None:
        self._write_round = write_round
        self._send, self._receive = trio.open_memory_channel[_Request](queue_size)
        self._max_events = max_events
        self._last_seq: dict[str, int] = {}
        self._closed = False
        self.rounds = 0
        self.failed_rounds = 0

    def forget(self, account: str) -> None:
        """Re-read `account`'s last seq from the database at its next round ([cluster]: another
        node may have appended since)."""
        self._last_seq.pop(account, None)

    def pending(self) -> int:
        """Requests queued and not yet taken by the committer (for health)."""
        return self._receive.statistics().current_buffer_used

    async def append(self, account: str, orders: Sequence[Json]) -> list[int]:
        """Queue one append and wait for its round to commit; returns the assigned seqs.

        Cancelled before its round starts, the request is dropped (nothing written). Cancelled
        after, the round still commits or fails as a whole: no seq is ever half-assigned.
        """
        if self._closed:
            raise StoreUnavailable("store is closed")
        request = _Request(account, orders)
        try:
            await self._send.send(request)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise StoreUnavailable("store is closed") from exc
        try:
            await request.done.wait()
        finally:
            if not request.taken:
                request.abandoned = True
        if request.error is not None:
            raise request.error
        assert request.seqs is not None
        return request.seqs

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit rounds until cancelled; pending callers then fail with `StoreUnavailable`."""
        task_status.started()
        try:
            async for first in self._receive:
                await self._commit_round(self._drain(first))
        finally:
            self._closed = True
            self._send.close()
            self._fail_pending()

    def _drain(self, first: _Request) -> list[_Request]:
        batch = [first]
        events = len(first.orders)
        while events < self._max_events:
            try:
                request = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            batch.append(request)
            events += len(request.orders)
        return batch

    async def _commit_round(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.abandoned]
        for request in batch:
            request.taken = True
        if live:
            await self._commit_isolated(live, [_split_budget(len(live))])

    async def _commit_isolated(self, live: list[_Request], budget: list[int]) -> None:
        """Commit `live` in one round; refused, in halves while `budget` (failed rounds left
        to this split) lasts (see the module's docstring)."""
        error: StoreError | None = None
        seqs: list[list[int]] | None = None
        try:
            seqs = await self._write_round(
                [(r.account, r.orders) for r in live], dict(self._last_seq)
            )
        except FencedOut as exc:  # [cluster]: refuse those accounts, commit the others
            seqs = []  # not None: the requests are answered here, not failed by `finally`
            for request in live:
                if request.account in exc.accounts:
                    request.error = FencedOut([request.account])
                    request.done.set()
            await self._commit_round([r for r in live if r.account not in exc.accounts])
            return
        except StoreUnavailable as exc:
            error = exc
        except Exception as exc:  # refused, or an engine bug: fail the callers, never hang them
            error = exc if isinstance(exc, StoreError) else StoreError(f"append failed: {exc!r}")
            self.failed_rounds += 1
            budget[0] -= 1
            if len(live) > 1 and budget[0] > 0:
                error = None
                self._last_seq.clear()  # re-read from the database by the halves' rounds
                half = len(live) // 2
                await self._commit_isolated(live[:half], budget)
                await self._commit_isolated(live[half:], budget)
                return
        finally:
            # Failed, or cancelled (the store closing): every request not yet answered fails.
            pending = [r for r in live if not r.done.is_set()] if seqs is None else []
            if pending:
                self._last_seq.clear()  # re-read from the database next round
                error = error or StoreUnavailable("store closed during commit")
                for request in pending:
                    request.error = error
                    request.done.set()
        if seqs is None:
            return
        self.rounds += 1
        for request, assigned in zip(live, seqs, strict=True):
            request.seqs = assigned
            if assigned:
                self._last_seq[request.account] = assigned[-1]
            request.done.set()

    def _fail_pending(self) -> None:
        while True:
            try:
                request = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            request.taken = True
            request.error = StoreUnavailable("store is closed")
            request.done.set()


def _split_budget(requests: int) -> int:
    """Failed rounds a split of `requests` may take: enough to isolate two refused requests."""
    return 4 * requests.bit_length() + 1


def assign_seqs(
    requests: list[tuple[str, Sequence[Json]]], last_seq: dict[str, int]
) -> tuple[list[list[int]], list[tuple[str, int, Json]]]:
    """Number every order of a round in order; `last_seq` must cover every account of it.

    Returns the seqs per request and the flat (account, seq, payload) rows to insert.
    """
    nxt = dict(last_seq)
    per_request: list[list[int]] = []
    rows: list[tuple[str, int, Json]] = []
    for account, orders in requests:
        assigned = []
        for payload in orders:
            seq = nxt[account] = nxt[account] + 1
            assigned.append(seq)
            rows.append((account, seq, payload))
        per_request.append(assigned)
    return per_request, rows
