"""[cluster]: one renewer per node renews every lease the node holds in one Redis round.

Each owner renewing its own lease (one round trip per account every `renew_s`) made 200 accounts
200 calls a period that, on a loaded machine, timed out and let leases flap. The `Renewer` holds
the leases of the accounts this node owns and every `renew_s` sends them all as one pipeline
(`Leases.renew_all`). Each owner learns its own result from its `Lease`: renewed (the deadline
moves on, measured from when the round was sent), lost (`lease.lost`: another node holds the
key; the owner steps down at once), or nothing (the round failed or timed out: the deadline
stays, the owner steps down at it unless a retry, `retry_s` later, succeeds first).
"""

from __future__ import annotations

import logging

import trio

from .lease import REDIS_ERRORS, Lease, Leases

log = logging.getLogger("orderdesk.cluster")


class Renewer:
    """The leases this node holds, renewed together until cancelled (`run`)."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self._held: dict[str, Lease] = {}
        self.rounds = 0  # rounds sent
        self.failed_rounds = 0  # rounds that failed as a whole (Redis error or timeout)

    def hold(self, lease: Lease) -> None:
        """Renew `lease` in every round from now on (the owner has just taken it)."""
        self._held[lease.account] = lease

    def drop(self, lease: Lease) -> None:
        """Stop renewing `lease` (its owner steps down)."""
        if self._held.get(lease.account) is lease:
            del self._held[lease.account]

    def statistics(self) -> dict[str, int]:
        return {"held": len(self._held), "rounds": self.rounds,
                "failed_rounds": self.failed_rounds}

    async def run(self) -> None:
        """A round every `renew_s` from when the last one was sent; after a failed round, the
        next one `retry_s` (0.25 s at most) later, while the deadlines still allow it."""
        cluster = self.leases.cluster
        retry_s = min(0.25, cluster.renew_s)
        while True:
            sent = trio.current_time()
            ok = await self.renew_round()
            await trio.sleep_until(sent + (cluster.renew_s if ok else retry_s))

    async def renew_round(self) -> bool:
        """Renew every held lease once; False if the round failed as a whole. Bounded by the
        latest deadline of the leases sent: past it, no answer would help any of them."""
        leases = list(self._held.values())
        if not leases:
            return True
        self.rounds += 1
        with trio.move_on_at(max(lease.deadline for lease in leases)):
            try:
                await self.leases.renew_all(leases)
                return True
            except REDIS_ERRORS as exc:
                log.warning("lease renewal of %d accounts failed (%.1f s left at least): %s",
                            len(leases), min(lease.remaining() for lease in leases), exc)
        self.failed_rounds += 1
        return False
