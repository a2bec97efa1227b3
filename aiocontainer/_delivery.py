"""Getting changes and errors to their consumers: outboxes, subscriptions, ``ChangeStream``.

Rule 1: every consumer (callback, error callback, ``changes()`` iterator) has its own bounded
        queue; a full queue drops its oldest item (``drop_oldest``, the one rule for all of them)
        and says so, so a slow consumer delays and loses only its own items.
Rule 2: one ``ChangeFilter`` decides what a callback or an iterator receives.
Rule 3: delivery knows nothing of the watcher: it is handed a ``report`` function for the errors it
        meets and is told when to deliver and when to stop.
Rule 4: a callback's exception never ends delivery; it goes to ``report`` as unexpected.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

import attrs

from aiocontainer._health import WatchCounters
from aiocontainer._telemetry import error_fields
from aiocontainer.errors import ChangesDroppedError, InstanceRecoveredNotice
from aiocontainer.models import StatusChange

__all__ = [
    "ChangeCallback",
    "ChangeFilter",
    "ChangeStream",
    "Delivery",
    "ErrorCallback",
    "Outbox",
    "Statuses",
    "drop_oldest",
    "log",
    "status_set",
]

log = logging.getLogger("aiocontainer")

#: Called with each matching change; may be a plain function or a coroutine function.
ChangeCallback: TypeAlias = Callable[[StatusChange], object]
#: Called with ``(instance_id or None, exception)``; a plain function or a coroutine function.
ErrorCallback: TypeAlias = Callable[[str | None, Exception], object]
#: One status or a collection of them.
Statuses: TypeAlias = str | Iterable[str]

_T = TypeVar("_T")


class Report(Protocol):
    """Where delivery sends the errors it meets."""

    def __call__(
        self, instance_id: str | None, exc: Exception, *, unexpected: bool = False
    ) -> None: ...


def status_set(
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


def describe(callback: object) -> str:
    """How a consumer is named in errors and logs."""
    name = getattr(callback, "__qualname__", None) or type(callback).__qualname__
    return f"callback {name}"


async def call(callback: Callable[..., object], *args: object) -> None:
    """Call a plain function or a coroutine function alike."""
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


def drop_oldest(items: deque[_T], limit: int) -> _T | None:
    """Make room for one more item in ``items``: the oldest one goes when it is full."""
    return items.popleft() if len(items) >= limit else None


@attrs.frozen
class ChangeFilter:
    """Which changes a consumer wants: into one of ``to``, out of one of ``from_``."""

    to: frozenset[str] | None = None
    from_: frozenset[str] | None = None

    @classmethod
    def from_options(cls, to: Statuses | None, from_: Statuses | None) -> ChangeFilter:
        """Check and normalise the ``to=`` and ``from_=`` options."""
        return cls(status_set(to, name="to"), status_set(from_, name="from_"))

    def matches(self, change: StatusChange) -> bool:
        """``from_`` never matches a first observation (its ``previous`` is None)."""
        return (self.to is None or change.current in self.to) and (
            self.from_ is None or change.previous in self.from_
        )


class Outbox(Generic[_T]):
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
        # Set when delivery was halted from inside this outbox's own task (a callback that
        # ended the last wait): the task finishes its item, then stops instead of going on.
        self._halted = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def name(self) -> str:
        """The consumer this queue delivers to."""
        return self._name.removeprefix("aiocontainer-")

    def put(self, item: _T, *, start: bool) -> None:
        """Queue ``item`` (dropping the oldest when full) and deliver it now if ``start``."""
        dropped = drop_oldest(self._items, self._limit)
        self._items.append(item)
        if dropped is not None:
            self._on_overflow(dropped)
        if start:
            self.start()

    def start(self) -> None:
        """Start the delivery task if there is something to deliver and none runs."""
        self._halted = False
        if (self.task is None or self.task.done()) and self._items:
            self.task = asyncio.get_running_loop().create_task(self._drain(), name=self._name)

    @property
    def busy(self) -> bool:
        """Whether a delivery task other than the caller's own is running."""
        task = self.task
        return task is not None and not task.done() and task is not asyncio.current_task()

    async def _drain(self) -> None:
        try:
            while self._items and not self._halted:
                await self._deliver(self._items.popleft())
        finally:
            self.task = None

    async def halt(self) -> None:
        """Cancel delivery; what is still queued stays queued for the next start.

        Called from the delivery task itself (its callback ended the last wait), it cannot wait
        for itself: that task stops after its current item instead.
        """
        task = self.task
        if task is asyncio.current_task():
            self._halted = True
        elif task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if self.task is task:
                self.task = None  # a task cancelled before its first step never ran its finally


class ChangeStream:
    """The changes a watcher emits from the moment ``changes()`` was called, as an async iterator.

    It ends when the watcher stops (after the changes already queued are read), when ``aclose()``
    is called, or when nothing refers to it any more. Its queue is bounded like a callback's.
    """

    def __init__(
        self,
        *,
        wants: ChangeFilter,
        limit: int,
        report: Report,
        on_close: Callable[[ChangeStream], None],
    ) -> None:
        self._wants = wants
        self._limit = limit
        self._report = report
        self._on_close = on_close
        self._items: deque[StatusChange] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._ended = False

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open"
        return f"<ChangeStream pending={len(self._items)} {state}>"

    def __len__(self) -> int:
        return len(self._items)

    def put(self, change: StatusChange) -> None:
        """Queue a change the filter wants, dropping the oldest one when full."""
        if not self._wants.matches(change):
            return
        dropped = drop_oldest(self._items, self._limit)
        self._items.append(change)
        if dropped is not None:
            error = ChangesDroppedError(dropped, consumer="changes() iterator", limit=self._limit)
            self._report(dropped.instance_id, error)
        self._wake()

    def end(self) -> None:
        """End the iteration once what is queued has been read."""
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
        self._on_close(self)
        self.end()

    async def __aenter__(self) -> ChangeStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Delivery:
    """Every consumer of one watcher, and whether their queues are being delivered now."""

    def __init__(self, *, queue_size: int) -> None:
        self.queue_size = queue_size
        #: Whether queued items go out now; while False they wait for ``start()``.
        self.active = False
        self._changes: list[tuple[ChangeFilter, Outbox[StatusChange]]] = []
        self._errors: list[Outbox[tuple[str | None, Exception]]] = []
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()
        #: Counts what is published and reported, for the watcher's health and stats.
        self.counters: WatchCounters | None = None

    def limit(self, queue_size: int | None) -> int:
        """A consumer's queue size: its own, else the watcher's."""
        limit = self.queue_size if queue_size is None else queue_size
        if limit < 1:
            raise ValueError("queue_size must be at least 1")
        return limit

    def subscribe(self, callback: ChangeCallback, wants: ChangeFilter, *, limit: int) -> None:
        """Deliver the changes ``wants`` to ``callback`` from a queue of ``limit``."""
        consumer = describe(callback)

        async def deliver(change: StatusChange) -> None:
            try:
                await call(callback, change)
            except Exception as exc:
                self.report(change.instance_id, exc, unexpected=True)

        def overflow(change: StatusChange) -> None:
            error = ChangesDroppedError(change, consumer=consumer, limit=limit)
            self.report(change.instance_id, error)

        box = Outbox(deliver, limit=limit, on_overflow=overflow, name=f"aiocontainer-{consumer}")
        self._changes.append((wants, box))

    def on_error(self, callback: ErrorCallback) -> None:
        """Deliver errors to ``callback``; one that raises or falls behind is logged."""
        consumer = describe(callback)

        async def deliver(item: tuple[str | None, Exception]) -> None:
            try:
                await call(callback, *item)
            except Exception:
                fields = error_fields(*item)
                log.exception("%s raised while handling an error", consumer, extra=fields)

        def overflow(item: tuple[str | None, Exception]) -> None:
            log.warning(
                "%s fell behind; dropped error for %s: %s",
                consumer,
                item[0],
                item[1],
                extra=error_fields(*item),
            )

        box = Outbox(
            deliver, limit=self.queue_size, on_overflow=overflow, name=f"aiocontainer-{consumer}"
        )
        self._errors.append(box)

    def stream(self, wants: ChangeFilter, *, limit: int) -> ChangeStream:
        """A new ``ChangeStream`` that receives what is published from now on."""
        stream = ChangeStream(
            wants=wants, limit=limit, report=self.report, on_close=self._streams.discard
        )
        self._streams.add(stream)
        return stream

    @property
    def stream_count(self) -> int:
        """How many change streams are open."""
        return len(self._streams)

    def publish(self, change: StatusChange) -> None:
        """Queue ``change`` for every consumer that wants it."""
        if self.counters is not None:
            self.counters.changed()
        for wants, box in self._changes:
            if wants.matches(change):
                box.put(change, start=self.active)
        for stream in list(self._streams):
            stream.put(change)

    def report(self, instance_id: str | None, exc: Exception, *, unexpected: bool = False) -> None:
        """Queue an error for every error callback; logged at WARNING when there is none."""
        if self.counters is not None:
            self.counters.count(exc)
        if not self._errors:
            level = logging.INFO if isinstance(exc, InstanceRecoveredNotice) else logging.WARNING
            trace = exc if unexpected else None
            fields = error_fields(instance_id, exc)
            log.log(level, "instance %s: %s", instance_id, exc, exc_info=trace, extra=fields)
            return
        log.debug("instance %s: %s", instance_id, exc, extra=error_fields(instance_id, exc))
        for box in self._errors:
            box.put((instance_id, exc), start=self.active)

    def queue_depths(self) -> dict[str, int]:
        """Changes waiting in each change consumer's queue, by name (numbered when repeated)."""
        named = [(box.name, len(box)) for _, box in self._changes]
        named += [("changes() iterator", len(stream)) for stream in self._streams]
        depths: dict[str, int] = {}
        for name, depth in named:
            key, n = name, 1
            while key in depths:
                n += 1
                key = f"{name} #{n}"
            depths[key] = depth
        return depths

    def outboxes(self) -> list[Outbox[Any]]:
        """Every callback's queue, change callbacks first."""
        return [box for _, box in self._changes] + list(self._errors)

    def start(self) -> None:
        """Deliver from now on, starting with what is queued."""
        self.active = True
        for box in self.outboxes():
            box.start()

    def busy(self) -> set[asyncio.Task[None]]:
        """The delivery tasks still running."""
        return {box.task for box in self.outboxes() if box.task is not None and box.busy}

    async def settle(
        self,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        drain_timeout: float,
        cut: asyncio.Event | None = None,
    ) -> None:
        """Let queued items reach their consumers for ``drain_timeout``, then halt delivery.

        With ``cut``, wait for all of it until ``cut`` is set, then ``drain_timeout`` more at
        most. Time is read through ``clock`` and ``sleep`` only.
        """
        loop = asyncio.get_running_loop()
        deadline = None if cut is not None else clock() + drain_timeout
        cut_wait = None if cut is None else loop.create_task(cut.wait())
        try:
            while busy := self.busy():
                timer: asyncio.Future[None] | None = None
                if deadline is not None:
                    remaining = deadline - clock()
                    if remaining <= 0:
                        break
                    timer = asyncio.ensure_future(sleep(remaining))
                extra = {t for t in (cut_wait, timer) if t is not None}
                try:
                    await asyncio.wait(busy | extra, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if timer is not None:
                        timer.cancel()
                        await asyncio.gather(timer, return_exceptions=True)
                if cut_wait is not None and cut_wait.done():
                    cut_wait = None
                    deadline = clock() + drain_timeout
        finally:
            if cut_wait is not None:
                cut_wait.cancel()
                await asyncio.gather(cut_wait, return_exceptions=True)
            await self.halt()

    async def halt(self) -> None:
        """Cancel every delivery task; what is queued stays for the next start."""
        for box in self.outboxes():
            await box.halt()

    def end_streams(self) -> None:
        """End every change stream (the watcher stopped)."""
        for stream in list(self._streams):
            stream.end()
        self._streams.clear()
