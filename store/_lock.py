"""One store, one gateway: `orderdesk serve` holds an exclusive lock on its SQLite store.

Two gateways on one store would both recover the same unfinished batches and both flatten the
same legs. The lock is `fcntl.flock` on `<database>.lock` beside the database file: the kernel
releases it when the process ends, however it ends (kill -9 included), so a stale lock file
never blocks a restart. The holder writes its pid into the file for the refusal's message.
Postgres stores are not locked here (several nodes sharing Postgres is the planned cluster
mode, fenced by its own lease).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .base import StoreOpenFailed
from .sqlite import sqlite_path


class StoreInUse(StoreOpenFailed):
    """Another orderdesk holds the store's lock; the message names the store and its pid."""


@contextmanager
def exclusive_store(url: str) -> Iterator[None]:
    """Hold the store's lock for the block; `StoreInUse` if another process holds it."""
    if not url.startswith("sqlite:///") or sqlite_path(url) == ":memory:":
        yield
        return
    database = sqlite_path(url)
    lock = Path(f"{database}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreOpenFailed(f"cannot open the store's lock file {lock}: "
                              f"{exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StoreInUse(f"the store {database} is in use by another orderdesk "
                             f"(pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
