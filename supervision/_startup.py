"""Start-up failures an operator fixes outside the program: a busy port, an unreachable store.

They end `orderdesk serve`, `venue` and `migrate` with one line on stderr and exit 2, as
configuration errors do, instead of a traceback through every nursery they crossed.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

from store import StoreOpenFailed

#: What binding a listening socket fails with when the address is the operator's to fix.
_BIND_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


class StartupError(Exception):
    """The service could not start; the message is one line naming what and why."""


async def start_listener(
    nursery: trio.Nursery, what: str, bind: str, serve: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    """`nursery.start(serve, *args)`, a failure to bind `bind` raised as a `StartupError`."""
    with listen_errors(what, bind):
        return await nursery.start(serve, *args)


@contextmanager
def listen_errors(what: str, bind: str) -> Iterator[None]:
    """A failure to bind `bind` inside the block, raised as a `StartupError`."""
    try:
        yield
    except Exception as exc:
        error = _sole(exc)
        if not isinstance(error, OSError) or not (
            isinstance(error, socket.gaierror) or error.errno in _BIND_ERRNOS
        ):
            raise
        cause = (error.strerror or str(error)).lower()
        raise StartupError(f"cannot listen on {bind} ({what}): {cause}") from exc


@contextmanager
def reported_startup_failures() -> Iterator[None]:
    """Re-raise a start-up failure wrapped in exception groups as a bare `StartupError`."""
    try:
        yield
    except Exception as exc:
        error = _sole(exc)
        if isinstance(error, StartupError):
            raise error from None
        if isinstance(error, StoreOpenFailed):
            raise StartupError(str(error)) from None
        raise


def _sole(exc: BaseException) -> BaseException:
    """The one exception inside (possibly nested) single-member groups, else `exc`."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
