"""The open-file limit at start: raised toward the hard limit, and a clear warning when the
configured accounts' sockets do not fit."""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator

import pytest

from supervision.open_files import HEADROOM, raise_open_files


@pytest.fixture
def lowered_limit() -> Iterator[int]:
    """The soft limit set below the hard one for the test, restored after it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_soft_limit_raised_to_hard(lowered_limit: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "orderdesk")
    budget = raise_open_files(10, embedded_venue=False)
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == budget.soft
    if lowered_limit != resource.RLIM_INFINITY:
        assert budget.soft == lowered_limit
    assert budget.needed == 10 * 2 + HEADROOM and budget.fits
    assert not caplog.records  # nothing to warn of
    assert budget.describe().endswith(f"holds {budget.accounts_possible} accounts; 10 configured")


def test_too_many_accounts_warn(caplog: pytest.LogCaptureFixture) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = soft if soft != resource.RLIM_INFINITY else hard
    if limit == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit here")
    accounts = limit  # 4 sockets each with the venue embedded: never fits
    caplog.set_level(logging.INFO, "orderdesk")
    budget = raise_open_files(accounts, embedded_venue=True)
    assert not budget.fits
    assert budget.accounts_possible == (budget.soft - HEADROOM) // 4
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning and f"{accounts} are configured" in warning[0].getMessage()
    assert f"at least {accounts * 4 + HEADROOM}" in warning[0].getMessage()
