"""Why the batch coordinator refuses a request: one exception type per reason.

The coordinator raises these and knows nothing of HTTP; the web front maps each type to its
status and JSON body in one place (`web/replies.py`). Each carries what a client needs to act:
the message, and where it matters the field errors, the order's tag or when to retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .requests import LegRequest

__all__ = [
    "AuthExpired",
    "BasketNotFound",
    "BatchNotFound",
    "BrokerCallFailed",
    "BrokerUnavailable",
    "CoordinatorError",
    "FieldError",
    "IdempotencyConflict",
    "InvalidRequest",
    "KillRunning",
    "MalformedRequest",
    "Overloaded",
    "PositionBusy",
    "PositionNotFound",
    "Rejected",
    "StoreUnavailable",
    "Unavailable",
    "UnknownAccount",
]


@attrs.frozen
class FieldError:
    """One problem with the input: where (`orders[2].quantity`), which rule, and why."""

    path: str = attrs.field(metadata={"doc": "where: a field path such as orders[2].quantity "
                                             "('' for the body as a whole)"})
    rule: str = attrs.field(metadata={"doc": "the rule broken, machine-readable: required, "
                                             "type, enum, range, lot, session, margin, ..."})
    message: str = attrs.field(metadata={"doc": "why, for a person"})


class CoordinatorError(Exception):
    """A request the coordinator refuses or cannot complete; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownAccount(CoordinatorError):
    """No account of that id is configured."""

    def __init__(self, account: str) -> None:
        super().__init__(f"no account {account!r}")
        self.account = account


class BatchNotFound(CoordinatorError):
    """The account has no batch of that id."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch {batch_id!r}")
        self.batch_id = batch_id


class BasketNotFound(CoordinatorError):
    """The account has no saved basket of that name."""


class PositionNotFound(CoordinatorError):
    """The account holds no open position in that instrument and product."""


class PositionBusy(CoordinatorError):
    """A batch, recovery or order of the account is trading that instrument now: an exit
    meanwhile could flatten what its rollback flattens too."""


class Unavailable(CoordinatorError):
    """The coordinator is not running (starting, or shutting down)."""


class StoreUnavailable(CoordinatorError):
    """The store refused the write-ahead of a batch: nothing was placed."""


class BrokerUnavailable(CoordinatorError):
    """The broker could not be asked something needed before sending (the instrument master,
    the margin check, an earlier order's tag): nothing was placed."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.tag = tag


class BrokerCallFailed(CoordinatorError):
    """The broker answered an order call (place, cancel) with a failure of its own."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.tag = tag


class Rejected(CoordinatorError):
    """The broker rejected the order or the cancel; its message says why."""


class IdempotencyConflict(CoordinatorError):
    """The Idempotency-Key was used before with a different body."""


class KillRunning(CoordinatorError):
    """The account's kill switch is running: no new orders, no second kill switch."""


class AuthExpired(CoordinatorError):
    """The broker refuses the account's access token: nothing was sent until an operator
    loads the day's token."""

    def __init__(self, account: str) -> None:
        super().__init__(f"the broker refuses the access token of account {account!r} "
                         f"(expired): nothing was sent. Load the day's token with "
                         f"`orderdesk credentials {account}`, then retry")
        self.account = account


class Overloaded(CoordinatorError):
    """Admission control refused a batch before anything was written or placed."""

    def __init__(self, reason: str, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.reason = reason  # batches_in_flight, order_budget, order_rate, store_latency
        self.retry_after_s = retry_after_s


class InvalidRequest(CoordinatorError):
    """The body breaks one or more rules (every one listed); nothing was sent."""

    def __init__(self, fields: list[FieldError]) -> None:
        super().__init__("; ".join(f"{f.path}: {f.message}" for f in fields))
        self.fields = fields


class MalformedRequest(Exception):
    """A body that breaks the shape rules (types, required fields, enumerations, bounds): raised
    by the web front's converter, then handed to the coordinator, which answers it with an
    `InvalidRequest` listing these problems together with the instrument master's problems of
    the orders in it that are well formed (`orders`: each with its index), so a client still
    learns every problem in one answer."""

    def __init__(
        self, fields: list[FieldError], orders: tuple[tuple[int, LegRequest], ...] = ()
    ) -> None:
        super().__init__("; ".join(f"{f.path}: {f.message}" for f in fields))
        self.fields = fields
        self.orders = orders
