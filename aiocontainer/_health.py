"""Whether a watcher still sees: observation times, staleness, sync, counters and the report.

Rule 1: an instance is *stale* when it has been expected to be polled and no poll of it has
        succeeded for more than ``stale_after`` seconds (measured from the later of its last
        successful observation and the moment watching resumed). Terminal instances are at
        rest, not stale: they leave the staleness count until a poll shows them active again.
Rule 2: going stale and recovering are each reported once: ``due_stale`` yields an instance the
        first time it is found stale, ``observed`` returns a recovery only for an instance that
        had been reported stale. Nothing is reported again while the state holds.
Rule 3: the instances that can go stale are kept in the order of their last observation (times
        come from one monotonic clock, so they arrive in that order), so an
        observation costs O(1) and ``due_stale`` looks only at the ones it reports plus one.
Rule 4: *synced* means every watched instance has been observed at least once since watching
        last (re)started; an instance added later is unsynced until its first observation. When
        the watched instances are those the list shows (``watch_all``), which instances those
        are is known only once a whole pass has listed them: until then nothing is synced,
        however few instances are known.
Rule 5: time comes in as arguments (a monotonic ``clock`` reading, and an aware ``datetime``
        for what is shown to people); nothing here reads a clock, sleeps or starts a task.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import types
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Protocol

import attrs

from aiocontainer._schedule import Entry
from aiocontainer.errors import ChangesDroppedError, InstanceRecoveredNotice, InstanceStaleError

__all__ = [
    "HealthMonitor",
    "HealthReport",
    "InstanceHealth",
    "ObservationBook",
    "WatchCounters",
    "WatcherStats",
    "build_report",
]


@attrs.frozen(kw_only=True)
class InstanceHealth:
    """What a watcher knows of how well it sees one instance."""

    #: The watched id.
    instance_id: str
    #: The last status seen, or None before the first successful poll.
    status: str | None
    #: When the last successful observation completed (aware UTC), or None.
    last_observed_at: datetime | None
    #: Seconds since the last successful observation, or None if there was none.
    age: float | None
    #: Failed polls in a row since the last success.
    consecutive_failures: int
    #: Whether polls of it are spaced out after failures.
    backing_off: bool
    #: Estimated seconds until its next poll; None when it is not scheduled (terminal, at rest).
    next_due: float | None
    #: Whether it went unobserved for longer than ``stale_after``.
    stale: bool
    #: Whether it was observed since watching last started.
    synced: bool


@attrs.frozen(kw_only=True)
class HealthReport:
    """A watcher's health at one moment: per instance and overall (``watcher.health()``)."""

    #: How many ids are watched.
    watched: int
    #: Whether every watched id was observed at least once since watching last started.
    synced: bool
    #: How many watched ids were not observed since watching last started.
    unsynced: int
    #: The id whose last successful observation is oldest (unobserved ids first), or None.
    stalest: str | None
    #: Seconds since that id's last observation (or since watching began, if none), or None.
    stalest_age: float | None
    #: The ids unobserved for longer than ``stale_after``, stalest first.
    stale: tuple[str, ...]
    #: Seconds without a successful observation after which an id counts as stale.
    stale_after: float
    #: Changes emitted since the watcher was created.
    changes_emitted: int
    #: Changes dropped because a consumer fell behind.
    changes_dropped: int
    #: Changes waiting in each consumer's queue, by consumer name.
    queue_depths: Mapping[str, int]
    #: Per-instance health, by id, in the order the ids were added.
    instances: Mapping[str, InstanceHealth]


@attrs.frozen(kw_only=True)
class WatcherStats:
    """Counters of what a watcher has done since it was created (``watcher.stats``)."""

    #: Requests the watcher made to the API: detail polls plus list pages (each is one lookup;
    #: its retries are counted by the client's own ``stats``).
    requests: int = 0
    #: Detail lookups of one instance.
    detail_polls: int = 0
    #: List sweeps started.
    sweeps: int = 0
    #: List pages requested.
    pages: int = 0
    #: Changes emitted.
    changes: int = 0
    #: Changes dropped because a consumer fell behind.
    drops: int = 0
    #: Instances that went stale, and that recovered.
    stale: int = 0
    recovered: int = 0
    #: Errors reported, by exception class name.
    errors: Mapping[str, int] = attrs.field(factory=lambda: types.MappingProxyType({}))


class MetricsSink(Protocol):
    """Where counts go besides ``WatcherStats`` (OpenTelemetry instruments, see ``_telemetry``)."""

    def changes(self, count: int) -> None:
        """``count`` changes were emitted."""

    def drops(self, count: int) -> None:
        """``count`` changes were dropped."""

    def stale(self, delta: int) -> None:
        """The number of stale instances moved by ``delta``."""


class WatchCounters:
    """The mutable counters behind ``WatcherStats``, passed on to an optional ``MetricsSink``."""

    __slots__ = (
        "changes",
        "detail_polls",
        "drops",
        "errors",
        "pages",
        "recovered",
        "sink",
        "stale",
        "sweeps",
    )

    def __init__(self, sink: MetricsSink | None = None) -> None:
        self.sink = sink
        self.detail_polls = 0
        self.sweeps = 0
        self.pages = 0
        self.changes = 0
        self.drops = 0
        self.stale = 0
        self.recovered = 0
        self.errors: Counter[str] = Counter()

    def count(self, exc: BaseException) -> None:
        """Count one reported error under its class name (and a dropped change as a drop)."""
        self.errors[type(exc).__name__] += 1
        if isinstance(exc, ChangesDroppedError):
            self.drops += 1
            if self.sink is not None:
                self.sink.drops(1)

    def changed(self) -> None:
        """Count one emitted change."""
        self.changes += 1
        if self.sink is not None:
            self.sink.changes(1)

    def staleness(self, delta: int) -> None:
        """An id went stale (+1) or stopped being stale (-1, recovered or forgotten)."""
        if delta > 0:
            self.stale += delta
        if self.sink is not None:
            self.sink.stale(delta)

    def snapshot(self) -> WatcherStats:
        """A frozen copy of the counters."""
        return WatcherStats(
            requests=self.detail_polls + self.pages,
            detail_polls=self.detail_polls,
            sweeps=self.sweeps,
            pages=self.pages,
            changes=self.changes,
            drops=self.drops,
            stale=self.stale,
            recovered=self.recovered,
            errors=types.MappingProxyType(dict(sorted(self.errors.items()))),
        )


class _Seen:
    """When one instance was last observed, and what the book concluded about it."""

    __slots__ = (
        "at",
        "at_rest",
        "at_wall",
        "observed",
        "polled_at",
        "stale",
        "status",
        "watched_from",
    )

    def __init__(self, since: float) -> None:
        #: Monotonic time of the last observation, or of the start of watching before one.
        self.at = since
        #: Where staleness is measured from: ``at``, or the later restart of watching.
        self.watched_from = since
        self.at_wall: datetime | None = None
        self.status: str | None = None
        self.observed = False
        self.stale = False
        #: Monotonic time the last poll of it started, or None.
        self.polled_at: float | None = None
        #: Terminal, so not expected to be polled on the interval: it cannot go stale.
        self.at_rest = False


class ObservationBook:
    """Last observation times of the watched ids: sync, staleness once, recovery once.

    ``on_synced`` is called each time the last unsynced id gets observed (and no listing of the
    whole account is owed).
    """

    def __init__(self, *, stale_after: float, on_synced: Callable[[], None] | None = None) -> None:
        if not stale_after > 0:
            raise ValueError("stale_after must be positive")
        self.stale_after = float(stale_after)
        self._on_synced = on_synced
        self._seen: dict[str, _Seen] = {}
        #: Ids that can go stale (not stale yet, not at rest), oldest observation first.
        self._watch: OrderedDict[str, None] = OrderedDict()
        self._unsynced: set[str] = set()
        #: A whole listing of the account is owed before sync (``HealthMonitor.list_all``).
        self.listing_due = False

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def synced(self) -> bool:
        """Whether every watched id was observed since watching last started (and, with a
        listing owed, the whole account was listed since)."""
        return not self._unsynced and not self.listing_due

    @property
    def unsynced(self) -> int:
        """How many watched ids were not observed since watching last started."""
        return len(self._unsynced)

    def stale_ids(self) -> list[str]:
        """The ids reported stale and not recovered, in the order they were added."""
        return [i for i, seen in self._seen.items() if seen.stale]

    # -- what is watched -----------------------------------------------------------------------

    def watch(self, ids: Iterable[str], *, now: float) -> None:
        """Start tracking ids not tracked yet; they are unsynced and can go stale from ``now``."""
        for instance_id in ids:
            if instance_id not in self._seen:
                self._seen[instance_id] = _Seen(now)
                self._watch[instance_id] = None
                self._unsynced.add(instance_id)

    def forget(self, instance_id: str) -> None:
        """Stop tracking an id (removed or gone); a wait for sync no longer waits for it."""
        if self._seen.pop(instance_id, None) is None:
            return
        self._watch.pop(instance_id, None)
        if instance_id in self._unsynced:
            self._unsynced.discard(instance_id)
            self._check_synced()

    def restart(self, *, now: float, listing: bool = False) -> None:
        """Watching (re)starts: every id must be observed again to be synced, and staleness
        counts from ``now`` for ids not already stale, so a pause is not a blind spell.
        ``listing``: the watched ids are those the list shows, so it must list them all again."""
        self._unsynced = set(self._seen)
        self.listing_due = listing
        for instance_id in self._watch:  # all become equal, so the order still holds
            seen = self._seen[instance_id]
            seen.watched_from = max(seen.watched_from, now)
        self._check_synced()

    # -- observations --------------------------------------------------------------------------

    def polled(self, instance_id: str, *, now: float) -> None:
        """A poll of ``instance_id`` starts now (for the estimate of its next one)."""
        seen = self._seen.get(instance_id)
        if seen is not None:
            seen.polled_at = now

    def observed(
        self, instance_id: str, *, now: float, at: datetime, status: str, at_rest: bool
    ) -> float | None:
        """Record a successful observation; when it ends a stale spell, the seconds the id went
        unobserved (report a recovery), else None.

        ``at_rest``: the instance is terminal and will not be polled on the interval, so it
        cannot go stale until an observation shows it active again.
        """
        seen = self._seen.get(instance_id)
        if seen is None:
            return None
        recovered = now - seen.watched_from if seen.stale else None
        seen.at = seen.watched_from = now
        seen.at_wall, seen.status, seen.observed = at, status, True
        seen.stale = False
        seen.at_rest = at_rest
        if at_rest:
            self._watch.pop(instance_id, None)
        else:
            self._watch[instance_id] = None
            self._watch.move_to_end(instance_id)
        if instance_id in self._unsynced:
            self._unsynced.discard(instance_id)
            self._check_synced()
        return recovered

    def due_stale(self, *, now: float) -> list[tuple[str, float]]:
        """The ids that went stale since the last call, with their age; each is given once."""
        found: list[tuple[str, float]] = []
        limit = now - self.stale_after
        while self._watch:
            instance_id = next(iter(self._watch))
            seen = self._seen[instance_id]
            if seen.watched_from >= limit:
                break
            del self._watch[instance_id]
            seen.stale = True
            found.append((instance_id, now - seen.watched_from))
        return found

    def listed(self) -> None:
        """The whole account was listed: sync needs only the ids found to be observed."""
        if self.listing_due:
            self.listing_due = False
            self._check_synced()

    def _check_synced(self) -> None:
        if not self._unsynced and not self.listing_due and self._on_synced is not None:
            self._on_synced()

    # -- reading -------------------------------------------------------------------------------

    def seen(self, instance_id: str) -> _Seen | None:
        """What is recorded of one id."""
        return self._seen.get(instance_id)

    def is_synced(self, instance_id: str) -> bool:
        """Whether ``instance_id`` was observed since watching last started."""
        return instance_id in self._seen and instance_id not in self._unsynced


def build_report(
    entries: Iterable[Entry],
    book: ObservationBook,
    *,
    now: float,
    interval: float,
    changes_emitted: int,
    changes_dropped: int,
    queue_depths: Mapping[str, int],
) -> HealthReport:
    """Assemble a ``HealthReport`` from plain inputs at monotonic time ``now``.

    ``next_due`` is an estimate: a rotation visits each id once per ``interval``, at the same
    place in it as its last poll, and an id at rest lets ``rest`` more visits pass; it is 0
    while a poll is in flight or before the first one.
    """
    instances: dict[str, InstanceHealth] = {}
    watching: list[tuple[float, str]] = []  # (last observation time, id) of ids not at rest
    for sched in entries:
        seen = book.seen(sched.instance_id)
        if seen is None:
            continue
        since = now - seen.at
        if not seen.at_rest:
            watching.append((seen.watched_from, sched.instance_id))
        next_due: float | None
        if sched.dormant:
            next_due = None
        elif sched.poll is not None or seen.polled_at is None:
            next_due = 0.0
        else:
            next_visit = -(now - seen.polled_at) % interval
            next_due = next_visit + sched.rest * interval
        instances[sched.instance_id] = InstanceHealth(
            instance_id=sched.instance_id,
            status=seen.status,
            last_observed_at=seen.at_wall,
            age=since if seen.observed else None,
            consecutive_failures=sched.failures,
            backing_off=sched.failures > 0 and sched.rest > 0,
            next_due=next_due,
            stale=seen.stale,
            synced=book.is_synced(sched.instance_id),
        )
    watching.sort()
    stalest = watching[0] if watching else None
    return HealthReport(
        watched=len(instances),
        synced=book.synced,
        unsynced=book.unsynced,
        stalest=None if stalest is None else stalest[1],
        stalest_age=None if stalest is None else now - stalest[0],
        stale=tuple(i for _, i in watching if instances[i].stale),
        stale_after=book.stale_after,
        changes_emitted=changes_emitted,
        changes_dropped=changes_dropped,
        queue_depths=types.MappingProxyType(dict(queue_depths)),
        instances=types.MappingProxyType(instances),
    )


class HealthMonitor:
    """The watcher's side of health: the book, the counters, and what goes to ``on_error``.

    ``entries`` and ``queue_depths`` say what is watched and queued, for ``report()``. The
    watcher tells it what happens (ids added and forgotten, polls, observations, reported
    errors) and calls ``check()`` as its rotation ticks; it reports each id going stale and
    recovering once through ``report``. ``when_synced`` callbacks run once, at the next sync.
    """

    def __init__(
        self,
        *,
        stale_after: float | None,
        interval: float,
        clock: Callable[[], float],
        report: Callable[[str | None, Exception], None],
        entries: Callable[[], Iterable[Entry]] = tuple,
        queue_depths: Callable[[], Mapping[str, int]] = dict,
        sink: MetricsSink | None = None,
    ) -> None:
        if stale_after is not None and not stale_after > 0:
            raise ValueError("stale_after must be positive")
        self.interval = interval
        self.book = ObservationBook(
            stale_after=3 * interval if stale_after is None else stale_after,
            on_synced=self._synced,
        )
        self.counters = WatchCounters(sink)
        self._clock = clock
        self._report = report
        self._entries = entries
        self._queue_depths = queue_depths
        self._sync_callbacks: list[Callable[[], None]] = []
        #: The watched ids are those the list shows (``watch_all``): see ``list_all``.
        self.lists_all = False

    def added(self, ids: Iterable[str]) -> None:
        """Ids are now watched."""
        self.book.watch(ids, now=self._clock())

    def forgotten(self, instance_id: str) -> None:
        """An id is no longer watched (removed, or dropped as gone)."""
        seen = self.book.seen(instance_id)
        if seen is not None and seen.stale:
            self.counters.staleness(-1)
        self.book.forget(instance_id)

    def restart(self) -> None:
        """Watching (re)starts: sync is earned again, pauses do not count as blind time."""
        self.book.restart(now=self._clock(), listing=self.lists_all)

    def list_all(self) -> None:
        """The watched ids are those the list shows (``watch_all``): sync also needs a whole
        pass of the list, before the first start and after each one."""
        self.lists_all = self.book.listing_due = True

    def listed_all(self) -> None:
        """A pass has listed the whole account (it matters with ``lists_all``)."""
        self.book.listed()

    def polled(self, instance_id: str) -> None:
        """A detail poll of ``instance_id`` starts."""
        self.counters.detail_polls += 1
        self.book.polled(instance_id, now=self._clock())

    def observed(self, instance_id: str, *, at: datetime, status: str, terminal: bool) -> None:
        """A poll (or a sweep) saw ``instance_id``; a stale one is reported recovered."""
        blind_for = self.book.observed(
            instance_id, now=self._clock(), at=at, status=status, at_rest=terminal
        )
        if blind_for is not None:
            self.counters.recovered += 1
            self.counters.staleness(-1)
            self._report(instance_id, InstanceRecoveredNotice(instance_id, blind_for=blind_for))

    def check(self) -> None:
        """Report the ids that went stale since the last check, once each."""
        book = self.book
        for instance_id, age in book.due_stale(now=self._clock()):
            self.counters.staleness(+1)
            error = InstanceStaleError(instance_id, age=age, stale_after=book.stale_after)
            self._report(instance_id, error)

    def report(self) -> HealthReport:
        """The ``HealthReport`` of the watched entries now."""
        return build_report(
            self._entries(),
            self.book,
            now=self._clock(),
            interval=self.interval,
            changes_emitted=self.counters.changes,
            changes_dropped=self.counters.drops,
            queue_depths=self._queue_depths(),
        )

    def when_synced(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when every watched id has been observed (now, if it is)."""
        if self.book.synced:
            callback()
        else:
            self._sync_callbacks.append(callback)

    def forget_sync_callback(self, callback: Callable[[], None]) -> None:
        """Drop a ``when_synced`` callback that is no longer wanted (its wait ended)."""
        if callback in self._sync_callbacks:
            self._sync_callbacks.remove(callback)

    def _synced(self) -> None:
        callbacks, self._sync_callbacks = self._sync_callbacks, []
        for callback in callbacks:
            callback()
