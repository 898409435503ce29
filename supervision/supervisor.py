"""Supervision: restart a child on crash with backoff, give up past an intensity limit.

A child is a `ChildSpec` whose `start(task_status=...)` runs until cancelled and calls
`task_status.started()` once ready (triotp's child spec, trio's `nursery.start` contract).
`supervise` runs one child forever; the root tree is a nursery of `supervise` calls and the
accounts subtree is a `DynamicSupervisor`. A child that gives up is marked `failed` in the health
registry and `supervise` returns, so it never takes its siblings (or the web front) down.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

import attrs
import trio

from actors.backoff import backoff_delay
from actors.health import HealthEntry, HealthRegistry

log = logging.getLogger(__name__)

Restart = Literal["permanent", "transient", "temporary"]

_ge0 = attrs.validators.ge(0)


@attrs.frozen
class RestartPolicy:
    """Backoff and intensity; defaults follow stamina (0.1 s initial, base 2, 1 s jitter)."""

    initial_delay: float = attrs.field(default=0.1, validator=_ge0)
    max_delay: float = attrs.field(default=10.0, validator=_ge0)
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    jitter: float = attrs.field(default=1.0, validator=_ge0)  # max seconds, uniform 0..jitter
    max_restarts: int = attrs.field(default=5, validator=_ge0)
    period: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before restart number `attempt` (0-based) since the last healthy run."""
        jitter = rng.uniform(0, self.jitter) if self.jitter else 0.0
        return backoff_delay(attempt, self.initial_delay, self.max_delay, self.multiplier) + jitter


@attrs.frozen
class ChildSpec:
    """What to run and when to restart it (triotp's `child_spec`, typed)."""

    name: str
    start: Callable[..., Awaitable[None]]  # called as start(task_status=...)
    restart: Restart = attrs.field(
        default="permanent",
        validator=attrs.validators.in_(("permanent", "transient", "temporary")),
    )
    policy: RestartPolicy = attrs.field(factory=RestartPolicy)
    kind: str = "service"


class ChildFailed(Exception):
    """A child exceeded its restart intensity (raised only by `supervise(..., escalate=True)`)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"child {name!r} failed: {reason}")
        self.name = name


async def _run_once(
    spec: ChildSpec, entry: HealthEntry, on_ready: Callable[[], None]
) -> tuple[Exception | None, float | None]:
    """Run the child once: its crash (if any) and when it became ready (if it did).

    Only `Exception` is a crash. A nursery wraps the child's error in an exception group; a group
    whose leaves are all `Exception`s is an `ExceptionGroup` (itself an `Exception`), while one that
    holds `Cancelled` or `KeyboardInterrupt` is a `BaseExceptionGroup` and propagates untouched,
    which is hypercorn's split without the bookkeeping.
    """
    ready_at: float | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(spec.start)
            ready_at = trio.current_time()
            entry.set_state("running")
            on_ready()
    except Exception as exc:
        return exc, ready_at
    return None, ready_at


def _wants_restart(restart: Restart, error: Exception | None) -> bool:
    if restart == "permanent":
        return True
    return restart == "transient" and error is not None


async def supervise(
    spec: ChildSpec,
    health: HealthRegistry,
    *,
    escalate: bool = False,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `spec` until cancelled, restarting it per its policy.

    Signals `task_status` once, the first time the child is ready (restarts don't re-signal). If
    the child gives up before ever being ready, readiness is signalled anyway so the caller's
    `nursery.start` returns; the health entry says `failed`. With `escalate=True`, giving up raises
    `ChildFailed` chained to the last error instead of returning.
    """
    policy = spec.policy
    rng = rng if rng is not None else random.Random()
    entry = health.register(spec.name, spec.kind)
    entry.window_restarts = 0
    entry.set_state("starting")
    failures: deque[float] = deque()  # trio times of recent failures: the intensity window
    attempt = 0  # failures since the last run that stayed healthy for a whole period
    signalled = False

    def on_ready() -> None:
        nonlocal signalled
        if not signalled:
            signalled = True
            task_status.started()

    try:
        while True:
            error, ready_at = await _run_once(spec, entry, on_ready)
            now = trio.current_time()
            if error is not None:
                entry.record_error(error)
                log.warning("child %s crashed", spec.name, exc_info=error)
            if not _wants_restart(spec.restart, error):
                if error is None:
                    entry.set_state("stopped")
                    return
                reason = f"{spec.restart} child crashed"
                entry.set_state("failed")
                break
            if ready_at is not None and now - ready_at >= policy.period:
                attempt = 0
            failures.append(now)
            while failures[0] <= now - policy.period:
                failures.popleft()
            entry.window_restarts = len(failures)
            if len(failures) > policy.max_restarts:
                reason = f"more than {policy.max_restarts} restarts in {policy.period:g}s"
                entry.set_state("failed")
                break
            entry.set_state("backoff")
            await trio.sleep(policy.delay(attempt, rng))
            attempt += 1
            entry.restarts += 1
            entry.set_state("starting")
    finally:
        if entry.state not in ("failed", "stopped"):
            entry.set_state("stopped")  # cancelled from above (or a BaseException) is no crash

    log.error("child %s gave up: %s", spec.name, reason)
    if escalate:
        raise ChildFailed(spec.name, reason) from error
    if not signalled:
        task_status.started()


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)


class DynamicSupervisor:
    """Children started and stopped at run time (the accounts subtree), each under `supervise`.

    Children are isolated: `supervise` never raises here, so one child's crash loop leaves the
    others running. A name stays taken (and listed) after its child fails or stops, so that
    `restart_child` can revive it, until `stop_child` releases it.
    """

    def __init__(
        self, nursery: trio.Nursery, health: HealthRegistry, rng: random.Random | None
    ) -> None:
        self._nursery = nursery
        self._health = health
        self._rng = rng
        self._children: dict[str, _Child] = {}

    def children(self) -> list[str]:
        return list(self._children)

    async def start_child(self, spec: ChildSpec) -> None:
        """Start `spec` and wait until it is ready (or has given up: see `supervise`)."""
        if spec.name in self._children:
            raise ValueError(f"child {spec.name!r} already exists")
        child = self._children[spec.name] = _Child(spec)
        try:
            await self._nursery.start(self._run_child, child)
        except BaseException:
            if self._children.get(spec.name) is child:
                del self._children[spec.name]
            raise

    async def stop_child(self, name: str) -> None:
        """Cancel one child, wait until it is gone, and forget it (health entry included)."""
        child = await self._cancel(name)
        if self._children.get(name) is child:
            del self._children[name]
            self._health.unregister(name)

    async def restart_child(self, name: str) -> None:
        """Cancel one child (running or failed) and start it afresh with a new restart window;
        order conflicts it had no longer stand."""
        child = await self._cancel(name)
        if self._children.get(name) is child:
            del self._children[name]
        await self.start_child(child.spec)
        entry = self._health.get(name)
        if entry is not None:
            entry.restarts += 1  # a manual restart counts like a supervised one
            entry.clear_conflicts()  # it reloaded its book and reconciled with the broker

    async def _cancel(self, name: str) -> _Child:
        child = self._children[name]
        child.scope.cancel()
        await child.done.wait()
        return child

    async def _run_child(
        self, child: _Child, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with child.scope:
                await supervise(child.spec, self._health, rng=self._rng, task_status=task_status)
        finally:
            child.done.set()


@asynccontextmanager
async def open_dynamic_supervisor(
    health: HealthRegistry, *, rng: random.Random | None = None
) -> AsyncIterator[DynamicSupervisor]:
    """A `DynamicSupervisor` owning its nursery; leaving the block stops every child."""
    async with trio.open_nursery() as nursery:
        try:
            yield DynamicSupervisor(nursery, health, rng)
        finally:
            nursery.cancel_scope.cancel()
