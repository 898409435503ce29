"""BatchConfig: the batch coordinator's timeouts and limits, built once and passed down."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from ..budget import BudgetLimits
from ..calendar import DEFAULT_INSTRUMENT_REFRESH, TradingCalendar
from ..instruments import DEFAULT_FREEZE_LIMITS


@attrs.frozen
class BatchConfig:
    """Timeouts and limits of the coordinator; small values keep tests fast."""

    place_timeout_s: float = 3.0  # one shielded POST; beyond it the outcome is unknown
    lookup_timeout_s: float = 5.0  # one GET /orders resolving an unknown outcome
    poll_interval_s: float = 1.0  # GET /orders/{id} when no push arrives
    deadline_check_s: float = 0.25  # a last GET /orders/{id} this long before the deadline
    rollback_timeout_s: float = 15.0
    cleanup_grace_s: float = 2.0  # cancelling a reverse still open when the rollback times out
    reverse_attempts: int = 3  # reverse orders of one leg that may fill nothing
    market_protection: float = -1  # Kite: -1 automatic, 1..100 percent
    # A reverse where MARKET is refused (or after one was): a LIMIT this many ticks through the
    # LTP, never further than `limit_band_pct` percent from it (the exchange's band refuses
    # that). A reverse still working after `reprice_interval_s` is re-priced by modify, each
    # time `limit_offset_ticks` further, at most `modify_limit_per_order` times (Kite: 25).
    limit_offset_ticks: int = 2
    limit_band_pct: float = 2.0
    reprice_interval_s: float = 1.0
    modify_limit_per_order: int = 25
    cancel_retry_s: float = 0.25  # a refused cancel ("being processed") is retried this often
    rate_per_s: float = 10.0  # order writes in any sliding second (Kite: 10)
    rate_burst: int | None = None  # at most this many at once (None: the whole second's worth)
    rate_margin_s: float = 0.05  # a grant counts this much past its second (the trip to Kite)
    # Kite's minute and day budgets (None: no limit), less a reserve of each that only
    # rollbacks and the kill switch may spend (budget.py); a batch that does not fit is refused.
    rate_per_minute: int | None = 200
    rate_per_day: int | None = 3000
    rate_reserve: int = 20
    max_timeout_s: float = 60.0
    # Each exchange's hours, weekends and holidays (None: always open, the paper default).
    session: TradingCalendar | None = TradingCalendar()
    instrument_refresh: dt.time = DEFAULT_INSTRUMENT_REFRESH  # IST; the master reloads then
    margin_check: bool = True
    # A `parallel` basket whose legs do not fit priced one by one but fit hedged:
    # "hedge_first" runs it hedge-first (no SELL before every BUY is COMPLETE), "refuse" answers
    # 422 before placing anything.
    unhedged_parallel: str = "hedge_first"
    freeze_limits: Mapping[str, int] = attrs.field(factory=lambda: dict(DEFAULT_FREEZE_LIMITS))
    # One store write attempt; a write that fails or times out is retried (backoff up to
    # `store_retry_max_s`) until stored. A leg's write-ahead waits this long before the leg
    # fails unplaced; a reverse order's waits `reverse_write_ahead_s` at most, then goes out.
    store_timeout_s: float = 5.0
    store_retry_max_s: float = 1.0
    reverse_write_ahead_s: float = 0.5
    # Admission: an account's batches in flight (more are refused with 503 `overloaded`).
    max_batches_per_account: int = 50
    idempotency_wait_s: float = 120.0
    # A recovery at start that fails (the broker unreachable, the day's token not loaded yet)
    # is retried after this long, doubling up to the cap, until it succeeds or the coordinator
    # stops.
    recovery_retry_initial_s: float = 0.5
    recovery_retry_max_s: float = 30.0
    # A leg recovery concluded NOT_PLACED (its POST's outcome was unknown, no order carries its
    # tag) is watched this long for a late order with its tag (`late_orders.py` says why so
    # long), its tag also looked up (a shared GET /orders) every `late_poll_s`.
    late_watch_s: float = 300.0
    late_poll_s: float = 5.0
    # The kill switch waits this long for the account's unfinished batches and recoveries
    # (None: place + lookup + rollback + cleanup); past it, their symbols are left alone.
    kill_wait_s: float | None = None

    @property
    def budget(self) -> BudgetLimits:
        """The per-account order budget these figures describe."""
        return BudgetLimits(self.rate_per_s, self.rate_burst, self.rate_margin_s,
                            self.rate_per_minute, self.rate_per_day, self.rate_reserve)

    @property
    def kill_wait(self) -> float:
        if self.kill_wait_s is not None:
            return self.kill_wait_s
        return (self.place_timeout_s + self.lookup_timeout_s + self.rollback_timeout_s
                + self.cleanup_grace_s)
