"""InstanceWatcher against a scripted fake client, on a fake clock: exact and fast."""

from __future__ import annotations

import ast
import asyncio
import gc
import itertools
import logging
import time
import weakref
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

from aiocontainer import watcher as watcher_module
from aiocontainer.errors import (
    AiocontainerError,
    ChangesDroppedError,
    InstanceGoneError,
    InvalidInstanceIdError,
    InvalidParameterError,
    TransportError,
    WaitFailedError,
    WaitTimeoutError,
)
from aiocontainer.models import InstanceDetail, StatusChange
from aiocontainer.watcher import ChangeStream, InstanceWatcher
from tests.watcher_fakes import (
    C,
    D,
    F,
    FakeClient,
    FakeTime,
    R,
    T,
    W,
    invalid,
    make,
    settle,
    summary,
)


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


# -- what gets emitted ---------------------------------------------------------------------------


async def test_first_observations_are_emitted_with_seq_one(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W, "b": R})
    watcher = make(client, ["a", "b"])
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(9)
    assert summary(seen) == [("a", None, W, 1), ("b", None, R, 1)]
    assert all(c.skipped == () and c.is_initial for c in seen)
    assert all(c.observed_at.tzinfo is timezone.utc for c in seen)
    assert seen[0].detail == InstanceDetail(id="a", status=W)


async def test_without_emit_initial_the_first_change_is_seq_one(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W})
    watcher = make(client, ["a"], emit_initial=False)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        assert seen == []
        assert watcher.snapshot()["a"].status == W
        client.statuses["a"] = R
        await ft.advance(10)
    assert summary(seen) == [("a", W, R, 1)]
    assert seen[0].skipped == (D,)


async def test_each_change_is_emitted_once_in_order_with_seq_plus_one(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": C, "b": W})
    client.script("a", W, W, D, D, R, R, R)
    client.script("b", W, R, R, T)
    watcher = make(client, ["a", "b"])
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(100)
    by_id = {i: [c for c in seen if c.instance_id == i] for i in "ab"}
    assert summary(by_id["a"]) == [
        ("a", None, W, 1),
        ("a", W, D, 2),
        ("a", D, R, 3),
        ("a", R, C, 4),
    ]
    assert summary(by_id["b"]) == [("b", None, W, 1), ("b", W, R, 2), ("b", R, T, 3)]
    assert [c.skipped for c in by_id["b"]] == [(), (D,), ()]


async def test_a_flip_away_and_back_between_polls_emits_nothing(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W})
    watcher = make(client, ["a"])
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(3)
        client.statuses["a"] = R
        await ft.advance(3)
        client.statuses["a"] = W
        await ft.advance(20)
    assert client.count("a") == 3
    assert summary(seen) == [("a", None, W, 1)]


async def test_a_failed_poll_is_not_a_transition(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    failure = TransportError("connection reset", instance_id="a")
    client.script("a", W, failure, W, R)
    watcher = make(client, ["a"])
    seen: list[StatusChange] = []
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_change(seen.append)
    watcher.on_error(lambda i, e: errors.append((i, e)))
    async with watcher:
        await ft.advance(11)
        assert watcher.snapshot()["a"].status == W  # the last known status stands
        await ft.advance(20)
    assert errors == [("a", failure)]
    assert summary(seen) == [("a", None, W, 1), ("a", W, R, 2)]


async def test_a_client_bug_is_logged_and_reported_as_is(
    ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(ft, {"a": W})
    bug = RuntimeError("boom")
    client.script("a", bug)
    watcher = make(client, ["a"])
    errors: list[tuple[str | None, Exception]] = []
    seen: list[StatusChange] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    watcher.on_change(seen.append)
    with caplog.at_level(logging.ERROR, logger="aiocontainer"):
        async with watcher:
            await ft.advance(15)
    assert errors == [("a", bug)]
    assert summary(seen) == [("a", None, W, 1)]  # the watcher kept going
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and record.exc_info[1] is bug


async def test_errors_without_an_error_callback_are_logged(
    ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(ft, {"a": W})
    client.script("a", TransportError("refused", instance_id="a"))
    watcher = make(client, ["a"])
    with caplog.at_level(logging.WARNING, logger="aiocontainer"):
        async with watcher:
            await ft.advance(1)
    assert any("refused" in r.getMessage() for r in caplog.records)


# -- scheduling ----------------------------------------------------------------------------------


async def test_polls_are_spread_evenly_over_the_interval(ft: FakeTime) -> None:
    ids = [f"i{n}" for n in range(5)]
    client = FakeClient(ft, dict.fromkeys(ids, R))
    watcher = make(client, ids)
    async with watcher:
        await ft.advance(29)
    for n, instance_id in enumerate(ids):
        assert client.times(instance_id) == [2 * n, 2 * n + 10, 2 * n + 20]


async def test_jitter_moves_polls_within_their_slot(ft: FakeTime) -> None:
    ids = [f"i{n}" for n in range(4)]
    client = FakeClient(ft, dict.fromkeys(ids, R))
    watcher = make(client, ids, jitter=0.5, rand=lambda: 0.5)
    async with watcher:
        await ft.advance(19)
    # Slots are 2.5 s wide; a quarter of a slot later with these draws.
    assert [at for at, _ in client.calls] == pytest.approx(
        [0.625, 3.125, 5.625, 8.125, 10.625, 13.125, 15.625, 18.125]
    )


async def test_random_jitter_never_fires_a_burst(ft: FakeTime) -> None:
    ids = [f"i{n}" for n in range(20)]
    client = FakeClient(ft, dict.fromkeys(ids, R))
    watcher = make(client, ids, jitter=0.9)
    async with watcher:
        await ft.advance(10)
    times = sorted(at for at, _ in client.calls)
    assert len(times) == len(set(times)) == 20
    assert times[-1] < 10


async def test_polls_in_flight_are_bounded_by_the_client_concurrency(ft: FakeTime) -> None:
    ids = [f"i{n}" for n in range(6)]
    client = FakeClient(ft, dict.fromkeys(ids, R), concurrency=2, latency=7)
    watcher = make(client, ids)
    async with watcher:
        await ft.advance(60)
    assert client.max_in_flight == 2
    assert len(client.calls) > 6  # everyone still got polled, in turn


async def test_one_id_never_has_two_polls_in_flight(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R}, latency=25)
    watcher = make(client, ["a"])
    async with watcher:
        await ft.advance(65)
    assert client.max_per_id == 1
    assert client.times("a") == [0, 30, 60]


async def test_terminal_ids_are_not_polled_again_by_default(ft: FakeTime) -> None:
    client = FakeClient(ft, {"done": C, "busy": R})
    watcher = make(client, ["done", "busy"])
    async with watcher:
        await ft.advance(100)
    assert client.count("done") == 1
    assert client.count("busy") == 10


async def test_terminal_ids_can_be_polled_slowly_to_see_restarts(ft: FakeTime) -> None:
    client = FakeClient(ft, {"done": C})
    watcher = make(client, ["done"], terminal_interval=30)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(45)
        client.statuses["done"] = W
        await ft.advance(30)
    assert client.times("done") == [0, 30, 60, 70]
    assert summary(seen) == [("done", None, C, 1), ("done", C, W, 2)]
    assert seen[1].skipped == ()


async def test_a_failing_id_backs_off_alone(ft: FakeTime) -> None:
    client = FakeClient(ft, {"bad": TransportError("down", instance_id="bad"), "ok": R})
    watcher = make(client, ["bad", "ok"])
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    async with watcher:
        await ft.advance(235)
        assert client.times("bad") == [0, 10, 30, 70, 150, 230]  # 1, 2, 4, 8, 8 intervals
        assert client.times("ok") == [5 + 10 * n for n in range(24)]
        client.statuses["bad"] = R
        await ft.advance(100)
    assert client.times("bad")[-3:] == [310, 320, 330]  # back to normal once it answers
    kinds = [type(e).__name__ for _, e in errors]
    stale, recovered = "InstanceStaleError", "InstanceRecoveredNotice"  # once each
    assert kinds == ["TransportError"] * 3 + [stale] + ["TransportError"] * 3 + [recovered]


async def test_an_id_the_platform_forgot_is_dropped(ft: FakeTime) -> None:
    client = FakeClient(ft, {"gone": invalid("gone"), "ok": R})
    watcher = make(client, ["gone", "ok"], gone_after=3)
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    async with watcher:
        await ft.advance(200)
    assert client.times("gone") == [0, 10, 30]
    assert watcher.ids == ("ok",)
    assert [type(e) for _, e in errors] == [
        InvalidParameterError,
        InvalidParameterError,
        InstanceGoneError,
    ]
    gone = errors[-1][1]
    assert isinstance(gone, InstanceGoneError)
    assert (gone.instance_id, gone.attempts) == ("gone", 3)
    assert isinstance(gone.__cause__, InvalidParameterError)


async def test_other_answers_reset_the_gone_count(ft: FakeTime) -> None:
    client = FakeClient(ft, {"x": invalid("x")})
    client.script("x", invalid("x"), invalid("x"), TransportError("t", instance_id="x"))
    watcher = make(client, ["x"], gone_after=3, max_backoff=1)
    errors: list[Exception] = []
    watcher.on_error(lambda i, e: errors.append(e))
    async with watcher:
        await ft.advance(55)
    assert client.count("x") == 6
    assert isinstance(errors[-1], InstanceGoneError)
    assert watcher.ids == ()


# -- consumers -----------------------------------------------------------------------------------


async def test_on_change_filters_and_decorator_forms(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": C})
    client.script("a", W, D, R)
    watcher = make(client, ["a"])
    everything: list[StatusChange] = []
    running: list[StatusChange] = []
    out_of_waiting: list[StatusChange] = []
    into_end: list[StatusChange] = []

    @watcher.on_change
    def every(change: StatusChange) -> None:
        everything.append(change)

    @watcher.on_change(to=R)
    async def to_running(change: StatusChange) -> None:
        running.append(change)

    watcher.on_change(out_of_waiting.append, from_=W)
    watcher.on_change(into_end.append, to={C, F}, from_=[R, D])
    assert every.__name__ == "every" and to_running.__name__ == "to_running"
    async with watcher:
        await ft.advance(40)
    assert [c.current for c in everything] == [W, D, R, C]
    assert summary(running) == [("a", D, R, 3)]
    assert summary(out_of_waiting) == [("a", W, D, 2)]
    assert summary(into_end) == [("a", R, C, 4)]


async def test_a_raising_callback_goes_to_on_error_and_others_continue(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    client.script("a", W)
    watcher = make(client, ["a"])
    good: list[StatusChange] = []
    errors: list[tuple[str | None, Exception]] = []
    async_errors: list[Exception] = []

    def bad(change: StatusChange) -> None:
        raise ValueError(f"cannot handle {change.current}")

    async def record(instance_id: str | None, exc: Exception) -> None:
        async_errors.append(exc)

    watcher.on_change(bad)
    watcher.on_change(good.append)
    watcher.on_error(lambda i, e: errors.append((i, e)))
    watcher.on_error(record)
    async with watcher:
        await ft.advance(15)
    assert [c.current for c in good] == [W, R]
    assert [(i, str(e)) for i, e in errors] == [
        ("a", "cannot handle Waiting"),
        ("a", "cannot handle Running"),
    ]
    assert async_errors == [e for _, e in errors]


async def test_a_failing_error_callback_is_logged(
    ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(ft, {"a": TransportError("down", instance_id="a")})
    watcher = make(client, ["a"])

    def broken(instance_id: str | None, exc: Exception) -> None:
        raise KeyError("oops")

    watcher.on_error(broken)
    with caplog.at_level(logging.ERROR, logger="aiocontainer"):
        async with watcher:
            await ft.advance(1)
    assert any("broken" in r.getMessage() for r in caplog.records)


async def test_a_slow_callback_delays_only_itself(ft: FakeTime) -> None:
    ids = ["a", "b"]
    client = FakeClient(ft, {"a": R, "b": R})
    client.script("a", W, D)
    client.script("b", W, D)
    watcher = make(client, ids)
    release = asyncio.Event()
    slow: list[StatusChange] = []
    fast: list[StatusChange] = []

    async def sluggish(change: StatusChange) -> None:
        await release.wait()  # stands for ten seconds of work
        slow.append(change)

    watcher.on_change(sluggish)
    watcher.on_change(fast.append)
    async with watcher:
        await ft.advance(30)
        assert len(fast) == 6 and slow == []
        assert client.times("a") == [0, 10, 20, 30]  # polling kept its pace
        release.set()
        await settle()
        assert slow == fast


async def test_a_full_callback_queue_drops_the_oldest_change_and_says_so(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    client.script("a", W, D, R, W, D)
    watcher = make(client, ["a"], queue_size=2)
    release = asyncio.Event()
    got: list[StatusChange] = []
    others: list[StatusChange] = []
    dropped: list[Exception] = []

    async def blocked(change: StatusChange) -> None:
        await release.wait()
        got.append(change)

    watcher.on_change(blocked)
    watcher.on_change(others.append, queue_size=100)
    watcher.on_error(lambda i, e: dropped.append(e))
    async with watcher:
        await ft.advance(55)
        release.set()
        await settle()
    # The first change was being handled; of the five queued after it, the newest two stay.
    assert [c.seq for c in got] == [1, 5, 6]
    assert [c.seq for c in others] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(e, ChangesDroppedError) for e in dropped)
    assert [e.change.seq for e in dropped if isinstance(e, ChangesDroppedError)] == [2, 3, 4]
    first = dropped[0]
    assert isinstance(first, ChangesDroppedError) and isinstance(first, AiocontainerError)
    assert first.instance_id == "a" and first.limit == 2 and "blocked" in first.consumer


async def test_several_change_streams_each_get_every_change(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R, "b": C})
    client.script("a", W)
    watcher = make(client, ["a", "b"])
    first = watcher.changes()
    second = watcher.changes()
    running = watcher.changes(to=R)

    async def collect(stream: ChangeStream) -> list[StatusChange]:
        return [change async for change in stream]

    readers = [asyncio.create_task(collect(s)) for s in (first, second, running)]
    async with watcher:
        await ft.advance(25)
    one, two, only_running = await asyncio.gather(*readers)  # they end when the watcher stops
    assert summary(one) == summary(two) == [("a", None, W, 1), ("b", None, C, 1), ("a", W, R, 2)]
    assert summary(only_running) == [("a", W, R, 2)]


async def test_a_change_stream_is_bounded_and_closable(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": C})
    client.script("a", W, D, R)
    watcher = make(client, ["a"])
    errors: list[Exception] = []
    watcher.on_error(lambda i, e: errors.append(e))
    async with watcher:
        async with watcher.changes(queue_size=2) as stream:
            await ft.advance(35)
            assert [c.seq async for c in _take(stream, 2)] == [3, 4]
        assert "ended" in repr(stream)
        assert [c async for c in stream] == []
    assert [e.change.seq for e in errors if isinstance(e, ChangesDroppedError)] == [1, 2]
    assert all("changes() iterator" in str(e) for e in errors)


async def _take(stream: ChangeStream, count: int) -> Any:
    for _ in range(count):
        yield await stream.__anext__()


async def test_an_abandoned_change_stream_stops_collecting(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    client.script("a", W)
    watcher = make(client, ["a"], queue_size=1)
    errors: list[Exception] = []
    watcher.on_error(lambda i, e: errors.append(e))
    async with watcher:
        stream = watcher.changes()
        gone = weakref.ref(stream)
        async for change in stream:
            assert change.current == W
            break
        del stream
        gc.collect()
        assert gone() is None  # the watcher holds no strong reference to it
        await ft.advance(35)  # more changes than its queue holds: nothing is kept for it
    assert errors == []


# -- control -------------------------------------------------------------------------------------


async def test_stop_when_all_terminal_returns_after_delivery(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": C, "b": F})
    client.script("a", W, R)
    watcher = make(client, ["a", "b"], stop_when_all_terminal=True)
    delivered: list[StatusChange] = []

    async def slow_handler(change: StatusChange) -> None:
        await asyncio.sleep(0.01)
        delivered.append(change)

    watcher.on_change(slow_handler)
    task = asyncio.create_task(watcher.run())
    await ft.run_until(task)
    assert summary(delivered) == [
        ("a", None, W, 1),
        ("b", None, F, 1),
        ("a", W, R, 2),
        ("a", R, C, 3),
    ]
    assert not watcher.running


async def test_stop_when_all_terminal_with_nothing_to_watch_returns_at_once(ft: FakeTime) -> None:
    watcher = make(FakeClient(ft), [], stop_when_all_terminal=True)
    await asyncio.wait_for(watcher.run(), 1)


async def test_run_twice_at_once_is_refused(ft: FakeTime) -> None:
    watcher = make(FakeClient(ft, {"a": R}), ["a"])
    async with watcher:
        with pytest.raises(RuntimeError, match="already running"):
            await watcher.run()
        with pytest.raises(RuntimeError, match="already running"):
            async with watcher:
                pass


async def test_stop_is_prompt_cancels_polls_and_leaves_nothing_behind() -> None:
    # Real time: a 30 s interval, a poll that never answers and a callback that takes 10 s.
    loop_time = FakeTime()  # only used to give the fake client a sleep that never ends
    client = FakeClient(loop_time, {"a": R, "hang": R})
    client.script("a", W)
    before = asyncio.all_tasks()
    watcher = InstanceWatcher(client, ["a", "hang"], interval=30, drain_timeout=0.05, jitter=0)
    slow_started = asyncio.Event()

    async def ten_seconds(change: StatusChange) -> None:
        slow_started.set()
        await asyncio.sleep(10)

    watcher.on_change(ten_seconds)
    client.latency = 0  # "a" answers at once
    async with watcher:
        await asyncio.wait_for(slow_started.wait(), 1)
        client.latency = 1e9  # the next poll ("hang", in 15 s) would never come back
    started = time.monotonic()
    async with watcher:
        await asyncio.sleep(0.05)
    assert time.monotonic() - started < 1
    assert client.cancelled == 1  # the poll in flight was cancelled, not waited for
    assert asyncio.all_tasks() == before
    assert not watcher.running


async def test_a_stopped_watcher_starts_again_and_keeps_its_state(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W})
    watcher = make(client, ["a"])
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
    assert "stopped" in repr(watcher)
    client.statuses["a"] = R
    task = asyncio.create_task(watcher.run())
    await ft.advance(5)
    assert watcher.running and "running" in repr(watcher)
    watcher.stop()
    await task
    assert summary(seen) == [("a", None, W, 1), ("a", W, R, 2)]


async def test_changes_queued_at_stop_are_delivered_after_a_restart(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    client.script("a", W)
    watcher = make(client, ["a"], drain_timeout=0.01)
    release = asyncio.Event()
    got: list[StatusChange] = []

    async def blocked(change: StatusChange) -> None:
        await release.wait()
        got.append(change)

    watcher.on_change(blocked)
    task = asyncio.create_task(watcher.run())
    await ft.advance(15)
    watcher.stop()
    await settle()
    assert not task.done()  # the drain lasts drain_timeout on the watcher's clock
    await ft.advance(0.01)
    assert task.done()
    assert got == []  # the one in progress was cancelled at stop, the next one waits
    release.set()
    async with watcher:
        await settle()
    assert summary(got) == [("a", W, R, 2)]


async def test_add_and_remove_at_any_time(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R, "b": W, "c": D})
    watcher = make(client, ["a"])
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(12)
        watcher.add("b", "c", "a")
        assert watcher.ids == ("a", "b", "c")
        await ft.advance(10)
        watcher.remove("a", "zzz")
        calls = client.count("a")
        await ft.advance(30)
    assert client.count("a") == calls
    assert sorted((c.instance_id, c.current) for c in seen) == [("a", R), ("b", W), ("c", D)]
    assert set(watcher.snapshot()) == {"b", "c"}


async def test_a_result_for_a_removed_id_is_ignored(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R}, latency=5)
    watcher = make(client, ["a"])
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(1)
        watcher.remove("a")
        await ft.advance(10)
    assert seen == [] and watcher.snapshot() == {}


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "x y", "a\n", 7])
async def test_bad_ids_are_refused_before_any_lookup(ft: FakeTime, bad: Any) -> None:
    client = FakeClient(ft, {"a": R})
    with pytest.raises(InvalidInstanceIdError):
        make(client, ["a", bad])
    watcher = make(client, ["a"])
    with pytest.raises(InvalidInstanceIdError):
        watcher.add("b", bad)
    assert watcher.ids == ("a",)
    with pytest.raises(InvalidInstanceIdError):
        await watcher.wait_for(bad, R)
    assert client.calls == []


def test_ids_must_not_be_a_single_string() -> None:
    with pytest.raises(TypeError, match="not one string"):
        InstanceWatcher(FakeClient(FakeTime()), "abc")


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0},
        {"terminal_interval": 0},
        {"gone_after": 0},
        {"max_backoff": 0},
        {"queue_size": 0},
        {"jitter": 1.5},
        {"drain_timeout": -1},
        {"concurrency": 0},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        InstanceWatcher(FakeClient(FakeTime()), ["a"], **options)


def test_bad_filters_are_refused() -> None:
    watcher = InstanceWatcher(FakeClient(FakeTime()), ["a"])
    with pytest.raises(ValueError, match="at least one"):
        watcher.on_change(print, to=[])
    with pytest.raises(TypeError, match="status strings"):
        watcher.changes(from_=[1])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        watcher.on_change(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        watcher.on_error(42)  # type: ignore[type-var]


def test_repr_shows_size_interval_and_state_but_no_token() -> None:
    client = FakeClient(FakeTime())
    watcher = InstanceWatcher(client, ["a", "b"], interval=2.5)
    assert repr(watcher) == "<InstanceWatcher ids=2 interval=2.5s stopped>"
    assert client.token not in repr(watcher)


async def test_snapshot_is_a_read_only_view_of_the_last_details(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W, "b": R})
    watcher = make(client, ["a", "b"])
    assert watcher.snapshot() == {}
    async with watcher:
        await ft.advance(6)
        client.statuses["a"] = D
        await ft.advance(10)
    snap = watcher.snapshot()
    assert {i: d.status for i, d in snap.items()} == {"a": D, "b": R}
    with pytest.raises(TypeError):
        snap["a"] = InstanceDetail(id="a", status=W)  # type: ignore[index]


# -- waiting -------------------------------------------------------------------------------------


async def test_wait_for_a_status_already_known_returns_at_once(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    watcher = make(client, ["a"])
    async with watcher:
        await ft.advance(1)
        calls = len(client.calls)
        detail = await watcher.wait_for("a", [R, C])
    assert detail.status == R
    assert len(client.calls) == calls


async def test_wait_for_an_unknown_id_adds_and_polls_it(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R, "new": W})
    watcher = make(client, ["a"])
    async with watcher:
        await ft.advance(3)
        wait = asyncio.create_task(watcher.wait_for("new", R, timeout=100))
        await ft.advance(1)
        assert client.times("new") == [3]  # polled at once, not at its next slot
        client.statuses["new"] = R
        await ft.run_until(wait)
        detail = wait.result()
    assert detail.status == R
    assert client.times("new")[1] - 3 < 25  # then it joins the rotation
    assert "new" in watcher.ids


async def test_wait_for_works_when_the_watcher_is_not_running(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W, "other": W})
    watcher = make(client, ["a", "other"])
    before = asyncio.all_tasks()
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    stream = watcher.changes()
    wait = asyncio.create_task(watcher.wait_for("a", R))
    await ft.advance(25)
    client.statuses["a"] = R
    await ft.advance(10)
    detail = await wait
    assert detail.status == R
    times = client.times("a")
    assert times[0] == 0  # at once, then every interval at its slot
    assert [b - a for a, b in itertools.pairwise(times[1:])] == [10] * (len(times) - 2)
    assert client.count("other") == 0  # only the awaited id is polled
    assert asyncio.all_tasks() - {wait} == before  # nothing left running
    # Callbacks and streams get the changes the wait saw, delivered before it returned.
    assert [c.current for c in seen] == [W, R]
    assert [c.current async for c in _take(stream, 2)] == [W, R]


async def test_wait_for_fails_on_a_failing_status(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": F})
    client.script("a", W, D)
    watcher = make(client, ["a"])
    async with watcher:
        wait = asyncio.create_task(watcher.wait_for("a", R))
        await ft.advance(30)
        with pytest.raises(WaitFailedError) as caught:
            await wait
    error = caught.value
    assert error.history == (W, D, F)
    assert error.last_detail == InstanceDetail(id="a", status=F)
    assert error.instance_id == "a"
    assert "Failed" in str(error) and "Running" in str(error)


async def test_wait_for_a_terminal_status_does_not_fail_on_it(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": C})
    client.script("a", R)
    watcher = make(client, ["a"])
    wait = asyncio.create_task(watcher.wait_for("a", C, fail_on=[C, F, T]))
    await ft.advance(15)
    assert (await wait).status == C


async def test_wait_for_times_out_with_what_it_saw(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": D})
    client.script("a", W)
    watcher = make(client, ["a"])
    wait = asyncio.create_task(watcher.wait_for("a", R, timeout=25))
    await ft.advance(24)
    assert not wait.done()
    await ft.advance(2)
    with pytest.raises(WaitTimeoutError) as caught:
        await wait
    assert caught.value.history == (W, D)
    assert caught.value.last_detail == InstanceDetail(id="a", status=D)


async def test_wait_for_with_no_fail_statuses_waits_through_terminal_ones(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    client.script("a", C, C)
    watcher = make(client, ["a"])
    wait = asyncio.create_task(watcher.wait_for("a", R, fail_on=()))
    await ft.advance(25)
    assert (await wait).status == R  # a waited id is polled even while terminal


async def test_a_stale_failing_status_is_checked_before_failing(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": C})
    watcher = make(client, ["a"])
    async with watcher:
        await ft.advance(1)
    client.statuses["a"] = R  # restarted while nobody was looking
    wait = asyncio.create_task(watcher.wait_for("a", R))
    await ft.advance(1)
    assert (await wait).status == R


async def test_wait_for_an_id_that_is_gone_raises_instance_gone(ft: FakeTime) -> None:
    client = FakeClient(ft, {"x": invalid("x")})
    watcher = make(client, [], gone_after=2)
    wait = asyncio.create_task(watcher.wait_for("x", R))
    await ft.advance(30)
    with pytest.raises(InstanceGoneError):
        await wait


async def test_removing_a_waited_id_ends_the_wait(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W})
    watcher = make(client, ["a"])
    wait = asyncio.create_task(watcher.wait_for("a", R))
    await ft.advance(5)
    watcher.remove("a")
    with pytest.raises(WaitFailedError, match="removed"):
        await wait


async def test_cancelling_a_wait_leaves_nothing_behind(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W}, latency=3)
    watcher = make(client, ["a"])
    before = asyncio.all_tasks()
    wait = asyncio.create_task(watcher.wait_for("a", R, timeout=50))
    await ft.advance(1)
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait
    assert asyncio.all_tasks() == before


async def test_wait_all_gives_each_id_its_own_outcome(ft: FakeTime) -> None:
    client = FakeClient(ft, {"ok": R, "fails": F, "slow": W, "gone": invalid("gone"), "later": R})
    client.script("later", W, D)
    watcher = make(client, ["ok"], gone_after=1)
    errors: list[Exception] = []
    watcher.on_error(lambda i, e: errors.append(e))
    async with watcher:
        await ft.advance(1)
        task = asyncio.create_task(
            watcher.wait_all(
                ["ok", "fails", "bad id", "slow", "gone", "later", "ok"], R, timeout=60
            )
        )
        await ft.run_until(task)
    results = task.result()
    assert list(results) == ["ok", "fails", "bad id", "slow", "gone", "later"]
    assert isinstance(results["ok"], InstanceDetail) and results["ok"].status == R
    assert isinstance(results["later"], InstanceDetail)
    assert isinstance(results["fails"], WaitFailedError)
    assert isinstance(results["bad id"], InvalidInstanceIdError)
    assert isinstance(results["slow"], WaitTimeoutError)
    assert isinstance(results["gone"], InstanceGoneError)
    # Ids the wait added were polled at their slots, spread out, not all at once.
    firsts = sorted(client.times(i)[0] for i in ("fails", "slow", "gone", "later"))
    assert len(set(firsts)) == 4


async def test_wait_all_with_bad_arguments_raises_before_waiting(ft: FakeTime) -> None:
    watcher = make(FakeClient(ft, {"a": R}), ["a"])
    with pytest.raises(ValueError):
        await watcher.wait_all(["a"], [])
    with pytest.raises(ValueError):
        await watcher.wait_for("a", R, timeout=-1)


WATCHER_MODULES = [
    "watcher.py",
    "_schedule.py",
    "_rotation.py",
    "_delivery.py",
    "_waits.py",
    "_checkpoint.py",
    "_lifecycle.py",
    "_tracker.py",
]


@pytest.mark.parametrize("module", WATCHER_MODULES)
def test_the_watcher_modules_reach_the_platform_only_through_the_client(module: str) -> None:
    path = Path(watcher_module.__file__).parent / module
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = list(ast.walk(tree))
    imported = [alias.name for n in nodes if isinstance(n, ast.Import) for alias in n.names]
    imported += [n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module]
    assert not any(name.split(".")[0] == "aiohttp" for name in imported)
    assert not any(name.startswith("aiocontainer.client") for name in imported)
    # Nothing imports the facade back: the pieces stand below it.
    assert module == "watcher.py" or "aiocontainer.watcher" not in imported


# -- edges ---------------------------------------------------------------------------------------


async def test_stop_cuts_short_the_final_delivery_of_a_natural_end(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": C})
    watcher = make(client, ["a"], stop_when_all_terminal=True, drain_timeout=0.01)
    never = asyncio.Event()

    async def stuck(change: StatusChange) -> None:
        await never.wait()

    watcher.on_change(stuck)
    task = asyncio.create_task(watcher.run())
    await ft.advance(100)
    assert not task.done()  # all terminal, but the change is not delivered yet
    watcher.stop()
    await ft.advance(0.009)
    assert not task.done()  # stop() leaves it drain_timeout on the watcher's clock
    await ft.advance(0.001)
    assert task.done() and not watcher.running


async def test_changes_survive_a_stop_with_no_drain_time(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    watcher = make(client, ["a"], drain_timeout=0)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    task = asyncio.create_task(watcher.run())
    await settle(3)
    watcher.stop()
    await task
    async with watcher:
        await settle()
    assert summary(seen) == [("a", None, R, 1)]


async def test_an_empty_watcher_waits_for_ids(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    watcher = make(client)
    async with watcher:
        await ft.advance(30)
        watcher.add("a")
        await ft.advance(25)
    assert client.times("a") == [30, 40, 50]


async def test_a_slow_error_callback_loses_the_oldest_errors_with_a_log(
    ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(ft, {"a": TransportError("down", instance_id="a")})
    watcher = make(client, ["a"], queue_size=1, max_backoff=1, drain_timeout=0)
    never = asyncio.Event()

    async def stuck(instance_id: str | None, exc: Exception) -> None:
        await never.wait()

    watcher.on_error(stuck)
    with caplog.at_level(logging.WARNING, logger="aiocontainer"):
        async with watcher:
            await ft.advance(30)
    assert any("fell behind" in r.getMessage() for r in caplog.records)


async def test_a_wait_goes_on_polling_after_the_watcher_stops(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": W, "b": W})
    watcher = make(client, ["a", "b"], drain_timeout=0)
    async with watcher:
        await ft.advance(1)
        wait = asyncio.create_task(watcher.wait_for("a", R))
        await ft.advance(10)
    calls_b = client.count("b")
    client.statuses["a"] = R
    await ft.run_until(wait)
    assert wait.result().status == R
    assert client.count("b") == calls_b  # only the awaited id was polled after the stop


async def test_a_blocked_loop_does_not_cause_a_burst_of_catch_up_polls(ft: FakeTime) -> None:
    ids = [f"i{n}" for n in range(10)]
    client = FakeClient(ft, dict.fromkeys(ids, R))
    watcher = make(client, ids)
    async with watcher:
        await ft.advance(5)
        ft.now += 1000  # as if the loop had been blocked for a long time
        calls = len(client.calls)
        await ft.advance(5)
        assert len(client.calls) - calls <= 7  # about half a round, not a hundred rounds
        await ft.advance(10)
    assert all(client.count(i) >= 2 for i in ids)


def test_the_interval_is_visible() -> None:
    assert InstanceWatcher(FakeClient(FakeTime()), interval=2).interval == 2.0


async def test_errors_during_a_wait_reach_on_error_without_a_run(ft: FakeTime) -> None:
    client = FakeClient(ft, {"a": R})
    client.script("a", TransportError("refused", instance_id="a"))
    watcher = make(client, ["a"])
    errors: list[tuple[str | None, Exception]] = []

    async def complain(instance_id: str | None, exc: Exception) -> None:
        errors.append((instance_id, exc))

    watcher.on_error(complain)
    before = asyncio.all_tasks()
    wait = asyncio.create_task(watcher.wait_for("a", R))
    await ft.run_until(wait)
    assert wait.result().status == R
    assert [(i, str(e)) for i, e in errors] == [("a", "refused")]
    assert asyncio.all_tasks() - {wait} == before
