"""[cluster] fencing at the broker: Kite knows no epochs, so the owner checks its lease itself.

Immediately before each order write (place, modify, cancel) `OrderOps.write` asks the node's
`BrokerFence` whether the call may start: it may only while this node owns the account and its
lease (counted from when the renewal was sent, minus the margin) outlasts the call's timeout, so
a call never runs past the moment another node may take the account. A refused call was never
sent: `LeaseExpiring` is a broker error the batch path treats as a failed leg, and a rollback
that finds its node no longer the owner stops, leaving the batch to the next owner's recovery
(which finds everything by tag). None without [cluster]: nothing is checked.
"""

from __future__ import annotations

from collections.abc import Callable

from brokers.base import BrokerError

__all__ = ["BrokerFence", "LeaseExpiring"]

#: `fence(account, call_s)` raises `LeaseExpiring` unless a call of up to `call_s` seconds may
#: start now on behalf of `account`.
BrokerFence = Callable[[str, float], None]


class LeaseExpiring(BrokerError):
    """Not sent: this node does not own the account, or its lease ends before the call would."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_type="LeaseExpiring")
