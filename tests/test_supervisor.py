"""supervise() and the dynamic supervisor, on the autojump clock: every wait is in-process, so
backoff and intensity windows collapse to nothing while trio.current_time() still measures them."""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio
import trio.testing

from supervision import (
    ChildFailed,
    ChildSpec,
    HealthRegistry,
    RestartPolicy,
    open_dynamic_supervisor,
    supervise,
)

Behaviour = Callable[[int], Awaitable[None]]  # gets the 0-based run number


async def crash(run: int) -> None:
    raise ValueError(f"boom {run}")


async def finish(run: int) -> None:
    return None


async def forever(run: int) -> None:
    await trio.sleep_forever()


def crash_first(n: int, then: Behaviour = forever) -> Behaviour:
    async def behave(run: int) -> None:
        if run < n:
            raise ValueError(f"boom {run}")
        await then(run)

    return behave


@attrs.define
class Child:
    """A scripted child that records the trio time of every start."""

    behave: Behaviour
    ready_after: float = 0.0
    ready_from: int = 0  # earlier runs return without calling task_status.started()
    starts: list[float] = attrs.Factory(list)
    stopped: int = 0
    readies: int = 0
    _ready: trio.Event = attrs.Factory(trio.Event)

    async def __call__(self, *, task_status: trio.TaskStatus[None]) -> None:
        run = len(self.starts)
        self.starts.append(trio.current_time())
        try:
            await trio.sleep(self.ready_after)
            if run < self.ready_from:
                return
            task_status.started()
            self.readies += 1
            self._ready.set()
            self._ready = trio.Event()
            await self.behave(run)
        finally:
            self.stopped += 1

    async def wait_ready(self, n: int) -> None:
        """Wait until `n` runs have called task_status.started() and the supervisor saw it."""
        while self.readies < n:
            await self._ready.wait()
        await trio.testing.wait_all_tasks_blocked()

    @property
    def gaps(self) -> list[float]:
        return [round(b - a, 6) for a, b in zip(self.starts, self.starts[1:], strict=False)]


NO_JITTER = RestartPolicy(initial_delay=1.0, max_delay=5.0, jitter=0.0, max_restarts=3, period=100)


def spec(child: Child, policy: RestartPolicy = NO_JITTER, **kw: object) -> ChildSpec:
    return ChildSpec(name=kw.pop("name", "child"), start=child, policy=policy, **kw)  # type: ignore[arg-type]


async def test_backoff_grows_and_is_capped(autojump_clock: trio.abc.Clock) -> None:
    health, child = HealthRegistry(), Child(crash)
    policy = attrs.evolve(NO_JITTER, max_restarts=7, period=1000)
    with trio.fail_after(100):
        await supervise(spec(child, policy), health)
    assert child.gaps == [1, 2, 4, 5, 5, 5, 5]
    entry = health.get("child")
    assert entry is not None and entry.state == "failed" and entry.restarts == 7


async def test_jitter_is_uniform_and_seeded(autojump_clock: trio.abc.Clock) -> None:
    health, child = HealthRegistry(), Child(crash)
    policy = attrs.evolve(NO_JITTER, jitter=0.5, max_restarts=4)
    with trio.fail_after(100):
        await supervise(spec(child, policy), health, rng=random.Random(7))
    replay = random.Random(7)
    expected = [round(base + replay.uniform(0, 0.5), 6) for base in (1, 2, 4, 5)]
    assert child.gaps == pytest.approx(expected, abs=1e-6)
    assert all(0 <= gap - base <= 0.5 for gap, base in zip(child.gaps, (1, 2, 4, 5), strict=True))


async def test_past_intensity_the_child_fails_and_supervise_returns(
    autojump_clock: trio.abc.Clock,
) -> None:
    health, child = HealthRegistry(), Child(crash)
    with trio.fail_after(100):
        await supervise(spec(child), health)
    assert len(child.starts) == NO_JITTER.max_restarts + 1
    entry = health.get("child")
    assert entry is not None
    assert (entry.state, entry.restarts, entry.window_restarts) == ("failed", 3, 4)
    assert entry.last_error is not None
    assert (entry.last_error.type, entry.last_error.message) == ("ValueError", "boom 3")
    assert health.degraded()
    assert health.summary()["ok"] is False


async def test_escalate_raises_child_failed_chained_to_last_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    health, child = HealthRegistry(), Child(crash)
    with trio.fail_after(100), pytest.raises(ChildFailed) as info:
        await supervise(spec(child), health, escalate=True)
    assert info.value.name == "child"
    cause = info.value.__cause__
    assert isinstance(cause, ExceptionGroup) and cause.subgroup(ValueError) is not None
    assert health.degraded()


async def test_failures_outside_the_window_do_not_count(autojump_clock: trio.abc.Clock) -> None:
    # Each run lives 40 s before crashing: never more than 3 failures within 100 s.
    async def live_then_crash(run: int) -> None:
        if run >= 8:
            await trio.sleep_forever()
        await trio.sleep(40)
        raise ValueError("late")

    health, child = HealthRegistry(), Child(live_then_crash)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(1000):
            await nursery.start(supervise, spec(child), health)
            await child.wait_ready(9)
        entry = health.get("child")
        assert entry is not None and entry.state == "running" and entry.restarts == 8
        nursery.cancel_scope.cancel()


async def test_a_run_healthy_for_a_period_resets_the_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Runs 0-2 crash at once (backoff 1, 2, 4); run 3 lives a whole period, then crash again.
    async def behave(run: int) -> None:
        if run == 3:
            await trio.sleep(NO_JITTER.period)
        if run >= 5:
            await trio.sleep_forever()
        raise ValueError(run)

    health, child = HealthRegistry(), Child(behave)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(1000):
            await nursery.start(supervise, spec(child), health)
            await child.wait_ready(6)
        assert child.gaps[:3] == [1, 2, 4]
        assert child.gaps[3] == NO_JITTER.period + 1  # backoff back at initial_delay
        assert child.gaps[4] == 2
        entry = health.get("child")
        assert entry is not None and entry.state == "running" and entry.window_restarts == 2
        nursery.cancel_scope.cancel()


async def test_exception_group_of_exceptions_is_a_crash(autojump_clock: trio.abc.Clock) -> None:
    async def behave(run: int) -> None:
        if run == 0:
            raise ExceptionGroup("legs", [ValueError("a"), KeyError("b")])
        await trio.sleep_forever()

    health, child = HealthRegistry(), Child(behave)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(100):
            await nursery.start(supervise, spec(child), health)
            await child.wait_ready(2)
        entry = health.get("child")
        assert entry is not None and entry.state == "running" and entry.restarts == 1
        assert entry.last_error is not None and entry.last_error.type == "ExceptionGroup"
        assert "ValueError: a" in entry.last_error.message
        nursery.cancel_scope.cancel()


class Fatal(BaseException):
    pass


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, Fatal])
async def test_base_exceptions_are_not_swallowed(
    autojump_clock: trio.abc.Clock, exc_type: type[BaseException]
) -> None:
    async def behave(run: int) -> None:
        raise exc_type()

    health, child = HealthRegistry(), Child(behave)
    with trio.fail_after(100), pytest.raises(BaseExceptionGroup) as info:
        await supervise(spec(child), health)
    assert info.group_contains(exc_type)
    assert len(child.starts) == 1
    entry = health.get("child")
    assert entry is not None and entry.state == "stopped" and entry.restarts == 0


@pytest.mark.parametrize("during", ["running", "backoff"])
async def test_cancellation_from_above_stops_without_restart(
    autojump_clock: trio.abc.Clock, during: str
) -> None:
    health = HealthRegistry()
    child = Child(forever if during == "running" else crash_first(1))
    policy = attrs.evolve(NO_JITTER, initial_delay=50, max_delay=50)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervise, spec(child, policy), health)
            await trio.sleep(10)
            entry = health.get("child")
            assert entry is not None and entry.state == during
            nursery.cancel_scope.cancel()
    assert len(child.starts) == 1 and child.stopped == 1
    assert entry.state == "stopped" and entry.restarts == 0
    assert not health.degraded()


@attrs.frozen
class RestartCase:
    restart: str
    behave: Behaviour
    starts: int
    state: str


RESTART_CASES = [
    RestartCase("permanent", finish, NO_JITTER.max_restarts + 1, "failed"),
    RestartCase("permanent", crash, NO_JITTER.max_restarts + 1, "failed"),
    RestartCase("transient", finish, 1, "stopped"),
    RestartCase("transient", crash, NO_JITTER.max_restarts + 1, "failed"),
    RestartCase("temporary", finish, 1, "stopped"),
    RestartCase("temporary", crash, 1, "failed"),
]


@pytest.mark.parametrize(
    "case", RESTART_CASES, ids=[f"{c.restart}-{c.behave.__name__}" for c in RESTART_CASES]
)
async def test_restart_types(autojump_clock: trio.abc.Clock, case: RestartCase) -> None:
    health, child = HealthRegistry(), Child(case.behave)
    with trio.fail_after(100):
        await supervise(spec(child, restart=case.restart), health)
    entry = health.get("child")
    assert entry is not None
    assert (len(child.starts), entry.state) == (case.starts, case.state)


async def test_start_returns_once_the_child_is_ready(autojump_clock: trio.abc.Clock) -> None:
    health, child = HealthRegistry(), Child(crash_first(1), ready_after=5)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(100):
            await nursery.start(supervise, spec(child), health)
        assert trio.current_time() == 5 and child.readies == 1
        # first run: ready at 5, crashes; backoff 1; second run ready at 11, without re-signalling
        with trio.fail_after(100):
            await child.wait_ready(2)
        assert trio.current_time() == 11
        entry = health.get("child")
        assert entry is not None and entry.state == "running" and entry.restarts == 1
        nursery.cancel_scope.cancel()


async def test_start_waits_through_crashes_before_readiness(
    autojump_clock: trio.abc.Clock,
) -> None:
    health, child = HealthRegistry(), Child(forever, ready_after=2, ready_from=2)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(100):
            await nursery.start(supervise, spec(child), health)
        assert len(child.starts) == 3
        assert trio.current_time() == pytest.approx(child.starts[2] + 2)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("escalate", [False, True])
async def test_never_ready_child_gives_up(autojump_clock: trio.abc.Clock, escalate: bool) -> None:
    health, child = HealthRegistry(), Child(forever, ready_from=99)
    start = functools.partial(supervise, spec(child), health, escalate=escalate)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(100):
            if escalate:
                with pytest.raises(ChildFailed):
                    await nursery.start(start)
            else:
                await nursery.start(start)  # returns: a failed child must not hang its parent
    entry = health.get("child")
    assert entry is not None and entry.state == "failed"
    assert entry.last_error is not None and "started" in entry.last_error.message


async def test_dynamic_children_are_isolated(autojump_clock: trio.abc.Clock) -> None:
    health = HealthRegistry()
    good, bad = Child(forever), Child(crash)
    with trio.fail_after(100):
        async with open_dynamic_supervisor(health) as sup:
            await sup.start_child(spec(good, name="good", kind="actor"))
            await sup.start_child(spec(bad, name="bad", kind="actor"))
            await trio.sleep(50)
            states = {e["name"]: e["state"] for e in health.snapshot()}
            assert states == {"good": "running", "bad": "failed"}
            assert len(good.starts) == 1 and good.stopped == 0
            assert len(bad.starts) == NO_JITTER.max_restarts + 1
            assert sorted(sup.children()) == ["bad", "good"]
            assert health.summary()["degraded"] == ["bad"]
        assert good.stopped == 1  # leaving the block stops every child
    assert health.get("good") is not None and health.get("good").state == "stopped"


async def test_dynamic_names_are_unique(autojump_clock: trio.abc.Clock) -> None:
    health = HealthRegistry()
    with trio.fail_after(100):
        async with open_dynamic_supervisor(health) as sup:
            await sup.start_child(spec(Child(forever), name="a"))
            with pytest.raises(ValueError, match="already exists"):
                await sup.start_child(spec(Child(forever), name="a"))
            with pytest.raises(KeyError):
                await sup.stop_child("nope")


async def test_stop_child(autojump_clock: trio.abc.Clock) -> None:
    health = HealthRegistry()
    a, b = Child(forever), Child(forever)
    with trio.fail_after(100):
        async with open_dynamic_supervisor(health) as sup:
            await sup.start_child(spec(a, name="a"))
            await sup.start_child(spec(b, name="b"))
            await sup.stop_child("a")
            assert a.stopped == 1 and b.stopped == 0
            assert sup.children() == ["b"]
            assert "a" not in health and "b" in health
            await sup.start_child(spec(a, name="a"))  # the name is free again
            assert len(a.starts) == 2


@pytest.mark.parametrize("state", ["failed", "running"])
async def test_restart_child(autojump_clock: trio.abc.Clock, state: str) -> None:
    health = HealthRegistry()
    child = Child(crash if state == "failed" else forever)
    with trio.fail_after(100):
        async with open_dynamic_supervisor(health) as sup:
            await sup.start_child(spec(child, name="acct"))
            await trio.sleep(50)
            entry = health.get("acct")
            assert entry is not None and entry.state == state
            before = len(child.starts)
            child.behave = forever
            await sup.restart_child("acct")
            assert len(child.starts) == before + 1
            assert health.get("acct") is entry  # history kept, state reset
            assert entry.state == "running" and entry.window_restarts == 0
            assert not health.degraded()
            assert sup.children() == ["acct"]
