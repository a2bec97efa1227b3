"""Pure health bookkeeping: sync, staleness reported once, recovery once, the report, counters."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from aiocontainer import ContainerClient, InstanceWatcher, StatusChange
from aiocontainer._health import HealthMonitor, ObservationBook, WatchCounters, build_report
from aiocontainer._schedule import Entry
from aiocontainer.errors import (
    AiocontainerError,
    InstanceRecoveredNotice,
    InstanceStaleError,
    SyncTimeoutError,
    TransportError,
)
from aiocontainer.simulator import Simulator
from tests.conftest import eventually
from tests.watcher_fakes import C, FakeClient, FakeListClient, FakeTime, R, W, make

X, Y, Z = "a" * 32, "b" * 32, "c" * 32
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def observe(book: ObservationBook, i: str, now: float, *, rest: bool = False) -> float | None:
    return book.observed(i, now=now, at=T0, status="Running", at_rest=rest)


def test_goes_stale_once_and_recovers_once() -> None:
    book = ObservationBook(stale_after=15.0)
    book.watch([X, Y], now=0.0)
    observe(book, X, 1.0)
    observe(book, Y, 2.0)
    assert book.due_stale(now=16.0) == []  # X is 15 s old: not beyond stale_after
    observe(book, Y, 10.0)
    assert book.due_stale(now=16.5) == [(X, 15.5)]
    # Every later check while X stays unobserved reports nothing more.
    assert book.due_stale(now=17.0) == []
    assert book.due_stale(now=100.0) == [(Y, 90.0)]
    assert book.due_stale(now=500.0) == []
    assert book.stale_ids() == [X, Y]
    # The first success after the spell is a recovery, the next ones are not.
    assert observe(book, X, 501.0) == pytest.approx(500.0)
    assert observe(book, X, 502.0) is None
    assert book.stale_ids() == [Y]
    # Recovered, it can go stale again, once.
    assert book.due_stale(now=518.0) == [(X, 16.0)]
    assert book.due_stale(now=519.0) == []


def test_never_observed_ids_go_stale_from_when_they_were_added() -> None:
    book = ObservationBook(stale_after=10.0)
    book.watch([X], now=0.0)
    book.watch([Y], now=5.0)
    assert book.due_stale(now=12.0) == [(X, 12.0)]
    assert book.due_stale(now=15.5) == [(Y, 10.5)]


def test_terminal_ids_are_at_rest_not_stale_until_seen_active_again() -> None:
    book = ObservationBook(stale_after=10.0)
    book.watch([X], now=0.0)
    observe(book, X, 1.0, rest=True)
    assert book.due_stale(now=1000.0) == []
    observe(book, X, 1001.0)  # restarted: expected on the interval again
    assert book.due_stale(now=1012.0) == [(X, 11.0)]


def test_restart_measures_staleness_from_the_restart() -> None:
    book = ObservationBook(stale_after=10.0)
    book.watch([X, Y], now=0.0)
    observe(book, X, 1.0)
    observe(book, Y, 1.0)
    book.restart(now=100.0)  # stopped for 99 s: not a blind spell
    assert book.due_stale(now=105.0) == []
    assert book.due_stale(now=111.0) == [(X, 11.0), (Y, 11.0)]


def test_synced_after_each_id_is_observed_since_start() -> None:
    calls: list[int] = []
    book = ObservationBook(stale_after=10.0, on_synced=lambda: calls.append(1))
    book.watch([X, Y], now=0.0)
    assert (book.synced, book.unsynced) == (False, 2)
    observe(book, X, 1.0)
    assert (book.synced, book.unsynced, calls) == (False, 1, [])
    observe(book, Y, 2.0, rest=True)
    assert (book.synced, calls) == (True, [1])
    observe(book, Y, 3.0)
    assert calls == [1]  # already synced: no second signal
    book.watch([Z], now=4.0)
    assert not book.synced
    book.forget(Z)  # removing the last unsynced id syncs too
    assert (book.synced, calls) == (True, [1, 1])
    book.restart(now=5.0)
    assert (book.synced, book.unsynced) == (False, 2)


def test_forgotten_ids_are_neither_stale_nor_reported() -> None:
    book = ObservationBook(stale_after=1.0)
    book.watch([X, Y], now=0.0)
    book.forget(X)
    assert book.due_stale(now=5.0) == [(Y, 5.0)]
    assert observe(book, X, 6.0) is None
    assert len(book) == 1


def test_stale_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stale_after"):
        ObservationBook(stale_after=0)


def entry(instance_id: str, *, failures: int = 0, rest: int = 0, dormant: bool = False) -> Entry:
    made = Entry(instance_id, None)
    made.failures, made.rest, made.dormant = failures, rest, dormant
    return made


def test_report_from_plain_inputs() -> None:
    book = ObservationBook(stale_after=15.0)
    book.watch([X, Y, Z], now=0.0)
    observe(book, X, 10.0)
    observe(book, Z, 2.0, rest=True)
    book.due_stale(now=20.0)  # Y: never observed, 20 s
    report = build_report(
        [entry(X), entry(Y, failures=3, rest=3), entry(Z, dormant=True)],
        book,
        now=20.0,
        interval=5.0,
        changes_emitted=7,
        changes_dropped=2,
        queue_depths={"callback f": 4},
    )
    assert report.watched == 3
    assert (report.synced, report.unsynced) == (False, 1)
    assert (report.stalest, report.stalest_age) == (Y, 20.0)
    assert report.stale == (Y,)
    assert (report.changes_emitted, report.changes_dropped) == (7, 2)
    assert dict(report.queue_depths) == {"callback f": 4}
    a, b, c = (report.instances[i] for i in (X, Y, Z))
    assert (a.age, a.stale, a.synced, a.backing_off, a.next_due) == (10.0, False, True, False, 0.0)
    assert (a.status, a.last_observed_at) == ("Running", T0)
    assert (b.age, b.stale, b.synced, b.consecutive_failures, b.backing_off) == (
        None,
        True,
        False,
        3,
        True,
    )
    assert b.next_due == 0.0  # never polled yet: due now
    assert (c.next_due, c.stale, c.synced) == (None, False, True)
    with pytest.raises(AttributeError):
        report.watched = 4  # type: ignore[misc]


def test_report_next_due_counts_rest_visits() -> None:
    book = ObservationBook(stale_after=15.0)
    book.watch([X], now=0.0)
    book.polled(X, now=9.5)
    observe(book, X, 10.0)
    report = build_report(
        [entry(X, failures=2, rest=1)],
        book,
        now=12.0,
        interval=5.0,
        changes_emitted=0,
        changes_dropped=0,
        queue_depths={},
    )
    # The next visit is one interval after the poll (at 14.5), then one more for the rest.
    assert report.instances[X].next_due == 7.5
    assert (report.stalest, report.stalest_age) == (X, 2.0)


def test_counters_snapshot_is_frozen_and_sums_requests() -> None:
    counters = WatchCounters()
    counters.detail_polls += 5
    counters.pages += 2
    counters.sweeps += 1
    counters.count(InstanceStaleError(X, age=1.0, stale_after=1.0))
    counters.count(InstanceStaleError(Y, age=1.0, stale_after=1.0))
    stats = counters.snapshot()
    assert (stats.requests, stats.detail_polls, stats.pages, stats.sweeps) == (7, 5, 2, 1)
    assert dict(stats.errors) == {"InstanceStaleError": 2}
    counters.detail_polls += 1
    assert stats.detail_polls == 5  # a copy


def test_health_errors_are_typed_and_readable() -> None:
    stale = InstanceStaleError(X, age=16.25, stale_after=15)
    assert isinstance(stale, AiocontainerError)
    assert (stale.instance_id, stale.age, stale.stale_after) == (X, 16.25, 15)
    assert str(stale) == f"instance {X} is stale: not observed for 16.2s (stale after 15s)"
    notice = InstanceRecoveredNotice(X, blind_for=20.0)
    assert isinstance(notice, AiocontainerError) and not isinstance(notice, InstanceStaleError)
    assert "observed again after 20.0s" in str(notice)
    timeout = SyncTimeoutError(unsynced=3, timeout=2.0)
    assert isinstance(timeout, TimeoutError) and timeout.unsynced == 3
    assert timeout.account_listed and str(timeout) == "3 watched instances not observed within 2s"


# -- the watcher's health, on a fake clock -------------------------------------------------------


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


def kinds(errors: list[tuple[str | None, Exception]]) -> list[tuple[str | None, str]]:
    return [(i, type(e).__name__) for i, e in errors]


async def test_watcher_reports_stale_once_and_recovery_once(ft: FakeTime) -> None:
    down = TransportError("down", instance_id="bad")
    client = FakeClient(ft, {"bad": R, "ok": R})
    watcher = make(client, ["bad", "ok"], emit_initial=False)  # interval 10, stale after 30
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    async with watcher:
        await ft.advance(6)
        assert watcher.health().synced
        client.statuses["bad"] = down
        await ft.advance(200)  # "bad" fails at 10, 20, 40, 80, 160; "ok" is fine
        assert (
            kinds(errors)
            == [("bad", "TransportError")] * 2
            + [
                ("bad", "InstanceStaleError")  # at the first slot past 30 s unobserved
            ]
            + [("bad", "TransportError")] * 3
        )
        stale = errors[2][1]
        assert isinstance(stale, InstanceStaleError)
        assert (stale.age, stale.stale_after) == (35.0, 30.0)
        report = watcher.health()
        bad = report.instances["bad"]
        assert (bad.stale, bad.consecutive_failures, bad.backing_off) == (True, 5, True)
        assert (bad.status, bad.age, bad.next_due) == (R, 206.0, 34.0)  # next poll at 240
        assert (report.stale, report.stalest, report.stalest_age) == (("bad",), "bad", 206.0)
        assert report.instances["ok"].stale is False
        assert report.stale == ("bad",) and report.stalest == "bad"
        assert report.instances["ok"].stale is False
        client.statuses["bad"] = R
        await ft.advance(100)
    assert kinds(errors).count(("bad", "InstanceStaleError")) == 1
    assert kinds(errors).count(("bad", "InstanceRecoveredNotice")) == 1
    assert kinds(errors)[-1] == ("bad", "InstanceRecoveredNotice")
    assert ("ok", "InstanceStaleError") not in kinds(errors)
    stats = watcher.stats
    assert (stats.stale, stats.recovered) == (1, 1)
    assert stats.errors["TransportError"] == 5
    assert stats.requests == stats.detail_polls == len(client.calls)
    assert (stats.sweeps, stats.pages) == (0, 0)


async def test_wait_synced_returns_after_the_first_pass(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W, "b": R, "c": C})
    watcher = make(client, ["a", "b", "c"])  # slots at 0, 3.3, 6.7
    assert not watcher.health().synced
    async with watcher:
        waiting = asyncio.ensure_future(watcher.wait_synced(timeout=60))
        await ft.advance(5)
        assert not waiting.done() and watcher.health().unsynced == 1
        await ft.advance(2)
        assert waiting.done() and waiting.result() is None
        await watcher.wait_synced()  # already synced: at once
        watcher.add("d")
        assert not watcher.health().synced
    report = watcher.health()
    assert report.instances["c"].next_due is None  # terminal: not polled again


async def test_list_mode_syncs_after_the_first_pass_and_counts_pages(ft: FakeTime) -> None:
    statuses = {f"i{n:04d}": R for n in range(250)}
    client = FakeListClient(ft, statuses, page_cap=100)
    watcher = make(client, list(statuses), sweep="list", emit_initial=False)
    async with watcher:
        waiting = asyncio.ensure_future(watcher.wait_synced(timeout=60))
        await ft.advance(0.9)  # first pass: pages at 0 and 0.5 seen, 1.0 and 1.5 not yet
        assert not waiting.done() and watcher.health().unsynced == 50
        await ft.advance(0.2)
        assert waiting.done() and waiting.result() is None
        await ft.advance(40)  # staleness stays away while the list keeps seeing every id
    assert client.detail_calls() == 0
    stats = watcher.stats
    assert (stats.detail_polls, stats.sweeps) == (0, 5)
    assert stats.pages == len(client.list_calls) == stats.requests
    assert stats.errors == {}


async def test_watch_all_syncs_only_once_a_pass_listed_the_whole_account(ft: FakeTime) -> None:
    client = FakeListClient(ft, {f"i{n}": R for n in range(3)}, page_cap=1)
    watcher = make(client, watch_all=True)
    assert not watcher.health().synced, "no instance is known yet: nothing is synced"
    async with watcher:
        waiting = asyncio.ensure_future(watcher.wait_synced(timeout=60))
        await ft.advance(1.2)  # pages at 0, 0.5 and 1.0: every instance listed and observed
        report = watcher.health()
        assert (report.watched, report.unsynced) == (3, 0)
        assert not report.synced and not waiting.done(), "the empty page is still to come"
        await ft.advance(0.5)
        assert waiting.done() and waiting.result() is None and watcher.health().synced
    async with watcher:  # a restart owes a whole pass again: instances may have come meanwhile
        client.statuses["i3"] = W
        await ft.advance(8)  # pages 2.5 s apart: i0 to i3 listed, the empty page not yet
        report = watcher.health()
        assert (report.watched, report.unsynced, report.synced) == (4, 0, False)
        await ft.advance(4)
        assert watcher.health().synced


async def test_watch_all_that_cannot_list_times_out_saying_so(ft: FakeTime) -> None:
    client = FakeListClient(ft, {"a": R, "b": R}, page_cap=1)
    client.list_script.extend(["", *[TransportError("reset")] * 20])  # the first page only
    watcher = make(client, watch_all=True)
    async with watcher:
        waiting = asyncio.ensure_future(watcher.wait_synced(timeout=25))
        await ft.advance(25)
        with pytest.raises(SyncTimeoutError, match=r"^the account not listed whole and 0 "):
            waiting.result()
    error = waiting.exception()
    assert isinstance(error, SyncTimeoutError)
    assert (error.unsynced, error.account_listed) == (0, False)
    assert watcher.ids == ("a",)


async def test_list_mode_reports_an_id_the_list_no_longer_shows_as_stale(ft: FakeTime) -> None:
    client = FakeListClient(ft, {"a": R, "b": R})
    watcher = make(client, ["a", "b"], sweep="list", gone_after=100, max_backoff=1)
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    async with watcher:
        await ft.advance(5)
        client.statuses["b"] = TransportError("down", instance_id="b")
        await ft.advance(60)
    stale = [i for i, e in errors if isinstance(e, InstanceStaleError)]
    assert stale == ["b"]
    assert watcher.health().instances["a"].stale is False


async def test_wait_synced_times_out_on_the_injected_sleep(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R, "bad": TransportError("down", instance_id="bad")})
    watcher = make(client, ["a", "bad"])
    async with watcher:
        waiting = asyncio.ensure_future(watcher.wait_synced(timeout=25))
        await ft.advance(24)
        assert not waiting.done()
        await ft.advance(1)
        assert waiting.done()
        with pytest.raises(SyncTimeoutError, match="1 watched instances") as caught:
            waiting.result()
        assert caught.value.unsynced == 1
        watcher.remove("bad")  # nothing left to wait for
        await asyncio.wait_for(watcher.wait_synced(timeout=1), 1)


async def test_a_restart_must_sync_again_and_a_pause_is_not_stale(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    watcher = make(client, ["a"])
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    async with watcher:
        await ft.advance(1)
        assert watcher.health().synced
    await ft.advance(1000)  # stopped: nothing polls, nothing is stale
    async with watcher:
        assert not watcher.health().synced
        await ft.advance(1)
        assert watcher.health().synced
        await ft.advance(100)
    assert errors == []


async def test_stats_count_changes_drops_and_queue_depths(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W, "b": W})
    watcher = make(client, ["a", "b"], queue_size=1)
    gate = asyncio.Event()

    async def slow(change: StatusChange) -> None:
        await gate.wait()

    watcher.on_change(slow)
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    stream = watcher.changes()
    async with watcher:
        await ft.advance(9)
        client.statuses["a"] = R
        await ft.advance(10)
        report = watcher.health()
        depths = dict(report.queue_depths)
        assert depths == {f"callback {slow.__qualname__}": 1, "changes() iterator": 1}
        assert (report.changes_emitted, report.changes_dropped) == (3, 3)
        gate.set()
    stats = watcher.stats
    assert (stats.changes, stats.drops) == (3, 3)
    assert stats.errors["ChangesDroppedError"] == 3
    assert len(stream) == 1


async def test_stale_after_is_checked() -> None:
    with pytest.raises(ValueError, match="stale_after"):
        make(FakeClient(FakeTime(), {}), ["a"], stale_after=0)
    with pytest.raises(ValueError, match="timeout"):
        await make(FakeClient(FakeTime(), {}), ["a"]).wait_synced(timeout=-1)


# -- against the simulator on 127.0.0.1 ------------------------------------------------------


async def test_synced_and_health_through_an_outage_against_the_simulator() -> None:
    async with Simulator(instances=5, seed=3, frozen=True, include_seed_instance=False) as sim:
        ids = list(sim.instance_ids())
        async with ContainerClient(
            sim.base_url, token=sim.token, timeout=0.5, max_attempts=1
        ) as client:
            watcher = InstanceWatcher(client, ids, interval=0.2, stale_after=0.6, max_backoff=1)
            errors: list[tuple[str | None, Exception]] = []
            watcher.on_error(lambda i, e: errors.append((i, e)))
            async with watcher:
                await watcher.wait_synced(timeout=5)
                report = watcher.health()
                assert (report.watched, report.synced, report.stale) == (5, True, ())
                assert all(h.status == sim.status(i) for i, h in report.instances.items())
                await sim.suspend()
                await eventually(lambda: len(watcher.health().stale) == 5, within=5)
                during = watcher.health()
                assert all(h.consecutive_failures >= 1 for h in during.instances.values())
                assert watcher.snapshot().keys() == set(ids)  # what was known stands
                await sim.resume()
                await eventually(lambda: watcher.health().stale == (), within=5)
    stale = [i for i, e in errors if isinstance(e, InstanceStaleError)]
    recovered = [i for i, e in errors if isinstance(e, InstanceRecoveredNotice)]
    assert sorted(stale) == sorted(ids) == sorted(recovered)  # once each
    assert watcher.stats.errors["TransportError"] >= 5


def test_monitor_feeds_a_metrics_sink_and_forgetting_a_stale_id_lowers_the_gauge() -> None:
    calls: list[tuple[str, int]] = []

    class Sink:
        def changes(self, count: int) -> None:
            calls.append(("changes", count))

        def drops(self, count: int) -> None:
            calls.append(("drops", count))

        def stale(self, delta: int) -> None:
            calls.append(("stale", delta))

    now = [0.0]
    reported: list[tuple[str | None, Exception]] = []
    monitor = HealthMonitor(
        stale_after=None,
        interval=1.0,
        clock=lambda: now[0],
        report=lambda i, e: reported.append((i, e)),
        sink=Sink(),
    )
    monitor.added([X, Y])
    now[0] = 3.5
    monitor.check()  # both stale: three intervals passed
    monitor.observed(X, at=T0, status="Running", terminal=False)  # X recovers
    monitor.forgotten(Y)  # Y is removed while stale
    monitor.counters.changed()
    assert calls == [("stale", 1), ("stale", 1), ("stale", -1), ("stale", -1), ("changes", 1)]
    assert [type(e).__name__ for _, e in reported] == [
        "InstanceStaleError",
        "InstanceStaleError",
        "InstanceRecoveredNotice",
    ]
    assert monitor.report().watched == 0  # no entries source given: nothing to list
