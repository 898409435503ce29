"""Start-up through the real `orderdesk` console script: private files, one-line failures.

The SQLite database and its -wal/-shm files hold orders and the audit log: 0600, as the
generated secrets are (tests/test_settings.py). A start-up that cannot work (Postgres
unreachable, a port taken) ends with one line naming where and why, and exit 2 as configuration
errors do: no traceback, and never the database password.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from store import StoreOpenFailed, open_store
from tests.fixtures_cli import Result, free_port, orderdesk, running_orderdesk
from tests.fixtures_service import write_config

EXIT_CONFIG = 2


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def listening() -> Iterator[int]:
    """A loopback port that is taken for the duration of the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def assert_one_line_failure(result: Result, expected: str) -> None:
    assert result.code == EXIT_CONFIG, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == expected, result.stderr


# -- files ----------------------------------------------------------------------------------------


async def test_served_sqlite_files_are_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask, which would leave them 0644
    try:
        async with running_orderdesk(tmp_path, "serve", "--config", str(write_config(tmp_path))):
            files = [tmp_path / name for name in ("od.db", "od.db-wal", "od.db-shm")]
            assert all(f.exists() for f in files), files  # noqa: ASYNC240 (a stat, local)
            assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    finally:
        os.umask(old_umask)


async def test_files_an_older_version_left_readable_are_tightened(tmp_path: Path) -> None:
    db = tmp_path / "od.db"
    with trio.fail_after(10):
        async with open_store(f"sqlite:///{db}"):
            pass
        db.chmod(0o644)
        async with open_store(f"sqlite:///{db}"):
            assert oct(mode(db)) == "0o600"
            assert oct(mode(tmp_path / "od.db-wal")) == "0o600"


async def test_an_unopenable_sqlite_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    with trio.fail_after(30), pytest.raises(StoreOpenFailed, match="a-directory"):
        async with open_store(f"sqlite:///{tmp_path}/a-directory"):
            pass
    result = await orderdesk(tmp_path, "migrate", "--config", str(write_config(
        tmp_path, f"sqlite:///{tmp_path}/a-directory")))
    assert result.code == EXIT_CONFIG and "Traceback" not in result.stderr, result
    assert result.stderr.startswith("orderdesk: cannot open the SQLite database"), result


# -- Postgres unreachable -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "migrate"])
async def test_refused_postgres_is_one_line_without_the_password(
    tmp_path: Path, command: str
) -> None:
    port = free_port()
    url = f"postgresql://orderdesk:s3cret-pw@127.0.0.1:{port}/orders"
    with trio.fail_after(30):
        result = await orderdesk(
            tmp_path, command, "--config", str(write_config(tmp_path, url))
        )
    assert result.stderr.splitlines() == [
        f"orderdesk: cannot reach Postgres at 127.0.0.1:{port}/orders: connection refused"
    ], result
    assert result.code == EXIT_CONFIG
    assert "s3cret-pw" not in result.stdout + result.stderr


async def test_missing_postgres_database_names_the_cause(tmp_path: Path, pg_database: str) -> None:
    url = pg_database.rpartition("/")[0] + "/od_no_such_database"
    server = urlsplit(url)
    with trio.fail_after(30):
        result = await orderdesk(tmp_path, "serve", "--config", str(write_config(tmp_path, url)))
    assert result.code == EXIT_CONFIG, result
    [line] = result.stderr.splitlines()
    assert line.startswith(f"orderdesk: cannot reach Postgres at {server.hostname}:"
                           f"{server.port or 5432}/od_no_such_database: "), line
    assert line.endswith('database "od_no_such_database" does not exist'), line


# -- ports taken ----------------------------------------------------------------------------------


async def test_web_port_taken(tmp_path: Path) -> None:
    config = str(write_config(tmp_path))
    with listening() as port, trio.fail_after(30):
        result = await orderdesk(tmp_path, "serve", "--config", config,
                                 "--bind", f"127.0.0.1:{port}")
    assert_one_line_failure(
        result, f"orderdesk: cannot listen on 127.0.0.1:{port} (web): address already in use"
    )


async def test_embedded_venue_port_taken(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with listening() as port, trio.fail_after(30):
        config.write_text(config.read_text().replace(
            '[venue]\nbind = "127.0.0.1:0"', f'[venue]\nbind = "127.0.0.1:{port}"'))
        result = await orderdesk(tmp_path, "serve", "--config", str(config))
    assert_one_line_failure(
        result,
        f"orderdesk: cannot listen on 127.0.0.1:{port} (paper venue): address already in use",
    )


async def test_standalone_venue_port_taken(tmp_path: Path) -> None:
    with listening() as port, trio.fail_after(30):
        result = await orderdesk(tmp_path, "venue", "--bind", f"127.0.0.1:{port}")
    assert_one_line_failure(
        result,
        f"orderdesk: cannot listen on 127.0.0.1:{port} (paper venue): address already in use",
    )


# -- one store, one gateway -----------------------------------------------------------------------


async def test_a_second_serve_on_the_same_store_exits_and_a_killed_one_frees_it(
    tmp_path: Path,
) -> None:
    config = str(write_config(tmp_path))
    with trio.fail_after(60):
        async with running_orderdesk(tmp_path, "serve", "--config", config) as first:
            result = await orderdesk(tmp_path, "serve", "--config", config,
                                     "--bind", f"127.0.0.1:{free_port()}")
            assert_one_line_failure(
                result, f"orderdesk: the store {tmp_path}/od.db is in use by another orderdesk "
                        f"(pid {first.pid})")
            first.kill()  # kill -9: the kernel drops the lock, the lock file stays
            await first.wait()
        assert (tmp_path / "od.db.lock").exists()  # noqa: ASYNC240 (a stat, local)
        async with running_orderdesk(tmp_path, "serve", "--config", config) as second:
            assert second.returncode is None
