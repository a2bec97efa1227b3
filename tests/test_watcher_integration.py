"""InstanceWatcher with the real ContainerClient against the embedded simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from aiocontainer import _paging
from aiocontainer import watcher as watcher_module
from aiocontainer.client import ContainerClient
from aiocontainer.errors import InstanceGoneError, WaitFailedError, WaitTimeoutError
from aiocontainer.models import InstanceDetail, InstanceStatus, StatusChange
from aiocontainer.simulator import DEFAULT_FAULT_MIX, Simulator
from aiocontainer.watcher import InstanceWatcher
from tests.conftest import eventually
from tests.test_detail_cache import counting_builds

W, D, R = "Waiting", "Deploying", "Running"
C, F, T = "Completed", "Failed", "Terminated"
WATCHER_FILES = ("watcher.py", "_tracker.py", "_rotation.py", "_delivery.py", "_waits.py")


def watcher_tasks() -> set[asyncio.Task[Any]]:
    """Running tasks whose code lives in the watcher or the pieces it starts."""
    package = os.path.dirname(watcher_module.__file__)
    files = {os.path.join(package, name) for name in WATCHER_FILES}
    found = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and code.co_filename in files:
            found.add(task)
    return found


def client_for(sim: Simulator, **options: Any) -> ContainerClient:
    options.setdefault("backoff_factor", 0.01)
    options.setdefault("backoff_max", 0.05)
    options.setdefault("timeout", 2.0)
    return ContainerClient(sim.base_url, token=sim.token, **options)


@pytest.fixture
async def small_sim() -> AsyncIterator[Simulator]:
    async with Simulator(instances=4, seed=7, frozen=True, include_seed_instance=False) as sim:
        yield sim


def next_stop(schedules: Sequence[Sequence[float]], now: float, *, cap: float) -> float | None:
    """A moment after ``now`` by which some instance has moved on but none has moved twice."""
    upcoming = [[t for t in times if t > now] for times in schedules]
    firsts = [u[0] for u in upcoming if u]
    if not firsts:
        return None
    seconds = [u[1] for u in upcoming if len(u) > 1]
    limit = min(seconds) if seconds else max(firsts) + 1.0
    return max(min(firsts), min(limit - 0.001, now + cap))


CAN_LIST = hasattr(ContainerClient, "list_page")


@pytest.mark.parametrize(
    ("sweep", "rate"),
    [
        ("detail", 0.2),
        pytest.param(
            "list", 0.3, marks=pytest.mark.skipif(not CAN_LIST, reason="the client cannot list")
        ),
    ],
)
async def test_two_hundred_lifecycles_under_faults(sweep: str, rate: float) -> None:
    async with Simulator(
        instances=200,
        seed=11,
        frozen=True,
        fault_rate=rate,
        fault_kinds=DEFAULT_FAULT_MIX,  # every kind but "hang" and "slow"
        retry_after=0,
        include_seed_instance=False,
    ) as sim:
        ids = sim.instance_ids
        schedules = [[t for _, t in sim.schedule(i)[1:]] for i in ids]
        async with client_for(sim, concurrency=32) as client:
            watcher = InstanceWatcher(
                client, ids, interval=0.25, stop_when_all_terminal=True, sweep=sweep
            )
            changes: dict[str, list[StatusChange]] = defaultdict(list)
            errors: list[Exception] = []
            watcher.on_change(lambda change: changes[change.instance_id].append(change))
            watcher.on_error(lambda instance_id, exc: errors.append(exc))

            def caught_up() -> bool:
                # The watcher has seen where every instance is now, so the next move is visible.
                snapshot = watcher.snapshot()
                return all(i in snapshot and snapshot[i].status == sim.status(i) for i in ids)

            run = asyncio.create_task(watcher.run())
            await eventually(caught_up, what="the first observations")
            steps = 0
            while (stop := next_stop(schedules, sim.sim_time, cap=60.0)) is not None:
                sim.advance(stop - sim.sim_time)
                steps += 1
                await eventually(caught_up, what=f"step {steps}")
            await asyncio.wait_for(run, 10)

        assert all(sim.status(i) in InstanceStatus.TERMINAL for i in ids)
        for instance_id in ids:
            history = sim.history(instance_id)
            expected = list(zip([None, *history[:-1]], history, strict=True))
            got = changes[instance_id]
            assert [(c.previous, c.current) for c in got] == expected, instance_id
            assert [c.seq for c in got] == list(range(1, len(history) + 1))
            assert all(c.skipped == () for c in got)
        assert sum(sim.stats["faults"].values()) > 100  # the faults were real
        assert not watcher_tasks()


async def test_wait_for_reaches_fails_and_times_out(small_sim: Simulator) -> None:
    sim = small_sim
    first, second, third, _ = sim.instance_ids
    async with client_for(sim) as client:
        watcher = InstanceWatcher(client, [], interval=0.05)

        async def later(instance_id: str, *statuses: str) -> None:
            for status in statuses:
                await asyncio.sleep(0.15)
                sim.set_status(instance_id, status)

        movers = [
            asyncio.create_task(later(first, D, R)),
            asyncio.create_task(later(second, D, F)),
        ]
        reached = await watcher.wait_for(first, R, timeout=10)
        assert reached.status == R and reached.id == first
        with pytest.raises(WaitFailedError) as failed:
            await watcher.wait_for(second, R, timeout=10)
        assert failed.value.history[-1] == F
        assert failed.value.last_detail is not None and failed.value.last_detail.status == F
        with pytest.raises(WaitTimeoutError) as timed_out:
            await watcher.wait_for(third, R, timeout=0.3)
        assert timed_out.value.history == (W,)
        await asyncio.gather(*movers)
        assert set(watcher.ids) == {first, second, third}
        assert not watcher_tasks()


async def test_wait_all_while_running(small_sim: Simulator) -> None:
    sim = small_sim
    ids = sim.instance_ids
    async with client_for(sim) as client:
        watcher = InstanceWatcher(client, ids, interval=0.05)
        async with watcher:
            sim.set_status(ids[0], R)
            sim.set_status(ids[1], C)
            sim.remove_instance(ids[2])
            results = await watcher.wait_all([*ids[:3], "not/valid"], R, timeout=2)
        reached = results[ids[0]]
        assert isinstance(reached, InstanceDetail) and reached.status == R
        assert isinstance(results[ids[1]], WaitFailedError)
        assert isinstance(results[ids[2]], InstanceGoneError)
        assert isinstance(results["not/valid"], ValueError)


async def test_a_restarted_watcher_reports_what_happened_while_it_was_down(
    small_sim: Simulator, tmp_path: Path
) -> None:
    sim = small_sim
    ids = sim.instance_ids
    path = tmp_path / "watch.json"
    async with client_for(sim) as client:
        first = InstanceWatcher(client, ids, interval=0.05, checkpoint=path)
        async with first:
            await eventually(lambda: len(first.snapshot()) == len(ids))
            sim.set_status(ids[0], D)
            await eventually(lambda: first.snapshot()[ids[0]].status == D)

        # Nothing watches: one instance moves on, one moves twice, two stay where they were.
        sim.set_status(ids[0], R)
        sim.set_status(ids[1], D)
        sim.set_status(ids[1], R)

        second = InstanceWatcher(client, ids, interval=0.05, checkpoint=path)
        seen: list[StatusChange] = []
        second.on_change(seen.append)
        async with second:
            await eventually(lambda: len(second.snapshot()) == len(ids))
            await asyncio.sleep(0.2)  # a few more rounds: nothing else may appear
    assert sorted((c.instance_id, c.previous, c.current, c.seq, c.skipped) for c in seen) == sorted(
        [(ids[0], D, R, 3, ()), (ids[1], W, R, 2, (D,))]
    )


async def test_a_slow_callback_does_not_hold_up_polling_or_others(small_sim: Simulator) -> None:
    sim = small_sim
    ids = sim.instance_ids
    before = watcher_tasks()
    async with client_for(sim) as client:
        watcher = InstanceWatcher(client, ids, interval=0.05, drain_timeout=0.05)
        fast: list[StatusChange] = []
        slow_started = asyncio.Event()

        slow_done: list[StatusChange] = []

        async def ten_seconds(change: StatusChange) -> None:
            slow_started.set()
            await asyncio.sleep(10)
            slow_done.append(change)

        def failing(change: StatusChange) -> None:
            raise RuntimeError("callback bug")

        errors: list[tuple[str | None, Exception]] = []
        watcher.on_change(ten_seconds)
        watcher.on_change(failing)
        watcher.on_change(fast.append)
        watcher.on_error(lambda i, e: errors.append((i, e)))

        def last_seen(instance_id: str) -> str | None:
            seen = [c.current for c in fast if c.instance_id == instance_id]
            return seen[-1] if seen else None

        async with watcher:
            await asyncio.wait_for(slow_started.wait(), 5)
            # Each callback has its own queue: the fast one may be a moment behind the slow one.
            await eventually(lambda: all(last_seen(i) == W for i in ids), what="first changes")
            polls = sim.stats["total"]
            for status in (D, R, C):
                sim.set_status(ids[0], status)
                await eventually(lambda: last_seen(ids[0]) == sim.status(ids[0]))
            # Polling goes on while the slow callback still sits on its first change.
            await eventually(lambda: sim.stats["total"] > polls + 3 * len(ids))
            assert not slow_done
            started = time.monotonic()
        assert time.monotonic() - started < 1  # the 10 s callback did not hold up the stop
    assert [c.current for c in fast if c.instance_id == ids[0]] == [W, D, R, C]
    assert sum(1 for _, e in errors if str(e) == "callback bug") == len(fast)
    assert watcher_tasks() == before


async def test_stopping_leaves_no_task_behind_and_the_watcher_starts_again(
    small_sim: Simulator,
) -> None:
    sim = small_sim
    sim.set_latency(0.5)  # every poll is in flight when the stop comes
    ids = sim.instance_ids
    before = watcher_tasks()
    async with client_for(sim) as client:
        watcher = InstanceWatcher(client, ids, interval=30)
        for _ in range(2):
            async with watcher:
                await eventually(lambda: sim.stats["total"] >= 1)
                started = time.monotonic()
            assert time.monotonic() - started < 1
            assert watcher_tasks() == before
            assert not watcher.running
        sim.set_latency(0)
        async with watcher:
            await eventually(lambda: len(watcher.snapshot()) >= 1)
    assert watcher_tasks() == before


async def test_an_instance_the_platform_forgets_is_dropped(small_sim: Simulator) -> None:
    sim = small_sim
    ids = sim.instance_ids
    async with client_for(sim) as client:
        watcher = InstanceWatcher(client, ids, interval=0.05, gone_after=2)
        gone: list[InstanceGoneError] = []

        @watcher.on_error
        def keep_gone(instance_id: str | None, exc: Exception) -> None:
            if isinstance(exc, InstanceGoneError):
                gone.append(exc)

        async with watcher:
            await eventually(lambda: len(watcher.snapshot()) == len(ids))
            sim.remove_instance(ids[0])
            await eventually(lambda: bool(gone))
        assert ids[0] not in watcher.ids
        assert gone[0].instance_id == ids[0]


async def test_answers_that_did_not_change_are_not_read_again(
    small_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detail mode: a frozen instance answers the same bytes, built once; a change is read."""
    built = counting_builds(monkeypatch, _paging)  # with the watcher's cache, built there
    ids = list(small_sim.instance_ids)
    async with client_for(small_sim) as client:
        watcher = InstanceWatcher(client, ids, interval=0.1, terminal_interval=0.1, sweep="detail")
        seen: list[StatusChange] = []
        watcher.on_change(seen.append)
        async with watcher:
            await eventually(
                lambda: small_sim.stats["endpoints"].get("detail", 0) >= 3 * len(ids),
                what="three rounds of polls",
            )
            assert sorted(built) == sorted(ids)
            small_sim.set_status(ids[0], "Failed")
            await eventually(lambda: seen[-1].current == "Failed", what="the change")
    assert seen[-1].instance_id == ids[0] and seen[-1].detail.status == "Failed"
    assert sorted(built) == sorted([*ids, ids[0]])
