"""``InstanceWatcher``: poll instances on a schedule, turn what it sees into changes, deliver them.

Rule 1: per instance, at most one poll is in flight and its outcome is applied as soon as it
        completes, so the changes of one instance are emitted in order and ``seq`` grows by one.
Rule 2: a failed poll changes nothing that is known: the last status stands, the error goes to
        ``on_error`` and only that instance backs off.
Rule 3: polling never waits for delivery (see ``_delivery``): a slow consumer delays and loses
        only its own changes.
Rule 4: every task the watcher starts is cancelled or finished, and awaited, before ``run()``
        returns or the last ``wait_for`` ends; nothing keeps running behind the caller's back.
Rule 5: scheduling and draining read time only through the injected ``clock`` and ``sleep``;
        ``observed_at`` comes from the injected ``now``.
Rule 6: the platform is reached only through the client's ``get_instance``; no aiohttp here.
Rule 7: the run state is one ``Phase`` of ``_lifecycle``, moved only along its table.

This module is the facade: options, what to watch, consumers, run and stop, and the wiring of
``_tracker`` (outcomes, checkpoint saves), ``_rotation`` (the loop), ``_schedule`` (decisions),
``_delivery``, ``_waits`` and ``_checkpoint``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Final, TypeVar, overload

from aiocontainer._checkpoint import CheckpointFile
from aiocontainer._delivery import (
    ChangeCallback,
    ChangeFilter,
    ChangeStream,
    Delivery,
    ErrorCallback,
    Statuses,
)
from aiocontainer._health import HealthMonitor
from aiocontainer._health_view import HealthView
from aiocontainer._lifecycle import Lifecycle, Phase
from aiocontainer._options import require
from aiocontainer._protocol import validate_instance_id
from aiocontainer._schedule import COALESCE as _COALESCE
from aiocontainer._schedule import SchedulePolicy
from aiocontainer._sweeper import attach_sweeper
from aiocontainer._telemetry import watcher_metrics
from aiocontainer._tokens import unchained
from aiocontainer._tracker import PollingClient, Tracker
from aiocontainer._waits import Waiter, WaitRegistry, WaitResult, wait_each, wait_statuses
from aiocontainer.errors import AiocontainerError
from aiocontainer.models import InstanceDetail

__all__ = [
    "ChangeCallback",
    "ChangeStream",
    "ErrorCallback",
    "InstanceWatcher",
    "PollingClient",
    "WaitResult",
]

_C = TypeVar("_C", bound=ChangeCallback)
_E = TypeVar("_E", bound=ErrorCallback)

_DEFAULT_QUEUE_SIZE: Final = 10_000
_ = _COALESCE  # re-exported: how close slots start together, for the benchmark


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _key(instance_id: str) -> str:
    """How the watcher keys an id: checked, then in lower case (platform ids are lower-case hex,
    so ``4C1F...`` and ``4c1f...`` are one instance)."""
    return validate_instance_id(instance_id).lower()


class InstanceWatcher(HealthView):
    """Poll instances through a client and report each status change once, in order.

    ``async with watcher:`` watches in the background while a block runs, ``await
    watcher.run()`` in the foreground until ``stop()``; a stopped watcher can start again.

    Each id is polled once per ``interval`` (polls spread over it, ``jitter`` of a slot, at
    most ``concurrency`` at a time); terminal ids only every ``terminal_interval``; failing ones
    back off up to ``max_backoff`` intervals; ``gone_after`` answers of code 10004 in a row drop
    an id (``InstanceGoneError``). A first observation is a change with ``previous=None`` and
    ``seq=1``, or is recorded silently with ``emit_initial=False``.

    Each callback has its own queue of ``queue_size`` changes (a full one drops its oldest and
    reports ``ChangesDroppedError``); errors go to ``on_error`` callbacks, else are logged. Stopping
    cancels sleeps and polls at once and gives callbacks ``drain_timeout`` seconds (in full after
    ``stop_when_all_terminal`` ends a run, until a ``stop()``); what is left stays queued for the
    next start. ``checkpoint=path`` saves status and ``seq`` per id atomically, so a new watcher
    reports only what changed meanwhile. ``sweep`` chooses list passes (``"list"``), detail polls
    (``"detail"``) or the cheaper each interval (``"auto"``); ``watch_all=True`` watches every
    listed instance (all terminal only after a whole pass). ``clock``, ``sleep``, ``rand`` and
    ``now`` can be injected; ``stale_after``: see ``HealthView``. The README has the details.
    """

    def __init__(
        self,
        client: PollingClient,
        ids: Iterable[str] = (),
        *,
        interval: float = 5.0,
        emit_initial: bool = True,
        stop_when_all_terminal: bool = False,
        checkpoint: str | os.PathLike[str] | None = None,
        terminal_interval: float | None = None,
        gone_after: int = 3,
        max_backoff: int = 8,
        queue_size: int = _DEFAULT_QUEUE_SIZE,
        concurrency: int | None = None,
        jitter: float = 0.1,
        drain_timeout: float = 1.0,
        stale_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        now: Callable[[], datetime] = _utcnow,
        sweep: str = "auto",
        watch_all: bool = False,
    ) -> None:
        if isinstance(ids, str):
            raise TypeError("ids must be a collection of instance ids, not one string")
        policy = SchedulePolicy(
            interval=float(interval),
            terminal_interval=terminal_interval,
            gone_after=gone_after,
            max_backoff=max_backoff,
            jitter=jitter,
        )
        require(queue_size >= 1, "queue_size must be at least 1")
        require(drain_timeout >= 0, "drain_timeout must not be negative")
        limit = getattr(client, "concurrency", 32) if concurrency is None else concurrency
        require(isinstance(limit, int) and limit >= 1, "concurrency must be at least 1")
        wanted = [_key(i) for i in ids]

        self._policy = policy
        self._stop_when_all_terminal = stop_when_all_terminal
        self._drain_timeout = drain_timeout
        self._clock = clock
        self._sleep = sleep
        self._life = Lifecycle()
        #: Set by ``stop()`` and by a natural end, to wake the run (or cut its final drain short).
        self._nudge = asyncio.Event()
        self._background: asyncio.Task[None] | None = None
        self._delivery = Delivery(queue_size=queue_size)
        self._health = HealthMonitor(
            stale_after=stale_after,
            interval=policy.interval,
            clock=clock,
            report=self._delivery.report,
            entries=lambda: self._tracker.entries.values(),
            queue_depths=self._delivery.queue_depths,
            sink=watcher_metrics(),
        )
        self._delivery.counters = self._health.counters
        self._waits = WaitRegistry()
        self._tracker = Tracker(
            client,
            policy,
            concurrency=limit,
            emit_initial=emit_initial,
            clock=clock,
            sleep=sleep,
            rand=rand,
            now=now,
            life=self._life,
            delivery=self._delivery,
            waits=self._waits,
            checkpoint=None if checkpoint is None else CheckpointFile(checkpoint),
            on_settled=self._check_finished,
            health=self._health,
        )
        attach_sweeper(self._tracker, client, sweep=sweep, watch_all=watch_all)
        self._tracker.add(wanted)

    def __repr__(self) -> str:
        state = f"interval={self.interval:g}s {'running' if self.running else 'stopped'}"
        return f"<InstanceWatcher ids={len(self._tracker.entries)} {state}>"

    @property
    def running(self) -> bool:
        """True between the start of ``run()`` (or ``async with``) and its end."""
        return self._life.phase is Phase.RUNNING

    @property
    def interval(self) -> float:
        """Seconds between two polls of one id."""
        return self._policy.interval

    @property
    def ids(self) -> tuple[str, ...]:
        """The watched ids, in the order they were added."""
        return tuple(self._tracker.entries)

    def snapshot(self) -> Mapping[str, InstanceDetail]:
        """The last detail seen of each watched id that has been polled successfully."""
        return self._tracker.snapshot()

    def add(self, *ids: str) -> None:
        """Watch more ids; all are checked first: a bad one raises ``InvalidInstanceIdError``."""
        self._tracker.add([_key(i) for i in ids])

    def remove(self, *ids: str) -> None:
        """Stop watching ids and forget them (``watch_all``: until re-added); ignores unknown."""
        for instance_id in [_key(i) for i in ids]:
            self._tracker.remove(instance_id)
        self._check_finished()

    @overload
    def on_change(
        self,
        callback: None = None,
        /,
        *,
        to: Statuses | None = None,
        from_: Statuses | None = None,
        queue_size: int | None = None,
    ) -> Callable[[_C], _C]: ...

    @overload
    def on_change(
        self,
        callback: _C,
        /,
        *,
        to: Statuses | None = None,
        from_: Statuses | None = None,
        queue_size: int | None = None,
    ) -> _C: ...

    def on_change(
        self,
        callback: _C | None = None,
        /,
        *,
        to: Statuses | None = None,
        from_: Statuses | None = None,
        queue_size: int | None = None,
    ) -> _C | Callable[[_C], _C]:
        """Call ``callback(change)`` for each change into ``to`` and out of ``from_``.

        Usable as ``on_change(cb)``, ``@on_change`` and ``@on_change(to="Running")``. ``from_``
        never matches a first observation (its ``previous`` is None).
        """
        wants = ChangeFilter.from_options(to, from_)
        limit = self._delivery.limit(queue_size)

        def register(cb: _C) -> _C:
            if not callable(cb):
                raise TypeError("on_change needs a callable")
            self._delivery.subscribe(cb, wants, limit=limit)
            return cb

        return register if callback is None else register(callback)

    def on_error(self, callback: _E, /) -> _E:
        """Call ``callback(instance_id or None, exception)`` for failed polls and callbacks."""
        if not callable(callback):
            raise TypeError("on_error needs a callable")
        self._delivery.on_error(callback)
        return callback

    def changes(
        self,
        *,
        to: Statuses | None = None,
        from_: Statuses | None = None,
        queue_size: int | None = None,
    ) -> ChangeStream:
        """An async iterator over the changes emitted from now on (filtered like ``on_change``)."""
        limit = self._delivery.limit(queue_size)
        return self._delivery.stream(ChangeFilter.from_options(to, from_), limit=limit)

    async def __aenter__(self) -> InstanceWatcher:
        self._begin()
        self._background = asyncio.get_running_loop().create_task(
            self._watch(), name="aiocontainer-watcher"
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        task, self._background = self._background, None
        if task is not None:
            await task

    async def run(self) -> None:
        """Poll in the foreground until ``stop()``, or until every id is terminal if asked to."""
        self._begin()
        await self._watch()

    def stop(self) -> None:
        """Ask a running watcher to stop; ``run()`` then returns promptly. A no-op when stopped."""
        if self._life.phase in (Phase.RUNNING, Phase.FINISHING):
            self._life.move(Phase.DRAINING)
            self._nudge.set()

    def _begin(self) -> None:
        if self._life.phase is Phase.RUNNING:
            raise RuntimeError("this watcher is already running")
        self._tracker.claim()
        self._life.move(Phase.RUNNING)
        self._nudge = asyncio.Event()
        self._health.restart()

    async def _watch(self) -> None:
        nudge = self._nudge
        try:
            self._delivery.start()  # what was queued while stopped goes out now
            self._tracker.start(sweep=True)
            self._check_finished()
            await nudge.wait()
        finally:
            if self._life.phase is Phase.RUNNING:
                self._life.move(Phase.DRAINING)  # cancelled from outside
            nudge.clear()
            await self._drain(nudge if self._life.phase is Phase.FINISHING else None)
            self._delivery.end_streams()

    async def _drain(self, cut: asyncio.Event | None) -> None:
        """Stop polling, give callbacks ``drain_timeout``, then serve waits or stop for good."""
        try:
            await self._tracker.halt()
            await self._delivery.settle(
                clock=self._clock, sleep=self._sleep, drain_timeout=self._drain_timeout, cut=cut
            )
        finally:
            if self._life.settling:
                self._life.move(Phase.SERVING if self._waits else Phase.STOPPED)
            if self._life.phase is Phase.STOPPED:
                self._delivery.active = False
                self._tracker.release()
            else:  # waits are pending, or a run began meanwhile
                self._delivery.start()
                self._tracker.start(sweep=self._life.phase is Phase.RUNNING)

    def _check_finished(self) -> None:
        running = self._life.phase is Phase.RUNNING
        if running and self._stop_when_all_terminal and self._tracker.settled:
            self._life.move(Phase.FINISHING)
            self._nudge.set()

    async def wait_for(
        self,
        instance_id: str,
        status: Statuses,
        *,
        timeout: float | None = None,
        fail_on: Statuses | None = None,
    ) -> InstanceDetail:
        """Return the detail once ``instance_id`` shows one of ``status``.

        Returns at once when the last detail seen has a wanted status; otherwise the id is added
        to the watch (it stays) and polled at once, then once per interval, even when terminal.
        Raises ``WaitFailedError`` on a ``fail_on`` status (default: the terminal statuses not
        wanted; ``fail_on=()`` never fails), ``WaitTimeoutError`` after ``timeout`` seconds and
        ``InstanceGoneError`` if the platform forgets the id; wait errors carry ``last_detail``
        and ``history``. Without a run only the waited ids are polled, and when the last wait
        ends callbacks get ``drain_timeout`` seconds to finish, as at a stop.
        """
        targets, failing = wait_statuses(status, fail_on)
        require(timeout is None or timeout >= 0, "timeout must not be negative")
        result = await self._wait(
            validate_instance_id(instance_id), targets, failing, timeout=timeout, now=True
        )
        if isinstance(result, AiocontainerError):
            with unchained:
                raise result
        return result

    async def wait_all(
        self,
        ids: Iterable[str],
        status: Statuses,
        *,
        timeout: float | None = None,
        fail_on: Statuses | None = None,
    ) -> dict[str, WaitResult]:
        """Wait for many ids at once; return ``{id: detail or error}`` in first-seen order.

        One id failing, timing out or being invalid never ends the others' waits.
        """
        targets, failing = wait_statuses(status, fail_on)
        require(timeout is None or timeout >= 0, "timeout must not be negative")
        return await wait_each(
            ids, lambda i: self._wait(i, targets, failing, timeout=timeout, now=False)
        )

    async def _wait(
        self,
        instance_id: str,
        targets: frozenset[str],
        failing: frozenset[str],
        *,
        timeout: float | None,
        now: bool,
    ) -> WaitResult:
        instance_id = instance_id.lower()
        self._tracker.add([instance_id])
        entry = self._tracker.entries[instance_id]
        waiter = Waiter(instance_id, targets=targets, fail_on=failing, known=entry.state)
        if waiter.last_detail is not None and waiter.last_detail.status in targets:
            return waiter.last_detail
        self._waits.add(waiter)
        if self._life.phase is Phase.STOPPED:
            self._tracker.claim()
            self._life.move(Phase.SERVING)
            self._delivery.start()
        try:
            self._tracker.rotation.poll_soon(entry, now=now)
            return await waiter.result(timeout=timeout, sleep=self._sleep)
        finally:
            self._waits.discard(waiter)
            if not self._waits:
                await self._last_wait_ended()

    async def _last_wait_ended(self) -> None:
        """Without a run, polling stops and callbacks get ``drain_timeout`` to finish."""
        if self._life.phase is Phase.SERVING:
            self._life.move(Phase.DRAINING)
            await self._drain(None)
        elif self._life.settling:
            await self._tracker.halt()  # the drain under way does the rest
