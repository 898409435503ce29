"""Small helpers shared by both engines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def background(
    task: Callable[..., Awaitable[None]],
) -> AsyncIterator[None]:
    """Run `task` (started with `nursery.start`) for the duration of the block.

    The body's own exception comes out as itself, not wrapped in an ExceptionGroup, so callers
    of `open_store` can catch store errors plainly.
    """
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(task)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _sole(group) from None


@asynccontextmanager
async def unwrapped_groups() -> AsyncIterator[None]:
    """Re-raise a one-exception group (from a nursery inside the block) as that exception."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise _sole(group) from None


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside (possibly nested) single-member groups, else the group."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return inner
