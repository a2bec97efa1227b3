"""Slots: the lookup paths' counting semaphore (first come, first served; cancellation safe)."""

from __future__ import annotations

import asyncio

import pytest

from aiocontainer._slots import Slots


def test_free_slots_are_taken_without_waiting_until_none_is_left() -> None:
    slots = Slots(2)
    assert slots.take_now() and slots.take_now()
    assert not slots.take_now()
    assert slots.free == 0
    slots.give()
    assert slots.free == 1


async def test_a_slot_given_back_goes_to_the_longest_waiter_first() -> None:
    slots = Slots(1)
    assert slots.take_now()
    order: list[str] = []

    async def holder(name: str) -> None:
        await slots.take()
        order.append(name)
        await asyncio.sleep(0)
        slots.give()

    tasks = [asyncio.ensure_future(holder(name)) for name in ("first", "second", "third")]
    await asyncio.sleep(0)  # all three wait now
    slots.give()
    # A newcomer after the give must not overtake the waiters: the slot is already handed on.
    assert not slots.take_now()
    await asyncio.gather(*tasks)
    assert order == ["first", "second", "third"]
    assert slots.free == 1


@pytest.mark.parametrize("handed", [False, True], ids=["while waiting", "once handed a slot"])
async def test_a_cancelled_waiter_never_keeps_a_slot(handed: bool) -> None:
    slots = Slots(1)
    assert slots.take_now()
    first = asyncio.ensure_future(slots.take())
    second = asyncio.ensure_future(slots.take())
    await asyncio.sleep(0)  # both wait
    if handed:
        slots.give()  # handed to the first waiter, which has not run yet ...
        first.cancel()  # ... and is cancelled before it resumes: it passes the slot on
    else:
        first.cancel()
        await asyncio.sleep(0)
        slots.give()  # passes over the cancelled waiter to the next one
    await asyncio.wait_for(second, 1)
    assert first.cancelled()
    assert slots.free == 0
    slots.give()
    assert slots.free == 1


async def test_no_more_than_count_hold_a_slot_at_once() -> None:
    slots = Slots(3)
    holding = peak = 0

    async def worker() -> None:
        nonlocal holding, peak
        for _ in range(20):
            if not slots.take_now():
                await slots.take()
            try:
                holding += 1
                peak = max(peak, holding)
                await asyncio.sleep(0)
            finally:
                holding -= 1
                slots.give()

    await asyncio.gather(*(worker() for _ in range(10)))
    assert peak == 3
    assert slots.free == 3
