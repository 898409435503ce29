"""A batch answered as soon as its outcome is decided: every leg COMPLETE.

Once every leg is COMPLETE nothing can change a batch's outcome: a final status stays final
(`stays_final`), so `success` is decided. Two waits used to follow that moment on the client's
path, and neither changes the answer:

- the place calls' own answers. A broker may push an order's fill over the ticker before its
  `POST /orders` answers (the paper venue processes the order, then holds its answer for its
  latency; Kite's OMS can do the same under load). The push carries the leg's tag and order id,
  so `send_absorbing` takes it while the POST is still out: a leg is COMPLETE when the broker
  says so, whichever of the two arrives first. The POST still runs to its end (shielded, in the
  leg's task); its order id must be the one the push named.
- the store writes of the legs' last states and of the final status. The answer comes from
  memory (`BatchRunner.unstored` holds it until the final write lands), as it already did
  when the store was slow; a crash before those writes leaves the batch `running`, and
  recovery finds every leg COMPLETE by its tag: `success` again, the same answer.

Nothing else moves: every leg is still written PLACING before its POST (write-ahead), no leg
is sent before its basket's margin answer (`intake.py`), and a batch that does not succeed is
concluded, rolled back and stored before it answers, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from brokers.base import Order

from ..account import AccountActor
from ..budget import OrderBudget
from ..outcomes import BatchResult
from ..ratelimit import Priority
from .legs import Leg
from .placing import OrderOps
from .results import Plan, batch_result

__all__ = ["EarlyAnswer", "send_absorbing"]

log = logging.getLogger("actors.batch")

AnswerHook = Callable[[BatchResult], None]


class EarlyAnswer:
    """One batch's `success`, handed to `on_answer` once, the moment its last leg is COMPLETE
    (`check` after each leg's change); `result` is what was answered, kept to be stored."""

    def __init__(self, batch_id: str, legs: tuple[Leg, ...], started: float, plan: Plan,
                 on_answer: AnswerHook | None) -> None:
        self._batch_id = batch_id
        self._legs = legs
        self._started = started
        self._plan = plan
        self._on_answer = on_answer
        self.result: BatchResult | None = None

    def check(self) -> None:
        if self.result is not None or not all(leg.complete for leg in self._legs):
            return
        self.result = batch_result(self._batch_id, self._legs, "success",
                                   trio.current_time() - self._started, self._plan)
        if self._on_answer is not None:
            self._on_answer(self.result)


async def send_absorbing(
    ops: OrderOps, actor: AccountActor, limiter: OrderBudget, batch_id: str, leg: Leg,
    updates: trio.MemoryReceiveChannel[Order], deadline: float, *, written_ahead: bool,
    changed: Callable[[], None],
) -> None:
    """`ops.send` a batch leg, absorbing the pushes of its tag (`updates`) while its POST is
    out: a push naming the order sets the leg's order id, and `changed()` is called after each
    one. Raises what `send` raises (not as a group). Pushes after the POST answered are left on
    `updates` for `OrderOps.follow`."""
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:

        async def post() -> None:
            nonlocal failure
            try:
                await ops.send(actor, limiter, batch_id, leg, Priority.NORMAL, deadline,
                               written_ahead=written_ahead)
            except Exception as exc:  # raised below, not as an exception group
                failure = exc
            finally:
                nursery.cancel_scope.cancel()  # stop absorbing: `follow` takes over

        nursery.start_soon(post)
        async for order in updates:
            if leg.order_id is None and leg.matches(order):
                leg.order_id = order.order_id  # named by the push before the POST answered
            leg.absorb(order)
            changed()
    if failure is not None:
        raise failure
