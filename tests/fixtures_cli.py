"""Running the real `orderdesk` console script (and honcho) as subprocesses of a test.

Each child gets the caller's environment without any ORDERDESK_* variable, and var/ under the
test's directory; `free_port` names a loopback port nobody listens on. `running_orderdesk` keeps
a server command running for the block (stderr in `stderr.log` of its directory) and ends it
with SIGTERM, as a process manager would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

BIN = Path(sys.executable).parent
ORDERDESK = BIN / "orderdesk"
REPO = Path(__file__).resolve().parents[1]


@attrs.frozen
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


def cli_env(cwd: Path, **extra: str) -> dict[str, str]:
    """The environment without any ORDERDESK_* of the caller's, var/ under the test's dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERDESK_")}
    env.update(ORDERDESK_VAR=str(cwd / "var"), COLUMNS="200", **extra)
    return env


async def orderdesk(
    cwd: Path, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> Result:
    process = await trio.run_process(
        [str(ORDERDESK), *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=cwd,
        env=env or cli_env(cwd),
    )
    return Result(process.returncode, process.stdout.decode(), process.stderr.decode())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_orderdesk(
    cwd: Path, *args: str, env: dict[str, str] | None = None, ready: str = "serving on"
) -> AsyncIterator[trio.Process]:
    """`orderdesk *args` until the block ends; entered once its stdout says `ready`."""
    with (cwd / "stderr.log").open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [str(ORDERDESK), *args], stdout=subprocess.PIPE, stderr=stderr, cwd=cwd,
            env=env or cli_env(cwd),
        )
    assert process.stdout is not None
    try:
        seen = b""
        with trio.fail_after(30):
            while ready.encode() not in seen:
                chunk = await process.stdout.receive_some()
                assert chunk, f"exited before {ready!r}: {seen.decode()}"
                seen += chunk
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(15) as waited:
            await process.wait()
        if waited.cancelled_caught:
            process.kill()
            await process.wait()
