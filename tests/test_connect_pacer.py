"""The process's connect pacer: connects spread at its rate with jitter, at most `in_flight`
handshakes at once, and `orderdesk serve`'s wiring shows it at the venue's ticker."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest
import trio

from actors.connect_pacer import ConnectPacer
from supervision.settings import ConfigError, load_settings
from tests.fixtures_service import open_test_service, write_config
from tests.fixtures_waits import wait_until


async def _connect_all(pacer: ConnectPacer, count: int, handshake_s: float) -> tuple[
        list[float], int]:
    """`count` connects through `pacer`, each handshake `handshake_s` long: when each was
    let through, and the most in handshake at once."""
    admitted: list[float] = []
    in_flight = peak = 0

    async def connect() -> None:
        nonlocal in_flight, peak
        async with pacer.connecting():
            admitted.append(trio.current_time())
            in_flight += 1
            peak = max(peak, in_flight)
            await trio.sleep(handshake_s)
            in_flight -= 1

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(connect)
    return admitted, peak


async def test_connects_paced_at_the_rate_with_jitter(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    pacer = ConnectPacer(10.0, 1000, rng=random.Random(7))
    admitted, _ = await _connect_all(pacer, 50, 0.0)
    offsets = sorted(t - start for t in admitted)
    assert offsets[0] == 0  # the first goes at once
    for k, at in enumerate(offsets):  # the k-th token is due at k/rate, plus < 1/rate jitter
        assert k * 0.1 <= at < (k + 1) * 0.1 + 1e-9, (k, at)
    gaps = {round(b - a, 6) for a, b in zip(offsets, offsets[1:], strict=False)}
    assert len(gaps) > 10  # jittered, not a fixed beat
    assert pacer.statistics() == {"connects": 50, "in_flight": 0, "waiting": 0}


async def test_handshakes_in_flight_are_capped(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    pacer = ConnectPacer(1000.0, 3)
    admitted, peak = await _connect_all(pacer, 30, 0.5)
    assert peak == 3
    # 3 at a time, each 0.5 s: the cap, not the rate, sets the pace.
    assert max(admitted) - start >= 9 * 0.5


async def test_a_burst_lets_the_first_ones_through_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    start = trio.current_time()
    pacer = ConnectPacer(1.0, 100, burst=5, rng=random.Random(1))
    admitted, _ = await _connect_all(pacer, 8, 0.0)
    offsets = sorted(t - start for t in admitted)
    assert all(at < 1.0 for at in offsets[:5])
    assert offsets[7] >= 3.0


def test_bad_values_refused() -> None:
    for args in ((0.0, 1), (1.0, 0)):
        with pytest.raises(ValueError):
            ConnectPacer(*args)


@pytest.mark.parametrize(
    ("ticker", "message"),
    [
        ("connect_rate_per_s = 0", "ticker.connect_rate_per_s: must be a number"),
        ("connect_rate_per_s = 'fast'", "ticker.connect_rate_per_s: must be a number"),
        ("connects_in_flight = 0", "ticker.connects_in_flight: must be a whole number"),
        ("connects_in_flight = 2.5", "ticker.connects_in_flight: must be a whole number"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, ticker: str, message: str) -> None:
    path = write_config(tmp_path, extra_toml=f"[ticker]\n{ticker}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(str(path), environ={})


def test_settings_default_and_given(tmp_path: Path) -> None:
    default = load_settings(str(write_config(tmp_path)), environ={})
    assert default.ticker.connect_pace() == (200.0, 100)
    path = write_config(tmp_path, extra_toml="[ticker]\nconnect_rate_per_s = 25\n"
                                             "connects_in_flight = 4\n")
    assert load_settings(str(path), environ={}).ticker.connect_pace() == (25.0, 4)


ACCOUNTS = 24
IN_FLIGHT = 4
RATE = 10.0  # unpaced, 24 accounts open within ~0.7 s here: 10/s takes > 2 s


async def test_service_paces_its_accounts_connects(tmp_path: Path) -> None:
    extra = "".join(f'[[accounts]]\nid = "acct{i}"\nbroker = "paper"\n'
                    for i in range(ACCOUNTS - 2))
    extra += f"[ticker]\nconnect_rate_per_s = {RATE}\nconnects_in_flight = {IN_FLIGHT}\n"
    with trio.fail_after(30):
        async with open_test_service(tmp_path, extra_toml=extra) as running:
            assert running.venue is not None
            async with httpx.AsyncClient(base_url=running.venue.rest_url) as venue:

                async def connects() -> list[float] | None:
                    data = (await venue.get("/_venue/ticker/connects")).json()["data"]
                    times: list[float] = data["connected_at"]
                    return times if data["open"] == ACCOUNTS else None

                times = sorted(await wait_until(connects, "every account connected"))
    assert len(times) == ACCOUNTS
    # Paced: the last connect about (n - 1) intervals after the first (each token is due one
    # interval after the one before; the first handshake, on a cold venue, may be the slowest).
    assert times[-1] - times[0] >= (ACCOUNTS - 4) / RATE
    # In any 1 s at most RATE + 2 tokens are given (the jitter lets two come close), and a
    # socket the venue sees in that second was let through in it or was one of the
    # IN_FLIGHT handshakes already under way (a busy machine finishes late ones together).
    # Unpaced, all 24 open within 1 s.
    most_in_window = max(sum(1 for t in times if a <= t < a + 1.0) for a in times)
    assert most_in_window <= RATE + 2 + IN_FLIGHT, times
