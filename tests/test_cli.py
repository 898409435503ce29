"""The `orderdesk` console script, run as a subprocess against a real service in the test's process
(see tests/test_admin.py), and `honcho start` with the Procfile.

Exit codes: 0 healthy (or done), 1 degraded (or refused by the server), 2 unreachable.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from supervision.cli import main
from supervision.service import Running
from tests.fixtures_admin import (
    ADMIN_TOKEN,
    TOKENS,
    actor_entry,
    expire_at_venue,
    new_venue_token,
    open_admin_service,
    upstream_is,
    wait_tree,
)
from tests.fixtures_cli import BIN, ORDERDESK, REPO, Result, cli_env, free_port, orderdesk
from tests.fixtures_service import write_config
from tests.fixtures_venue import NIFTY_FUT, kite_headers
from tests.fixtures_waits import wait_until


def server(running: Running, token: str = ADMIN_TOKEN) -> tuple[str, ...]:
    return ("--url", f"http://{running.web_bind}", "--token", token)


# -- status, actors and credentials ---------------------------------------------------------------


async def test_exit_codes_follow_the_tree_through_an_expired_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(90):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            await wait_tree(running, lambda b: upstream_is("primary", "connected")(b)
                            and upstream_is("secondary", "connected")(b))
            status = await orderdesk(tmp_path, "status", *server(running))
            assert status.code == 0, status
            assert "overall" in status.stdout and "ok" in status.stdout
            actors = await orderdesk(tmp_path, "actors", *server(running))
            assert actors.code == 0, actors
            for name in ("account:primary", "account:secondary", "store", "web", "connected"):
                assert name in actors.stdout

            for reload_via_stdin in (False, True):
                await expire_at_venue(running, "primary")
                await wait_tree(running, upstream_is("primary", "auth_expired"))
                status = await orderdesk(tmp_path, "status", *server(running))
                assert status.code == 1, status
                assert "degraded" in status.stdout and "account:primary" in status.stdout
                actors = await orderdesk(tmp_path, "actors", *server(running))
                assert actors.code == 1, actors
                assert "auth_expired" in actors.stdout

                bogus = await orderdesk(
                    tmp_path, "credentials", "primary", *server(running),
                    "--access-token", "not-a-token-the-venue-issued",
                )
                assert bogus.code == 1, bogus
                assert "refused this access token" in bogus.stderr, bogus

                token = await new_venue_token(running, "primary")
                if reload_via_stdin:
                    loaded = await orderdesk(
                        tmp_path, "credentials", "primary", *server(running),
                        stdin=token.encode() + b"\n",
                    )
                else:
                    loaded = await orderdesk(
                        tmp_path, "credentials", "primary", *server(running),
                        "--access-token", token,
                    )
                assert loaded.code == 0, loaded
                assert "new access token loaded" in loaded.stdout
                assert token not in loaded.stdout + loaded.stderr
                await wait_tree(running, lambda b: b["ok"])  # connected, and recovered
                status = await orderdesk(tmp_path, "status", *server(running))
                assert status.code == 0, status


async def test_json_output_is_the_raw_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            for command in ("status", "actors"):
                result = await orderdesk(tmp_path, command, *server(running), "--json")
                assert result.code == 0, result
                body = result.json()
                assert isinstance(body, dict)
                assert body["ok"] is True
                assert {"summary", "actors", "accounts"} <= set(body)
                assert set(body["accounts"]) == {"primary", "secondary"}


async def orderdesk_many(cwd: Path, *argvs: tuple[str, ...]) -> list[Result]:
    """Run several independent commands at once (each an interpreter start, ~1.5 s of CPU)."""
    results: list[Result | None] = [None] * len(argvs)

    async def one(i: int, argv: tuple[str, ...]) -> None:
        results[i] = await orderdesk(cwd, *argv)

    async with trio.open_nursery() as nursery:
        for i, argv in enumerate(argvs):
            nursery.start_soon(one, i, argv)
    return [r for r in results if r is not None]


async def test_unreachable_or_refused_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(60):  # twelve interpreter starts, ~1.5 s of CPU each
        nobody = ("--url", f"http://127.0.0.1:{free_port()}")
        results = await orderdesk_many(
            tmp_path,
            ("status", *nobody, "--token", "x"),
            ("actors", *nobody, "--token", "x"),
            ("restart", "primary", *nobody),
            ("credentials", "primary", *nobody, "--access-token", "t"),
        )
        for result in results:
            assert result.code == 2, result
            assert "cannot reach" in result.stderr and result.stdout == ""
        async with open_admin_service(tmp_path, monkeypatch) as running:
            url = ("--url", f"http://{running.web_bind}")
            refused = [
                (command, *url, "--token", token)
                for token in ("wrong", TOKENS["primary"])
                for command in ("status", "actors")
            ]
            assert running.venue is not None  # answers HTTP, but is not orderdesk
            results = await orderdesk_many(
                tmp_path,
                *refused,
                ("restart", "primary", *url, "--token", "wrong"),
                ("credentials", "primary", *url, "--token", "wrong", "--access-token", "t"),
                ("status", *url),  # no token anywhere
                ("status", "--url", running.venue.rest_url, "--token", ADMIN_TOKEN),
            )
            for argv, result in zip(refused, results, strict=False):
                assert result.code == 2, result
                assert "refused" in result.stderr and argv[-1] not in result.stderr
            assert [r.code for r in results[len(refused):]] == [2, 2, 2, 2], results
            assert "no admin token" in results[-2].stderr
            assert "orderdesk server" in results[-1].stderr


async def test_url_and_token_from_the_environment_or_var_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            env = cli_env(tmp_path, ORDERDESK_URL=f"http://{running.web_bind}",
                       ORDERDESK_ADMIN_TOKEN=ADMIN_TOKEN)
            result = await orderdesk(tmp_path, "status", env=env)
            assert result.code == 0, result

            (tmp_path / "var").mkdir()
            (tmp_path / "var" / "secrets.json").write_text(
                json.dumps({"admin_token": ADMIN_TOKEN, "primary_token": "p"})
            )
            env = cli_env(tmp_path, ORDERDESK_URL=running.web_bind)  # scheme added if missing
            result = await orderdesk(tmp_path, "status", env=env)
            assert result.code == 0, result


async def test_restart_raises_the_restart_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            await wait_tree(running, upstream_is("primary", "connected"))
            result = await orderdesk(tmp_path, "restart", "primary", *server(running))
            assert result.code == 0, result
            assert "restarted" in result.stdout
            body = await wait_tree(running, upstream_is("primary", "connected"))
            assert actor_entry(body, "account:primary")["restarts"] == 1
            assert actor_entry(body, "account:secondary")["restarts"] == 0
            actors = await orderdesk(tmp_path, "actors", *server(running), "--json")
            assert actor_entry(actors.json(), "account:primary")["restarts"] == 1  # type: ignore[arg-type]

            unknown = await orderdesk(tmp_path, "restart", "nobody", *server(running))
            assert unknown.code == 1 and "unknown account" in unknown.stderr, unknown


async def test_credentials_refused_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            unknown = await orderdesk(
                tmp_path, "credentials", "nobody", *server(running), "--access-token", "t"
            )
            assert unknown.code == 1 and "unknown account" in unknown.stderr, unknown
            empty = await orderdesk(tmp_path, "credentials", "primary", *server(running),
                                    stdin=b"\n")
            assert empty.code == 1 and "no access token" in empty.stderr, empty
            too_long = await orderdesk(
                tmp_path, "credentials", "primary", *server(running), "--access-token", "x" * 300
            )
            assert too_long.code == 1 and "at most 256" in too_long.stderr, too_long


async def test_rotate_token_prints_the_new_value_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            result = await orderdesk(tmp_path, "rotate-token", "primary", "primary-desk",
                                     *server(running))
            assert result.code == 0, result
            new = result.stdout.strip()
            assert new and "\n" not in new and "rotated" in result.stderr
            base = f"http://{running.web_bind}/accounts/primary/orders"
            async with httpx.AsyncClient() as http:
                old = await http.get(base, headers={"Authorization": f"Bearer {TOKENS['primary']}"})
                assert old.status_code == 401
                fresh = await http.get(base, headers={"Authorization": f"Bearer {new}"})
                assert fresh.status_code == 200
            unknown = await orderdesk(tmp_path, "rotate-token", "primary", "nobody",
                                      *server(running))
            assert unknown.code == 1 and "no token named" in unknown.stderr, unknown


async def test_watch_refreshes_until_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(30):
        async with open_admin_service(tmp_path, monkeypatch) as running:
            for extra, marker, env in (
                (("--json",), b'"summary"', cli_env(tmp_path)),
                ((), b"overall", cli_env(tmp_path, TTY_COMPATIBLE="1")),  # rich.live redraws
            ):
                process = await trio.lowlevel.open_process(
                    [str(ORDERDESK), "status", *server(running), "--watch", "0.1", *extra],
                    stdout=subprocess.PIPE, cwd=tmp_path, env=env,
                )
                assert process.stdout is not None
                seen = b""
                while seen.count(marker) < 2:  # two refreshes
                    chunk = await process.stdout.receive_some()
                    assert chunk, seen
                    seen += chunk
                process.send_signal(signal.SIGINT)
                while await process.stdout.receive_some():
                    pass
                assert await process.wait() == 0  # healthy at the last refresh
                if extra:
                    for line in seen.decode().splitlines()[:2]:
                        assert json.loads(line)["ok"] is True


# -- --help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    ["serve", "venue", "migrate", "prune", "status", "actors", "restart", "credentials",
     "rotate-token"],
)
def test_help_says_what_each_command_does(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"usage: orderdesk {command}")
    if command in ("status", "actors", "restart", "credentials", "rotate-token"):
        for needle in ("--url", "ORDERDESK_URL", "http://127.0.0.1:8081", "--token",
                       "ORDERDESK_ADMIN_TOKEN", "Exit status: 0"):
            assert needle in text, (command, needle)


# -- honcho with the Procfile ---------------------------------------------------------------------


async def test_honcho_web_trades_on_the_procfiles_venue(tmp_path: Path) -> None:
    """`honcho start`: `web` (whose config also has an embedded [venue]) trades on the `venue`
    process; an order placed through `web` is in that venue's book. SIGTERM stops both, 0."""
    honcho = BIN / "honcho"
    if not honcho.exists():
        pytest.skip("honcho is not installed (pip install -e '.[test]')")
    port, venue_port = free_port(), free_port()
    env = cli_env(tmp_path, PORT=str(port), VENUE_PORT=str(venue_port),
                  VENUE_ACCOUNTS="primary,secondary",
                  ORDERDESK_CONFIG=str(write_config(tmp_path)), PYTHONUNBUFFERED="1")
    log = (tmp_path / "honcho.log").open("wb")
    process = await trio.lowlevel.open_process(
        [str(honcho), "start"], cwd=REPO, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    web = f"http://127.0.0.1:{port}"
    try:
        with trio.fail_after(30):
            await _wait_healthy(web, process)
            result = await orderdesk(tmp_path, "status", "--url", web, "--token", ADMIN_TOKEN)
            assert result.code == 0, result
            async with httpx.AsyncClient(timeout=10) as http:
                placed = await http.post(
                    f"{web}/accounts/primary/orders",
                    headers={"Authorization": f"Bearer {TOKENS['primary']}"},
                    json={"tradingsymbol": NIFTY_FUT, "exchange": "NFO",
                          "transaction_type": "BUY", "quantity": 75, "order_type": "MARKET",
                          "product": "NRML"},
                )
                assert placed.status_code == 200, placed.text
                book = await http.get(f"http://127.0.0.1:{venue_port}/orders",
                                      headers=kite_headers("primary"))
            assert placed.json()["order_id"] in {o["order_id"] for o in book.json()["data"]}
    finally:
        process.send_signal(signal.SIGTERM)  # honcho passes it on; both shut down
        with trio.move_on_after(15) as waited:
            await process.wait()
        if waited.cancelled_caught:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    output = (tmp_path / "honcho.log").read_text()
    assert process.returncode == 143, output  # honcho's own code for "stopped by SIGTERM"
    for name in ("web", "venue"):  # `exec`: orderdesk itself exits 0
        assert f"{name}.1 stopped (rc=0)" in output, output


async def _wait_healthy(web: str, process: trio.Process) -> None:
    """Until `web` answers /admin/actors with every actor connected to its upstream."""
    async with httpx.AsyncClient(timeout=1.0) as http:

        async def healthy() -> bool:
            assert process.returncode is None, "honcho exited early"
            answer = await http.get(f"{web}/admin/actors",
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            return answer.status_code == 200 and bool(answer.json()["ok"])

        await wait_until(healthy, "every actor connected", math.inf, poll_s=0.1,
                         retry_on=(httpx.TransportError,))


# -- deploy/ --------------------------------------------------------------------------------------


def test_grafana_dashboard_charts_every_metric() -> None:
    from web.metrics import Metrics

    dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
    exprs = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    families = {
        line.split()[2]
        for line in Metrics().render().decode().splitlines()
        if line.startswith("# TYPE") and not line.split()[2].endswith("_created")
    }
    assert len(families) == 20, families
    missing = {name for name in families if name not in exprs}
    assert not missing, f"metrics without a panel: {sorted(missing)}"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
