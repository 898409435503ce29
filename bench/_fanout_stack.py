"""The processes bench/fanout.py measures: a paper venue, orderdesk, the asyncio relay.

Each is a subprocess on loopback with its own temp config, started fresh for one measurement
and stopped (SIGINT, then SIGKILL after a grace period) when the measurement ends, so every
figure starts from a clean process: no earlier subscribers, orders or heap growth.

The venue runs as its own process (`orderdesk venue`), not embedded in orderdesk, so the
server CPU and RSS measured are orderdesk's alone (the venue's order handling and ticker
fan-out would otherwise count against it but not against the relay).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import attrs
import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
ORDERDESK = str(Path(sys.executable).with_name("orderdesk"))
RELAY = str(ROOT / "bench" / "peers" / "asyncio_relay.py")
ADMIN_TOKEN = "bench-admin"


def token_for(account: str) -> str:
    return f"t-{account}"


@attrs.frozen
class Subscriber:
    """Where one subscriber connects: what the client processes get."""

    account: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()

    def spec(self) -> dict[str, object]:
        return {"account": self.account, "url": self.url, "headers": list(self.headers)}


@attrs.frozen
class Target:
    """A running server to measure: its name, how to subscribe, and its pid (None: unknown)."""

    name: str
    subscriber: Callable[[str], Subscriber]
    pid: int | None
    has_seq: bool
    http_url: str | None = None  # its HTTP API, where it has one


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accounts_toml(accounts: Sequence[str], venue_rest: str | None) -> str:
    lines = []
    for account in accounts:
        lines += ["[[accounts]]", f'id = "{account}"', 'broker = "paper"',
                  f'tokens = ["{token_for(account)}"]']
        if venue_rest is not None:
            ticker = "ws" + venue_rest.removeprefix("http") + "/"
            lines += [f'rest_url = "{venue_rest}"', f'ticker_url = "{ticker}"']
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def _process(
    args: Sequence[str],
    log_path: Path,
    ready: Callable[[], Awaitable[bool]],
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 120.0,  # 200 accounts on a loaded shared machine
) -> AsyncIterator[trio.Process]:
    """Start `args`, wait until `await ready()` is true (at most `ready_timeout_s`), stop it
    on exit."""
    with log_path.open("ab") as log:
        proc = await trio.lowlevel.open_process(
            list(args), stdout=log, stderr=log, cwd=str(ROOT), env={**os.environ, **(env or {})}
        )
    try:
        with trio.fail_after(ready_timeout_s):
            while not await ready():
                if proc.poll() is not None:
                    raise RuntimeError(f"{args[0]} exited with {proc.returncode}; see {log_path}")
                await trio.sleep(0.1)
        yield proc
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
                with trio.move_on_after(10):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _http_ok(url: str, check: Callable[[httpx.Response], bool] = lambda r: True) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and check(response)


@asynccontextmanager
async def open_venue(
    work: Path, accounts: Sequence[str], launcher: Sequence[str] = (ORDERDESK,)
) -> AsyncIterator[str]:
    """A standalone paper venue knowing `accounts`, no order-rate limit; yields its REST URL.
    `launcher`: the command that runs `orderdesk` (bench/soak.py's --trace wraps it)."""
    port = free_port()
    config = work / f"venue-{port}.toml"
    config.write_text(
        f'[server]\nadmin_token = "{ADMIN_TOKEN}"\n\n'
        f'[venue]\nbind = "127.0.0.1:{port}"\nseed = 1\nfunds = 1e15\n'
        # TOML has no null and 0 is refused: "no limit" is a limit no workload reaches.
        "rate_limit_per_s = 1000000\nstate = \"memory\"\n"
        "rate_limit_per_minute = 0\nrate_limit_per_day = 0\nread_limit_per_s = 0\n\n"
        + _accounts_toml(accounts, None)
    )
    rest = f"http://127.0.0.1:{port}"
    args = [*launcher, "venue", "--config", str(config)]
    log = work / f"venue-{port}.log"
    async with _process(args, log, lambda: _http_ok(f"{rest}/instruments/NFO")):
        yield rest


@asynccontextmanager
async def open_orderdesk(
    work: Path, venue_rest: str, accounts: Sequence[str], database_url: str | None = None,
    extra_toml: str = "", ready_timeout_s: float = 120.0, launcher: Sequence[str] = (ORDERDESK,),
) -> AsyncIterator[Target]:
    """`orderdesk serve`, one paper account per id, against the venue; its store at
    `database_url` (default: a fresh SQLite file); `extra_toml`: more sections; ready once
    every account is connected (within `ready_timeout_s`); `launcher` as `open_venue`'s."""
    port = free_port()
    config = work / f"orderdesk-{port}.toml"
    database_url = database_url or f"sqlite:///{work}/orderdesk-{port}.db"
    config.write_text(
        f'[server]\nbind = "127.0.0.1:{port}"\nadmin_token = "{ADMIN_TOKEN}"\n\n'
        f'[database]\nurl = "{database_url}"\n\n{extra_toml}\n'
        + _accounts_toml(accounts, venue_rest)
    )
    base = f"http://127.0.0.1:{port}"

    def all_connected(response: httpx.Response) -> bool:
        actors = response.json().get("actors", {})
        return actors.get("connected") == actors.get("total") == len(accounts)

    def subscriber(account: str) -> Subscriber:
        return Subscriber(
            account,
            f"ws://127.0.0.1:{port}/ws/orders/{account}",
            (("Authorization", f"Bearer {token_for(account)}"),),
        )

    args = [*launcher, "serve", "--config", str(config)]
    async with _process(
        args,
        work / f"orderdesk-{port}.log",
        lambda: _http_ok(f"{base}/health", all_connected),
        env={"ORDERDESK_VAR": str(work / "var")},
        ready_timeout_s=ready_timeout_s,
    ) as proc:
        yield Target("orderdesk", subscriber, proc.pid, has_seq=True, http_url=base)


@asynccontextmanager
async def open_relay(work: Path, venue_rest: str, accounts: Sequence[str]) -> AsyncIterator[Target]:
    """bench/peers/asyncio_relay.py following the venue's ticker for `accounts`."""
    port = free_port()
    ticker = "ws" + venue_rest.removeprefix("http") + "/"
    log = work / f"relay-{port}.log"
    args = [sys.executable, RELAY, "--bind", f"127.0.0.1:{port}", "--ticker", ticker,
            "--accounts", ",".join(accounts)]

    async def ready() -> bool:
        return log.exists() and '"relay"' in log.read_text()

    async with _process(args, log, ready) as proc:
        yield Target(
            "asyncio_relay",
            lambda account: Subscriber(account, f"ws://127.0.0.1:{port}/{account}"),
            proc.pid,
            has_seq=False,
        )


def external_target(name: str, template: str, pid: int | None) -> Target:
    """Any websocket URL: `template` has `{account}` and may have `{token}`."""

    def subscriber(account: str) -> Subscriber:
        return Subscriber(account, template.format(account=account, token=token_for(account)))

    return Target(name, subscriber, pid, has_seq=True)


@contextmanager
def workdir(keep: str | None, prefix: str) -> Iterator[Path]:
    """Where a bench run's configs and logs go: `keep` (kept after the run), else a temporary
    directory."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)
