"""Pure health bookkeeping: sync, staleness reported once, recovery once, the report, counters."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aiocontainer._health import ObservationBook, Schedule, WatchCounters, build_report
from aiocontainer.errors import (
    AiocontainerError,
    InstanceRecoveredNotice,
    InstanceStaleError,
    SyncTimeoutError,
)

A, B, C = "a" * 32, "b" * 32, "c" * 32
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def observe(book: ObservationBook, i: str, now: float, *, rest: bool = False) -> float | None:
    return book.observed(i, now=now, at=T0, status="Running", at_rest=rest)


def test_goes_stale_once_and_recovers_once() -> None:
    book = ObservationBook(stale_after=15.0)
    book.watch([A, B], now=0.0)
    observe(book, A, 1.0)
    observe(book, B, 2.0)
    assert book.due_stale(now=16.0) == []  # A is 15 s old: not beyond stale_after
    observe(book, B, 10.0)
    assert book.due_stale(now=16.5) == [(A, 15.5)]
    # Every later check while A stays unobserved reports nothing more.
    assert book.due_stale(now=17.0) == []
    assert book.due_stale(now=100.0) == [(B, 90.0)]
    assert book.due_stale(now=500.0) == []
    assert book.stale_ids() == [A, B]
    # The first success after the spell is a recovery, the next ones are not.
    assert observe(book, A, 501.0) == pytest.approx(500.0)
    assert observe(book, A, 502.0) is None
    assert book.stale_ids() == [B]
    # Recovered, it can go stale again, once.
    assert book.due_stale(now=518.0) == [(A, 16.0)]
    assert book.due_stale(now=519.0) == []


def test_never_observed_ids_go_stale_from_when_they_were_added() -> None:
    book = ObservationBook(stale_after=10.0)
    book.watch([A], now=0.0)
    book.watch([B], now=5.0)
    assert book.due_stale(now=12.0) == [(A, 12.0)]
    assert book.due_stale(now=15.5) == [(B, 10.5)]


def test_terminal_ids_are_at_rest_not_stale_until_seen_active_again() -> None:
    book = ObservationBook(stale_after=10.0)
    book.watch([A], now=0.0)
    observe(book, A, 1.0, rest=True)
    assert book.due_stale(now=1000.0) == []
    observe(book, A, 1001.0)  # restarted: expected on the interval again
    assert book.due_stale(now=1012.0) == [(A, 11.0)]


def test_restart_measures_staleness_from_the_restart() -> None:
    book = ObservationBook(stale_after=10.0)
    book.watch([A, B], now=0.0)
    observe(book, A, 1.0)
    observe(book, B, 1.0)
    book.restart(now=100.0)  # stopped for 99 s: not a blind spell
    assert book.due_stale(now=105.0) == []
    assert book.due_stale(now=111.0) == [(A, 11.0), (B, 11.0)]


def test_synced_after_each_id_is_observed_since_start() -> None:
    calls: list[int] = []
    book = ObservationBook(stale_after=10.0, on_synced=lambda: calls.append(1))
    book.watch([A, B], now=0.0)
    assert (book.synced, book.unsynced) == (False, 2)
    observe(book, A, 1.0)
    assert (book.synced, book.unsynced, calls) == (False, 1, [])
    observe(book, B, 2.0, rest=True)
    assert (book.synced, calls) == (True, [1])
    observe(book, B, 3.0)
    assert calls == [1]  # already synced: no second signal
    book.watch([C], now=4.0)
    assert not book.synced
    book.forget(C)  # removing the last unsynced id syncs too
    assert (book.synced, calls) == (True, [1, 1])
    book.restart(now=5.0)
    assert (book.synced, book.unsynced) == (False, 2)


def test_forgotten_ids_are_neither_stale_nor_reported() -> None:
    book = ObservationBook(stale_after=1.0)
    book.watch([A, B], now=0.0)
    book.forget(A)
    assert book.due_stale(now=5.0) == [(B, 5.0)]
    assert observe(book, A, 6.0) is None
    assert len(book) == 1


def test_stale_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stale_after"):
        ObservationBook(stale_after=0)


def test_report_from_plain_inputs() -> None:
    book = ObservationBook(stale_after=15.0)
    book.watch([A, B, C], now=0.0)
    observe(book, A, 10.0)
    observe(book, C, 2.0, rest=True)
    book.due_stale(now=20.0)  # B: never observed, 20 s
    report = build_report(
        [
            Schedule(instance_id=A, rest=0),
            Schedule(instance_id=B, failures=3, rest=3),
            Schedule(instance_id=C, dormant=True),
        ],
        book,
        now=20.0,
        interval=5.0,
        changes_emitted=7,
        changes_dropped=2,
        queue_depths={"callback f": 4},
    )
    assert report.watched == 3
    assert (report.synced, report.unsynced) == (False, 1)
    assert (report.stalest, report.stalest_age) == (B, 20.0)
    assert report.stale == (B,)
    assert (report.changes_emitted, report.changes_dropped) == (7, 2)
    assert dict(report.queue_depths) == {"callback f": 4}
    a, b, c = (report.instances[i] for i in (A, B, C))
    assert (a.age, a.stale, a.synced, a.backing_off, a.next_due) == (10.0, False, True, False, 0.0)
    assert (a.status, a.last_observed_at) == ("Running", T0)
    assert (b.age, b.stale, b.synced, b.consecutive_failures, b.backing_off) == (
        None,
        True,
        False,
        3,
        True,
    )
    assert b.next_due == 0.0  # (3 + 1) * 5 s after "watched from" 0: due now
    assert (c.next_due, c.stale, c.synced) == (None, False, True)
    with pytest.raises(AttributeError):
        report.watched = 4  # type: ignore[misc]


def test_report_next_due_counts_rest_visits() -> None:
    book = ObservationBook(stale_after=15.0)
    book.watch([A], now=0.0)
    observe(book, A, 10.0)
    report = build_report(
        [Schedule(instance_id=A, failures=2, rest=1)],
        book,
        now=12.0,
        interval=5.0,
        changes_emitted=0,
        changes_dropped=0,
        queue_depths={},
    )
    assert report.instances[A].next_due == 8.0  # (1 + 1) * 5 - 2
    assert (report.stalest, report.stalest_age) == (A, 2.0)


def test_counters_snapshot_is_frozen_and_sums_requests() -> None:
    counters = WatchCounters()
    counters.detail_polls += 5
    counters.pages += 2
    counters.sweeps += 1
    counters.count_error(InstanceStaleError(A, age=1.0, stale_after=1.0))
    counters.count_error(InstanceStaleError(B, age=1.0, stale_after=1.0))
    stats = counters.snapshot()
    assert (stats.requests, stats.detail_polls, stats.pages, stats.sweeps) == (7, 5, 2, 1)
    assert dict(stats.errors) == {"InstanceStaleError": 2}
    counters.detail_polls += 1
    assert stats.detail_polls == 5  # a copy


def test_health_errors_are_typed_and_readable() -> None:
    stale = InstanceStaleError(A, age=16.25, stale_after=15)
    assert isinstance(stale, AiocontainerError)
    assert (stale.instance_id, stale.age, stale.stale_after) == (A, 16.25, 15)
    assert str(stale) == f"instance {A} is stale: not observed for 16.2s (stale after 15s)"
    notice = InstanceRecoveredNotice(A, blind_for=20.0)
    assert isinstance(notice, AiocontainerError) and not isinstance(notice, InstanceStaleError)
    assert "observed again after 20.0s" in str(notice)
    timeout = SyncTimeoutError(unsynced=3, timeout=2.0)
    assert isinstance(timeout, TimeoutError) and timeout.unsynced == 3
