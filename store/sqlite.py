"""SQLite engine: the embedded default, so `orderdesk serve` works on a fresh machine.

Every method is one job on the worker thread (one transaction where it writes). WAL mode with
synchronous=FULL: a committed seq survives power loss, so a seq a client saw is never reused.

`SqliteStore` is composed of its parts, one module each: how a call runs as a job
(`_sqlite_jobs`), the event log (`_sqlite_events`), batches (`_sqlite_batches`) and the webhook
outbox with the audit log (`_sqlite_outbox`); what both engines share comes from
`_engine_base.Engine`. This module opens the connection, migrates the schema and runs the
committer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from . import _migrations, _sql
from ._engine_base import Engine
from ._sqlite_batches import SqliteBatches
from ._sqlite_events import SqliteEvents
from ._sqlite_jobs import write_tx
from ._sqlite_outbox import SqliteOutbox
from ._sqlite_retention import SqliteRetention
from ._sqlite_worker import SqliteWorker
from ._util import background
from .base import Json, StoreError, StoreOpenFailed
from .group_commit import GroupCommitter


def _migrate(conn: sqlite3.Connection) -> list[int]:
    def apply() -> list[int]:
        conn.execute(_migrations.CREATE_TABLE)
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        for migration in _migrations.load("sqlite"):
            if migration.version in done:
                continue
            for statement in _split(migration.sql):
                conn.execute(statement)
            conn.execute(
                _sql.RECORD_MIGRATION.sqlite, (migration.version, migration.name, time.time())
            )
            applied.append(migration.version)
        return applied

    return write_tx(conn, apply)


def _split(script: str) -> list[str]:
    """Statements of a migration (executescript would commit our transaction first)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _connect(path: str) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    return connect


class SqliteStore(Engine, SqliteEvents, SqliteBatches, SqliteOutbox, SqliteRetention):
    """The `Store` on SQLite. Build it with `open_sqlite` (or `store.open_store`)."""

    engine = "sqlite"

    def __init__(self, worker: SqliteWorker) -> None:
        super().__init__(worker)
        self._committer = GroupCommitter(self._write_round)

    async def _ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    def _health_extra(self) -> Json:
        return {"pending_jobs": self._worker.pending()}

    async def _sleep_in_db(self, seconds: float) -> None:
        """Test hook: keep the worker busy in one long-running statement (interruptible)."""
        deadline = time.monotonic() + seconds

        def q(conn: sqlite3.Connection) -> None:
            conn.create_function("od_before", 0, lambda: time.monotonic() < deadline)
            conn.execute(
                "WITH RECURSIVE spin(x) AS (SELECT 1 UNION ALL"
                " SELECT x + 1 FROM spin WHERE od_before()) SELECT count(*) FROM spin"
            ).fetchone()

        await self._run(q)


def sqlite_path(url: str) -> str:
    """`sqlite:///rel/path` (under cwd), `sqlite:////abs/path` or `sqlite:///:memory:`."""
    if not url.startswith("sqlite:///"):
        raise StoreError(f"not a sqlite URL: {url!r}")
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        return ":memory:"
    return path


def _keep_private(path: str) -> None:
    """Create the database file 0600 (orders and the audit log are nobody else's), and tighten
    one an older version left readable. SQLite gives its -wal and -shm files the database
    file's mode when it creates them; tighten any left from before too."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)


def _worker_for(url: str) -> SqliteWorker:
    path = sqlite_path(url)
    if path != ":memory:":
        try:
            _keep_private(path)
        except OSError as exc:
            raise _open_failed(path, exc.strerror or str(exc)) from exc
    return SqliteWorker(_connect(path))


def _open_failed(path: str, cause: object) -> StoreOpenFailed:
    return StoreOpenFailed(f"cannot open the SQLite database {path}: {cause}")


@asynccontextmanager
async def open_sqlite(url: str) -> AsyncIterator[SqliteStore]:
    """Start the worker thread, apply migrations, run the committer; join everything on exit."""
    worker = _worker_for(url)
    try:
        try:
            await worker.run(_migrate)
        except StoreError as exc:
            raise _open_failed(sqlite_path(url), exc) from exc
        store = SqliteStore(worker)
        async with background(store._committer.run):
            yield store
    finally:
        await worker.aclose()


async def migrate_sqlite(url: str) -> list[int]:
    """Apply pending migrations (for `orderdesk migrate`); returns the versions applied."""
    worker = _worker_for(url)
    try:
        return await worker.run(_migrate)
    finally:
        await worker.aclose()
