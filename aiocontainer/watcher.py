"""``InstanceWatcher``: poll instances on a schedule, turn what it sees into changes, deliver them.

Rule 1: per instance, at most one poll is in flight and its outcome is applied as soon as it
        completes, so the changes of one instance are emitted in order and ``seq`` grows by one.
Rule 2: a failed poll changes nothing that is known: the last status stands, the error goes to
        ``on_error`` and only that instance backs off.
Rule 3: polling never waits for delivery. Each callback and each ``changes()`` iterator has its own
        bounded queue; when one is full, its oldest pending change is dropped and reported as
        ``ChangesDroppedError``, so a slow consumer delays and loses only its own changes.
Rule 4: every task the watcher starts is cancelled or finished, and awaited, before ``run()``
        returns or the last ``wait_for`` ends; nothing keeps running behind the caller's back.
Rule 5: scheduling reads time only through the injected ``clock`` and ``sleep``; ``observed_at``
        comes from the injected ``now``.
Rule 6: the platform is reached only through the client's ``get_instance``; no aiohttp here.

Scheduling: the watched ids form a rotation visited one slot at a time, each slot lasting
``interval / len(ids)`` seconds (plus up to ``jitter`` of a slot), so every id is visited once per
interval and N polls are spread evenly over it. A visit polls the id unless it is resting: after a
failure (``min(2**(failures - 1), max_backoff)`` intervals between polls), after a terminal
status (never again with ``terminal_interval=None``, else every ``terminal_interval`` seconds,
rounded to whole intervals) or while a poll of it is still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import tempfile
import time
import types
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar, overload

from aiocontainer._diff import Snapshot, advance
from aiocontainer._protocol import require, validate_instance_id
from aiocontainer.errors import (
    AiocontainerError,
    ChangesDroppedError,
    InstanceGoneError,
    InvalidInstanceIdError,
    InvalidParameterError,
    WaitFailedError,
    WaitTimeoutError,
)
from aiocontainer.models import InstanceDetail, InstanceStatus, StatusChange

__all__ = [
    "ChangeCallback",
    "ChangeStream",
    "ErrorCallback",
    "InstanceWatcher",
    "PollingClient",
    "WaitResult",
]

_log = logging.getLogger("aiocontainer")

#: Slots closer together than this (seconds) start in one scheduler tick instead of one each.
_COALESCE: Final = 0.005

#: Called with each matching change; may be a plain function or a coroutine function.
ChangeCallback: TypeAlias = Callable[[StatusChange], object]
#: Called with ``(instance_id or None, exception)``; a plain function or a coroutine function.
ErrorCallback: TypeAlias = Callable[[str | None, Exception], object]
#: What ``wait_all`` gives per id: the detail once reached, or the error the wait ended with.
WaitResult: TypeAlias = InstanceDetail | AiocontainerError
#: One status or a collection of them.
Statuses: TypeAlias = str | Iterable[str]

_C = TypeVar("_C", bound=ChangeCallback)
_E = TypeVar("_E", bound=ErrorCallback)
_T = TypeVar("_T")

CHECKPOINT_FORMAT: Final = "aiocontainer.watcher.checkpoint"
CHECKPOINT_VERSION: Final = 1
_DEFAULT_QUEUE_SIZE: Final = 10_000


class PollingClient(Protocol):
    """What the watcher needs of a client: ``ContainerClient`` fits, and so does a test fake."""

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        """Return the current detail of one instance."""
        ...


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _status_set(
    value: Statuses | None, *, name: str, allow_empty: bool = False
) -> frozenset[str] | None:
    """None for "any status"; a string is one status, any other iterable a collection of them."""
    if value is None:
        return None
    items = (value,) if isinstance(value, str) else tuple(value)
    if not items and not allow_empty:
        raise ValueError(f"{name} must name at least one status")
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold status strings, got {type(item).__name__}")
    return frozenset(items)


def _wait_statuses(
    status: Statuses, fail_on: Statuses | None
) -> tuple[frozenset[str], frozenset[str]]:
    """The wanted statuses and the failing ones; a wanted status never fails a wait."""
    targets = _status_set(status, name="status")
    assert targets is not None
    if fail_on is None:
        return targets, InstanceStatus.TERMINAL - targets
    failing = _status_set(fail_on, name="fail_on", allow_empty=True)
    assert failing is not None
    return targets, failing - targets


def _describe(callback: object) -> str:
    name = getattr(callback, "__qualname__", None) or type(callback).__qualname__
    return f"callback {name}"


async def _call(callback: Callable[..., object], *args: object) -> None:
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


class _Outbox(Generic[_T]):
    """A bounded queue with its own delivery task, started when there is something to deliver."""

    def __init__(
        self,
        deliver: Callable[[_T], Awaitable[None]],
        *,
        limit: int,
        on_overflow: Callable[[_T], None],
        name: str,
    ) -> None:
        self._deliver = deliver
        self._limit = limit
        self._on_overflow = on_overflow
        self._name = name
        self._items: deque[_T] = deque()
        self.task: asyncio.Task[None] | None = None

    def put(self, item: _T, *, start: bool) -> None:
        if len(self._items) >= self._limit:
            self._on_overflow(self._items.popleft())
        self._items.append(item)
        if start:
            self.start()

    def start(self) -> None:
        if (self.task is None or self.task.done()) and self._items:
            self.task = asyncio.get_running_loop().create_task(self._drain(), name=self._name)

    async def _drain(self) -> None:
        try:
            while self._items:
                await self._deliver(self._items.popleft())
        finally:
            self.task = None

    async def halt(self) -> None:
        """Cancel delivery; what is still queued stays queued for the next start."""
        task = self.task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if self.task is task:
                self.task = None  # a task cancelled before its first step never ran its finally


class _Subscription:
    """One ``on_change`` callback with its filter and its own queue."""

    def __init__(
        self,
        watcher: InstanceWatcher,
        callback: ChangeCallback,
        *,
        to: frozenset[str] | None,
        from_: frozenset[str] | None,
        limit: int,
    ) -> None:
        self.callback = callback
        self.to = to
        self.from_ = from_
        self.consumer = _describe(callback)
        self.outbox: _Outbox[StatusChange] = _Outbox(
            self._deliver,
            limit=limit,
            on_overflow=lambda change: watcher._report(
                change.instance_id,
                ChangesDroppedError(change, consumer=self.consumer, limit=limit),
            ),
            name=f"aiocontainer-{self.consumer}",
        )
        self._watcher = watcher

    def matches(self, change: StatusChange) -> bool:
        return (self.to is None or change.current in self.to) and (
            self.from_ is None or change.previous in self.from_
        )

    async def _deliver(self, change: StatusChange) -> None:
        try:
            await _call(self.callback, change)
        except Exception as exc:
            self._watcher._report(change.instance_id, exc, unexpected=True)


class ChangeStream:
    """The changes a watcher emits from the moment ``changes()`` was called, as an async iterator.

    It ends when the watcher stops (after the changes already queued are read), when ``aclose()``
    is called, or when nothing refers to it any more. Its queue is bounded like a callback's.
    """

    def __init__(
        self,
        watcher: InstanceWatcher,
        *,
        to: frozenset[str] | None,
        from_: frozenset[str] | None,
        limit: int,
    ) -> None:
        self._watcher = watcher
        self._to = to
        self._from = from_
        self._limit = limit
        self._items: deque[StatusChange] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._ended = False

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open"
        return f"<ChangeStream pending={len(self._items)} {state}>"

    def _put(self, change: StatusChange) -> None:
        if (self._to is not None and change.current not in self._to) or (
            self._from is not None and change.previous not in self._from
        ):
            return
        if len(self._items) >= self._limit:
            dropped = self._items.popleft()
            self._watcher._report(
                dropped.instance_id,
                ChangesDroppedError(dropped, consumer="changes() iterator", limit=self._limit),
            )
        self._items.append(change)
        self._wake()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> StatusChange:
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        return self._items.popleft()

    async def aclose(self) -> None:
        """Stop receiving changes and end the iteration; pending changes are discarded."""
        self._items.clear()
        self._watcher._streams.discard(self)
        self._end()

    async def __aenter__(self) -> ChangeStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _Waiter:
    """One pending ``wait_for``: what it waits for, what it has seen, and how it ended."""

    def __init__(
        self,
        instance_id: str,
        *,
        targets: frozenset[str],
        fail_on: frozenset[str],
        known: Snapshot | None,
    ) -> None:
        self.instance_id = instance_id
        self.targets = targets
        self.fail_on = fail_on
        self.last_detail: InstanceDetail | None = None if known is None else known.detail
        self.history: list[str] = [] if known is None else [known.status]
        self.outcome: asyncio.Future[WaitResult] = asyncio.get_running_loop().create_future()

    def observe(self, detail: InstanceDetail) -> None:
        self.last_detail = detail
        if not self.history or self.history[-1] != detail.status:
            self.history.append(detail.status)
        if detail.status in self.targets:
            self.end(detail)
        elif detail.status in self.fail_on:
            self.end(self.error(WaitFailedError, f"reached {detail.status}"))

    def error(self, kind: type[WaitFailedError | WaitTimeoutError], why: str) -> WaitResult:
        wanted = " or ".join(sorted(self.targets))
        return kind(
            f"instance {self.instance_id} {why} while waiting for {wanted}",
            instance_id=self.instance_id,
            last_detail=self.last_detail,
            history=self.history,
        )

    def end(self, result: WaitResult) -> None:
        if not self.outcome.done():
            self.outcome.set_result(result)


class _Entry:
    """What the watcher keeps for one watched id."""

    __slots__ = ("dormant", "failures", "instance_id", "invalid", "poll", "rest", "state")

    def __init__(self, instance_id: str, state: Snapshot | None) -> None:
        self.instance_id = instance_id
        self.state = state
        #: The poll in flight, if any; there is never a second one.
        self.poll: asyncio.Task[None] | None = None
        self.failures = 0
        #: Consecutive answers with code 10004.
        self.invalid = 0
        #: Visits to let pass before the next poll.
        self.rest = 0
        #: Terminal and not to be polled again (unless someone waits on it).
        self.dormant = False


class InstanceWatcher:
    """Poll instances through a client and report each status change once, in order.

    Use ``async with watcher:`` to watch in the background while a block runs, or
    ``await watcher.run()`` to watch in the foreground until ``stop()``. A stopped watcher can be
    started again and keeps what it knew.

    Options: each id is polled once per ``interval`` seconds, the N polls spread over it with up
    to ``jitter`` (a fraction of one slot) of random delay, at most ``concurrency`` (default: the
    client's ``concurrency``) in flight. A terminal id is not polled again unless
    ``terminal_interval`` gives the seconds between its polls. An id whose polls fail waits 2, 4,
    up to ``max_backoff`` intervals between polls; one that answers code 10004 ``gone_after``
    times in a row is dropped and reported as ``InstanceGoneError``.

    What it emits: the first observation of an id is a change with ``previous=None`` and
    ``seq=1``. With ``emit_initial=False`` it is recorded silently at ``seq`` 0, so the first
    change emitted for that id is still ``seq=1``. A failed poll emits nothing.

    Delivery: callbacks run in the event loop, each from its own queue of at most ``queue_size``
    changes; a plain function must return quickly, a coroutine function may take its time. When
    a queue is full its oldest change is dropped and ``ChangesDroppedError`` goes to ``on_error``.
    Errors from polls and from callbacks go to ``on_error`` callbacks (logged at WARNING on the
    ``aiocontainer`` logger when there are none). A client that raises something other than an
    ``AiocontainerError`` is treated as a failed poll: the exception is logged with its traceback
    at ERROR and handed to ``on_error`` unchanged.

    Stopping cancels sleeps and polls in flight at once, then gives callbacks up to
    ``drain_timeout`` seconds for what is already queued; changes not delivered by then stay
    queued for the next start. When ``stop_when_all_terminal`` ends the run, delivery is waited
    for in full (a later ``stop()`` cuts that short too).

    Checkpoint: with ``checkpoint=path``, a JSON file ``{"format":
    "aiocontainer.watcher.checkpoint", "version": 1, "instances": {id: {"status": ..., "seq":
    ...}}}`` is replaced atomically at most once per interval and at every stop. A new watcher on
    the same path starts from it: each id's first poll emits only a real change, with the
    checkpointed status as ``previous`` and the next ``seq``. Checkpointed ids missing from
    ``ids`` are not polled, but stay in the file and are used if they are added later. A missing
    or corrupt file is logged at WARNING and the watcher starts fresh.

    ``clock``, ``sleep``, ``rand`` (for jitter) and ``now`` (for ``observed_at``) can be replaced,
    which makes every schedule exact in tests.
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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if isinstance(ids, str):
            raise TypeError("ids must be a collection of instance ids, not one string")
        require(interval > 0, "interval must be positive")
        require(
            terminal_interval is None or terminal_interval > 0, "terminal_interval must be positive"
        )
        require(gone_after >= 1, "gone_after must be at least 1")
        require(max_backoff >= 1, "max_backoff must be at least 1")
        require(queue_size >= 1, "queue_size must be at least 1")
        require(0 <= jitter <= 1, "jitter must be between 0 and 1")
        require(drain_timeout >= 0, "drain_timeout must not be negative")
        limit = getattr(client, "concurrency", 32) if concurrency is None else concurrency
        require(isinstance(limit, int) and limit >= 1, "concurrency must be at least 1")
        wanted = [validate_instance_id(i) for i in ids]

        self._client = client
        self._interval = float(interval)
        self._emit_initial = emit_initial
        self._stop_when_all_terminal = stop_when_all_terminal
        self._checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self._terminal_interval = terminal_interval
        self._gone_after = gone_after
        self._max_backoff = max_backoff
        self._queue_size = queue_size
        self._jitter = jitter
        self._drain_timeout = drain_timeout
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._now = now
        self._slots = asyncio.Semaphore(limit)

        self._entries: dict[str, _Entry] = {}
        self._rotation: deque[str] = deque()
        # Ids not yet seen terminal; when it empties, every watched id is terminal.
        self._unsettled: set[str] = set()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._waits = 0
        # Checkpointed ids that are not watched: kept in the file, used if they are added later.
        self._carried: dict[str, Snapshot] = {}
        self._dirty = False
        self._saved_at: float | None = None

        self._subscriptions: list[_Subscription] = []
        self._error_boxes: list[_Outbox[tuple[str | None, Exception]]] = []
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()

        self._running = False
        self._delivering = False
        self._finished = False
        self._wake: asyncio.Event | None = None
        self._cut: asyncio.Event | None = None
        self._background: asyncio.Task[None] | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._polls: set[asyncio.Task[None]] = set()
        self._added = asyncio.Event()

        if self._checkpoint is not None:
            self._carried = _load_checkpoint(self._checkpoint)
        self._add(wanted)

    # -- state ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<InstanceWatcher ids={len(self._entries)} interval={self._interval:g}s {state}>"

    @property
    def running(self) -> bool:
        """True between the start of ``run()`` (or ``async with``) and its end."""
        return self._running

    @property
    def interval(self) -> float:
        """Seconds between two polls of one id."""
        return self._interval

    @property
    def ids(self) -> tuple[str, ...]:
        """The watched ids, in the order they were added."""
        return tuple(self._entries)

    def snapshot(self) -> Mapping[str, InstanceDetail]:
        """The last detail seen of each watched id that has been polled successfully."""
        return types.MappingProxyType(
            {
                instance_id: entry.state.detail
                for instance_id, entry in self._entries.items()
                if entry.state is not None and entry.state.detail is not None
            }
        )

    # -- what to watch -------------------------------------------------------------------------

    def add(self, *ids: str) -> None:
        """Watch more ids; all are checked first: a bad one raises ``InvalidInstanceIdError``."""
        self._add([validate_instance_id(i) for i in ids])

    def remove(self, *ids: str) -> None:
        """Stop watching ids and forget what was known of them; unknown ids are ignored."""
        for instance_id in [validate_instance_id(i) for i in ids]:
            if self._carried.pop(instance_id, None) is not None:
                self._dirty = True
            entry = self._entries.get(instance_id)
            if entry is not None:
                self._forget(entry)
                for waiter in self._waiters.get(instance_id, ()):
                    waiter.end(waiter.error(WaitFailedError, "was removed from the watch"))
        self._check_finished()

    def _add(self, ids: Iterable[str]) -> None:
        fresh = [i for i in dict.fromkeys(ids) if i not in self._entries]
        for instance_id in fresh:
            self._entries[instance_id] = _Entry(instance_id, self._carried.pop(instance_id, None))
            self._unsettled.add(instance_id)
        # New ids go to the front of the rotation so their first poll comes soon.
        self._rotation.extendleft(reversed(fresh))
        if fresh:
            self._added.set()

    def _forget(self, entry: _Entry) -> None:
        del self._entries[entry.instance_id]
        self._rotation.remove(entry.instance_id)
        self._unsettled.discard(entry.instance_id)
        self._dirty = True

    # -- consumers -----------------------------------------------------------------------------

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
        targets = _status_set(to, name="to")
        sources = _status_set(from_, name="from_")
        limit = self._queue_size if queue_size is None else queue_size
        require(limit >= 1, "queue_size must be at least 1")

        def register(cb: _C) -> _C:
            if not callable(cb):
                raise TypeError("on_change needs a callable")
            subscription = _Subscription(self, cb, to=targets, from_=sources, limit=limit)
            self._subscriptions.append(subscription)
            return cb

        return register if callback is None else register(callback)

    def on_error(self, callback: _E, /) -> _E:
        """Call ``callback(instance_id or None, exception)`` for failed polls and callbacks."""
        if not callable(callback):
            raise TypeError("on_error needs a callable")
        consumer = _describe(callback)

        async def deliver(item: tuple[str | None, Exception]) -> None:
            try:
                await _call(callback, *item)
            except Exception:
                _log.exception("%s raised while handling an error", consumer)

        def overflow(item: tuple[str | None, Exception]) -> None:
            _log.warning("%s fell behind; dropped error for %s: %s", consumer, item[0], item[1])

        box = _Outbox(
            deliver, limit=self._queue_size, on_overflow=overflow, name=f"aiocontainer-{consumer}"
        )
        self._error_boxes.append(box)
        return callback

    def changes(
        self,
        *,
        to: Statuses | None = None,
        from_: Statuses | None = None,
        queue_size: int | None = None,
    ) -> ChangeStream:
        """An async iterator over the changes emitted from now on (filtered like ``on_change``)."""
        limit = self._queue_size if queue_size is None else queue_size
        require(limit >= 1, "queue_size must be at least 1")
        stream = ChangeStream(
            self,
            to=_status_set(to, name="to"),
            from_=_status_set(from_, name="from_"),
            limit=limit,
        )
        self._streams.add(stream)
        return stream

    def _publish(self, change: StatusChange) -> None:
        for subscription in self._subscriptions:
            if subscription.matches(change):
                subscription.outbox.put(change, start=self._delivering)
        for stream in list(self._streams):
            stream._put(change)

    def _report(self, instance_id: str | None, exc: Exception, *, unexpected: bool = False) -> None:
        if not self._error_boxes:
            _log.warning("instance %s: %s", instance_id, exc, exc_info=exc if unexpected else None)
            return
        _log.debug("instance %s: %s", instance_id, exc)
        for box in self._error_boxes:
            box.put((instance_id, exc), start=self._delivering)

    def _outboxes(self) -> list[_Outbox[Any]]:
        return [s.outbox for s in self._subscriptions] + list(self._error_boxes)

    # -- running -------------------------------------------------------------------------------

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
        for event in (self._wake, self._cut):
            if event is not None:
                event.set()

    def _begin(self) -> None:
        if self._running:
            raise RuntimeError("this watcher is already running")
        self._running = True
        self._delivering = True
        self._finished = False
        self._wake = asyncio.Event()
        self._cut = None

    async def _watch(self) -> None:
        wake = self._wake
        assert wake is not None
        try:
            self._start_delivery()  # what was queued while stopped goes out now
            self._ensure_scheduler()
            self._check_finished()
            await wake.wait()
        finally:
            self._running = False
            self._wake = None
            await self._halt_scheduler()
            self._cut = asyncio.Event()
            try:
                await self._settle(None if self._finished else self._drain_timeout)
            finally:
                self._cut = None
                for stream in list(self._streams):
                    stream._end()
                self._streams.clear()
                self._after_settle()

    def _after_settle(self) -> None:
        """Go on delivering and polling for pending waits, or a run that began meanwhile."""
        if not (self._running or self._waits):
            self._delivering = False
            return
        self._start_delivery()
        self._ensure_scheduler()

    def _start_delivery(self) -> None:
        self._delivering = True
        for box in self._outboxes():
            box.start()

    def _check_finished(self) -> None:
        if (
            self._running
            and self._stop_when_all_terminal
            and not self._unsettled
            and self._wake is not None
        ):
            self._finished = True
            self._wake.set()

    async def _settle(self, timeout: float | None) -> None:
        """Let queued changes reach their consumers, for at most ``timeout`` seconds.

        Without a timeout, ``stop()`` still cuts the wait down to ``drain_timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        cut = self._cut
        cut_wait = None if cut is None or deadline is not None else loop.create_task(cut.wait())
        try:
            while busy := {b.task for b in self._outboxes() if b.task and not b.task.done()}:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                watch = busy if cut_wait is None else busy | {cut_wait}
                await asyncio.wait(watch, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if cut_wait is not None and cut_wait.done():
                    cut_wait = None
                    deadline = loop.time() + self._drain_timeout
        finally:
            if cut_wait is not None:
                cut_wait.cancel()
                await asyncio.gather(cut_wait, return_exceptions=True)
            for box in self._outboxes():
                await box.halt()

    def _ensure_scheduler(self) -> None:
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop().create_task(
                self._schedule(), name="aiocontainer-watcher-schedule"
            )

    async def _halt_scheduler(self) -> None:
        tasks = [t for t in (self._scheduler, *self._polls) if t is not None]
        self._scheduler = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._dirty:
            self._save_checkpoint()

    # -- scheduling ----------------------------------------------------------------------------

    async def _schedule(self) -> None:
        slot_at = self._clock()
        idle_visits = 0
        while True:
            if not self._rotation:
                self._added.clear()
                await self._added.wait()
                slot_at = self._clock()
                continue
            count = len(self._rotation)
            spacing = self._interval / count
            entry = self._entries[self._rotation[0]]
            self._rotation.rotate(-1)
            idle_visits += 1
            if self._wanted(entry):
                await self._sleep_until(slot_at + self._jitter * spacing * self._rand())
                # Decided at the slot itself: a poll may have ended or the id gone meanwhile.
                if self._entries.get(entry.instance_id) is entry and self._due(entry):
                    self._launch(entry)
                idle_visits = 0
            elif idle_visits >= count:
                # A whole round had nothing to poll: wait out its time instead of spinning.
                await self._sleep_until(slot_at)
                idle_visits = 0
            slot_at += spacing
            now = self._clock()
            if now - slot_at > self._interval:
                slot_at = now  # far behind (a blocked loop): start afresh rather than burst
            self._maybe_save()

    def _wanted(self, entry: _Entry) -> bool:
        """Whether this id is polled at all now; dormant and unwanted ids cost no wake-up."""
        if entry.instance_id in self._waiters:
            return True
        return self._running and not entry.dormant

    def _due(self, entry: _Entry) -> bool:
        """Whether to poll at this visit; a visit while resting counts down the rest."""
        if entry.poll is not None or not self._wanted(entry):
            return False
        if entry.rest > 0:
            entry.rest -= 1
            return False
        return True

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._clock()
        if delay > _COALESCE:
            await self._sleep(delay)
        elif delay <= 0:
            await asyncio.sleep(0)  # let other tasks run even when behind
        # Otherwise the slot is due within _COALESCE: it starts now with the others of this
        # tick. Thousands of ids give slots a fraction of a millisecond apart, and a timer per
        # slot would cost more than the polls gain from exact spacing.

    def _launch(self, entry: _Entry) -> None:
        task = asyncio.get_running_loop().create_task(self._poll(entry))
        entry.poll = task
        self._polls.add(task)

        def done(task: asyncio.Task[None]) -> None:
            # Also reached by a poll cancelled before it started, whose body never ran.
            if entry.poll is task:
                entry.poll = None
            self._polls.discard(task)

        task.add_done_callback(done)

    async def _poll(self, entry: _Entry) -> None:
        try:
            outcome = await self._fetch(entry.instance_id)
        finally:
            # Cleared here, not only when the task is done, so the next slot may poll again.
            if entry.poll is asyncio.current_task():
                entry.poll = None
        if self._entries.get(entry.instance_id) is not entry:
            return  # removed while the poll was in flight
        if isinstance(outcome, InstanceDetail):
            self._observed(entry, outcome)
        else:
            self._failed(entry, outcome)

    async def _fetch(self, instance_id: str) -> InstanceDetail | Exception:
        try:
            async with self._slots:
                return await self._client.get_instance(instance_id)
        except AiocontainerError as exc:
            return exc
        except Exception as exc:
            # A bug in the client, not a failed lookup: keep its traceback, keep watching.
            _log.error(
                "polling instance %s raised %s, which is not an AiocontainerError",
                instance_id,
                type(exc).__name__,
                exc_info=exc,
            )
            return exc

    def _observed(self, entry: _Entry, detail: InstanceDetail) -> None:
        before = entry.state
        entry.state, change = advance(
            before, detail, observed_at=self._now(), emit_initial=self._emit_initial
        )
        entry.failures = entry.invalid = entry.rest = 0
        entry.dormant = False
        if detail.is_terminal:
            self._unsettled.discard(entry.instance_id)
            if self._terminal_interval is None:
                entry.dormant = True
            else:
                entry.rest = max(1, round(self._terminal_interval / self._interval)) - 1
        else:
            self._unsettled.add(entry.instance_id)
        if before is None or (before.status, before.seq) != (entry.state.status, entry.state.seq):
            self._dirty = True
        if change is not None:
            self._publish(change)
        for waiter in self._waiters.get(entry.instance_id, ()):
            waiter.observe(detail)
        self._check_finished()

    def _failed(self, entry: _Entry, exc: Exception) -> None:
        entry.failures += 1
        entry.invalid = entry.invalid + 1 if isinstance(exc, InvalidParameterError) else 0
        if entry.invalid >= self._gone_after:
            gone = InstanceGoneError(entry.instance_id, attempts=entry.invalid)
            gone.__cause__ = exc
            self._forget(entry)
            for waiter in self._waiters.get(entry.instance_id, ()):
                waiter.end(gone)
            self._report(entry.instance_id, gone)
            self._check_finished()
            return
        entry.rest = min(2 ** (entry.failures - 1), self._max_backoff) - 1
        self._report(entry.instance_id, exc)

    # -- waiting -------------------------------------------------------------------------------

    async def wait_for(
        self,
        instance_id: str,
        status: Statuses,
        *,
        timeout: float | None = None,
        fail_on: Statuses | None = None,
    ) -> InstanceDetail:
        """Return the detail once ``instance_id`` shows one of ``status``.

        Returns at once when the last detail seen already has a wanted status; otherwise the id
        is added to the watch (it stays there) and polled at once, then once per interval, even
        when it is terminal. A last known ``fail_on`` status is polled again before it counts.
        Raises ``WaitFailedError`` when a ``fail_on`` status is seen (default: the terminal
        statuses that are not wanted; ``fail_on=()`` never fails), ``WaitTimeoutError`` after
        ``timeout`` seconds, ``InstanceGoneError`` if the platform forgets the id. Both wait
        errors carry ``last_detail`` and ``history``, the statuses seen, oldest first.

        It works whether or not the watcher runs: when it does not, only the ids being waited for
        are polled, on the watcher's interval, and their changes and errors are delivered as
        usual; when the last wait ends, callbacks get up to ``drain_timeout`` seconds to finish,
        as at a stop.
        """
        targets, failing = _wait_statuses(status, fail_on)
        require(timeout is None or timeout >= 0, "timeout must not be negative")
        result = await self._wait(
            validate_instance_id(instance_id), targets, failing, timeout=timeout, now=True
        )
        if isinstance(result, AiocontainerError):
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
        targets, failing = _wait_statuses(status, fail_on)
        require(timeout is None or timeout >= 0, "timeout must not be negative")
        order = list(dict.fromkeys(ids))
        results: dict[str, WaitResult] = {}
        valid: list[str] = []
        for instance_id in order:
            try:
                valid.append(validate_instance_id(instance_id))
            except InvalidInstanceIdError as exc:
                results[instance_id] = exc
        loop = asyncio.get_running_loop()
        waits = [
            loop.create_task(self._wait(i, targets, failing, timeout=timeout, now=False))
            for i in valid
        ]
        try:
            outcomes = await asyncio.gather(*waits)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        results.update(zip(valid, outcomes, strict=True))
        return {instance_id: results[instance_id] for instance_id in order}

    async def _wait(
        self,
        instance_id: str,
        targets: frozenset[str],
        failing: frozenset[str],
        *,
        timeout: float | None,
        now: bool,
    ) -> WaitResult:
        self._add([instance_id])
        entry = self._entries[instance_id]
        waiter = _Waiter(instance_id, targets=targets, fail_on=failing, known=entry.state)
        if waiter.last_detail is not None and waiter.last_detail.status in targets:
            return waiter.last_detail
        self._waiters.setdefault(instance_id, []).append(waiter)
        self._waits += 1
        if not self._delivering:
            self._start_delivery()
        timer = None
        try:
            if timeout is not None:
                timer = asyncio.get_running_loop().create_task(self._expire(waiter, timeout))
            self._poll_soon(entry, now=now)
            return await waiter.outcome
        finally:
            if timer is not None:
                timer.cancel()
                await asyncio.gather(timer, return_exceptions=True)
            self._waits -= 1
            waiting = self._waiters[instance_id]
            waiting.remove(waiter)
            if not waiting:
                del self._waiters[instance_id]
            if not self._waits and not self._running:
                await self._halt_scheduler()
                await self._settle(self._drain_timeout)
                self._after_settle()

    def _poll_soon(self, entry: _Entry, *, now: bool) -> None:
        """Poll a waited id at once (``now``) or at the next slot, whatever its resting state."""
        entry.rest = 0
        if entry.poll is None:
            self._rotation.remove(entry.instance_id)
            if now:
                self._launch(entry)
                # The back of the rotation is about one interval away: the next regular poll.
                self._rotation.append(entry.instance_id)
            else:
                self._rotation.appendleft(entry.instance_id)
        self._ensure_scheduler()

    async def _expire(self, waiter: _Waiter, timeout: float) -> None:
        await self._sleep(timeout)
        waiter.end(waiter.error(WaitTimeoutError, f"did not get there within {timeout:g}s"))

    # -- checkpoint ----------------------------------------------------------------------------

    def _maybe_save(self) -> None:
        if not self._dirty or self._checkpoint is None:
            return
        if self._saved_at is not None and self._clock() - self._saved_at < self._interval:
            return
        self._save_checkpoint()

    def _save_checkpoint(self) -> None:
        path = self._checkpoint
        if path is None:
            return
        self._dirty = False
        self._saved_at = self._clock()
        states = dict(self._carried)
        states.update(
            (instance_id, entry.state)
            for instance_id, entry in self._entries.items()
            if entry.state is not None
        )
        try:
            _write_atomically(path, _checkpoint_bytes(states))
        except OSError as exc:
            self._dirty = True
            self._report(None, exc)


def _checkpoint_bytes(states: Mapping[str, Snapshot]) -> bytes:
    instances = {i: {"status": s.status, "seq": s.seq} for i, s in states.items()}
    document = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "instances": instances}
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")


def _write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):
        # The rename itself is durable only once the directory is synced (not possible on Windows).
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _load_checkpoint(path: str) -> dict[str, Snapshot]:
    """The states in a checkpoint; a missing or unreadable file logs a warning and gives none."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        _log.warning("checkpoint %s does not exist yet; starting fresh", path)
        return {}
    except OSError as exc:
        _log.warning("checkpoint %s cannot be read (%s); starting fresh", path, exc)
        return {}
    try:
        return _parse_checkpoint(raw)
    except (ValueError, TypeError, KeyError, InvalidInstanceIdError) as exc:
        _log.warning("checkpoint %s is corrupt (%s); starting fresh", path, exc)
        return {}


def _parse_checkpoint(raw: bytes) -> dict[str, Snapshot]:
    document = json.loads(raw)
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not a watcher checkpoint")
    if document.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"unsupported checkpoint version {document.get('version')!r}")
    instances = document["instances"]
    if not isinstance(instances, dict):
        raise TypeError("instances is not an object")
    states: dict[str, Snapshot] = {}
    for instance_id, record in instances.items():
        validate_instance_id(instance_id)
        status = record["status"]
        seq = record["seq"]
        if not isinstance(status, str) or not status:
            raise TypeError(f"status of {instance_id} is not a non-empty string")
        if type(seq) is not int or seq < 0:
            raise TypeError(f"seq of {instance_id} is not a non-negative integer")
        states[instance_id] = Snapshot(status=status, seq=seq)
    return states
