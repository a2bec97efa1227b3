"""The rotation's loop on an injected clock: how polls start when the loop has fallen behind."""

from __future__ import annotations

import asyncio
import itertools

from aiocontainer._rotation import Rotation
from aiocontainer._schedule import SchedulePolicy, catch_up_group


def behind_rotation(ids: int, interval: float, step: float) -> tuple[Rotation[str], list[str]]:
    """A rotation whose clock moves ``step`` seconds at every reading, faster than its slots."""
    readings = itertools.count()
    fetched: list[str] = []

    async def fetch(instance_id: str) -> str:
        fetched.append(instance_id)
        return instance_id

    async def no_sleep(delay: float) -> None:
        raise AssertionError(f"a rotation that is behind never waits ({delay} s asked)")

    rotation: Rotation[str] = Rotation(
        SchedulePolicy(interval=interval, jitter=0.0),
        clock=lambda: next(readings) * step,
        sleep=no_sleep,
        rand=lambda: 0.0,
        fetch=fetch,
        apply=lambda entry, outcome: None,
        wanted=lambda entry: True,
        tick=lambda: None,
    )
    rotation.add([f"{n:032x}" for n in range(ids)], lambda instance_id: None)
    return rotation, fetched


async def run_counting_yields(rotation: Rotation[str], fetched: list[str], polls: int) -> int:
    """Run ``rotation`` until ``polls`` polls ran; the loop iterations another task saw."""
    seen = 0

    async def other_task() -> None:
        nonlocal seen
        while True:
            seen += 1
            await asyncio.sleep(0)

    other = asyncio.ensure_future(other_task())
    rotation.ensure()
    try:
        while len(fetched) < polls:
            await asyncio.sleep(0)
        return seen
    finally:
        await rotation.halt()
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)


async def test_a_rotation_behind_starts_a_tick_of_slots_per_loop_iteration() -> None:
    # 1,000 ids every second: slots 1 ms apart, five to a 5 ms tick; the clock moves 3 ms at each
    # reading (two readings a slot), so every slot is already past when the loop reaches it.
    rotation, fetched = behind_rotation(1_000, 1.0, 0.003)
    group = catch_up_group(1.0 / 1_000)
    assert group == 5
    seen = await run_counting_yields(rotation, fetched, 500)
    # One yield per group: other tasks still run between groups, about 100 times for 500 polls
    # (one yield per slot would have given them about 500).
    assert 500 // group - 2 <= seen <= 500 // group + 2, seen
    assert len(set(fetched)) == len(fetched)  # each id once: no slot started twice


async def test_a_rotation_behind_with_slots_far_apart_yields_at_every_slot() -> None:
    rotation, fetched = behind_rotation(100, 5.0, 0.2)  # 50 ms slots, the clock 200 ms a reading
    assert catch_up_group(5.0 / 100) == 1
    seen = await run_counting_yields(rotation, fetched, 60)
    assert 58 <= seen <= 62, seen


async def test_a_poll_that_ends_in_any_way_leaves_its_entry_free_and_nothing_kept() -> None:
    applied: list[str] = []
    release = asyncio.Event()

    async def fetch(instance_id: str) -> str:
        await release.wait()
        return instance_id

    rotation: Rotation[str] = Rotation(
        SchedulePolicy(interval=1.0, jitter=0.0),
        clock=lambda: 0.0,
        sleep=asyncio.sleep,
        rand=lambda: 0.0,
        fetch=fetch,
        apply=lambda entry, outcome: applied.append(outcome),
        wanted=lambda entry: True,
        tick=lambda: None,
    )
    done, cancelled_early, cancelled_late = rotation.add(["a", "b", "c"], lambda i: None)
    for entry in (done, cancelled_early, cancelled_late):
        rotation.launch(entry)
    assert all(entry.poll is not None for entry in (done, cancelled_early, cancelled_late))
    # One poll is cancelled before its body ever ran, one while it waits for its answer.
    assert isinstance(cancelled_early.poll, asyncio.Task)
    cancelled_early.poll.cancel()
    await asyncio.sleep(0)
    assert isinstance(cancelled_late.poll, asyncio.Task)
    cancelled_late.poll.cancel()
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert applied == ["a"]
    assert (done.poll, cancelled_early.poll, cancelled_late.poll) == (None, None, None)
    assert not rotation._polls  # each ended poll left the map of polls in flight
    await rotation.halt()  # no poll is left to cancel or wait for
