"""The one poll loop of the tests, for what no in-process event tells of: the venue or the
service behind a socket, another process, the kernel's socket table, rows in the store.
Whatever an actor pushes (its subscribers' frames, `watch`) is waited on, not polled, and so
are the coordinator's statistics (`statistics_until`), health entries (`entry.changes`) and
the order budget's minute (`OrderBudget.room_for`)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

#: Between two looks: short, the waits are bounded by `timeout_s` anyway.
POLL_S = 0.05


async def wait_until(
    check: Callable[[], Awaitable[T] | T], what: str = "the condition", timeout_s: float = 10.0,
    *, poll_s: float = POLL_S, retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """`check()` (sync or async) until it returns something truthy, which is returned; an
    exception in `retry_on` counts as "not yet". AssertionError naming `what` after `timeout_s`."""
    try:
        with trio.fail_after(timeout_s):
            while True:
                try:
                    value: Any = check()
                    if inspect.isawaitable(value):
                        value = await value
                except retry_on:
                    value = None
                if value:
                    return value  # type: ignore[no-any-return]
                await trio.sleep(poll_s)
    except trio.TooSlowError:
        raise AssertionError(f"{what}: not within {timeout_s:g} s") from None
