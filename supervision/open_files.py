"""The open-file limit against the sockets the configured accounts need.

Every account holds its ticker socket and a REST keep-alive connection to the broker (two
more inside this process when the paper venue is embedded: its side of both), and clients,
the store and the listeners need room beside them. A Linux process starts with a soft limit
of 1,024 open files; the hard limit is often far higher. So `serve` raises the soft limit to
the hard one at start and says how many accounts it can hold, loudly when they do not fit:
past the limit every new socket fails with EMFILE, the upstreams of the last accounts first.
"""

from __future__ import annotations

import logging
import resource

import attrs

__all__ = ["FileBudget", "HEADROOM", "raise_open_files"]

log = logging.getLogger("orderdesk")

#: Files besides the accounts': client websockets and HTTP, the store, listeners, logs.
HEADROOM = 512


@attrs.frozen
class FileBudget:
    """The soft limit after raising it, the hard one, and what the accounts need."""

    soft: int
    hard: int
    accounts: int
    per_account: int  # sockets each account holds

    @property
    def needed(self) -> int:
        """The accounts' sockets plus HEADROOM."""
        return self.accounts * self.per_account + HEADROOM

    @property
    def fits(self) -> bool:
        return self.needed <= self.soft

    def describe(self) -> str:
        return (f"open files: limit {self.soft} (hard {self.hard}) holds "
                f"{self.accounts_possible} accounts; {self.accounts} configured")

    @property
    def accounts_possible(self) -> int:
        """How many accounts the soft limit holds beside the headroom."""
        return max(0, (self.soft - HEADROOM) // self.per_account)


def raise_open_files(accounts: int, *, embedded_venue: bool) -> FileBudget:
    """Raise the soft RLIMIT_NOFILE to the hard limit; warn now when `accounts` do not fit
    (the service logs `describe()` once it serves)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # a container may refuse it
            log.warning("could not raise the open-file limit from %d to %d: %s",
                        soft, target, exc)
    per_account = 4 if embedded_venue else 2
    budget = FileBudget(soft, hard, accounts, per_account)
    if not budget.fits:  # said before the start, which then fails part way
        log.warning(
            "open files: limit %d (hard %d) holds about %d accounts, %d are configured "
            "(%d sockets each, %d for clients, store and HTTP): raise the hard limit "
            "(ulimit -Hn, LimitNOFILE=) to at least %d, or accounts past the limit fail to "
            "connect", soft, hard, budget.accounts_possible, accounts, per_account, HEADROOM,
            budget.needed)
    return budget
