"""Slots: the counting semaphore of the lookup paths, cheaper than ``asyncio.Semaphore``.

Every lookup passes two of them (the watcher's and the transport's), and nearly always finds a
slot free. ``asyncio.Semaphore`` spends seven Python calls on that case (its ``async with``,
``acquire``, ``locked`` with a generator, ``release``, its wake-up); here it is one call to take
and one to give back.

Rule 1: first come, first served: a slot given back goes straight to the longest waiter, so a
        task that asks later never takes it first.
Rule 2: a waiter cancelled after it was handed a slot passes the slot on; a cancelled task never
        keeps one.
Rule 3: slots are free only when nobody waits, so taking a free slot is one test (``take_now``).
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Slots"]


class Slots:
    """``count`` slots; ``take_now()`` or ``await take()``, then ``give()`` back once."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, count: int) -> None:
        self._free = count
        # Waiters in arrival order. A cancelled one stays until ``give`` passes over it.
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Slots nobody holds."""
        return self._free

    def take_now(self) -> bool:
        """Take a slot if one is free (then nobody waits: Rule 3); False if none is."""
        if self._free:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Take a slot, waiting behind those who asked before."""
        if self.take_now():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot as the task was cancelled: the next waiter gets it
            raise

    def give(self) -> None:
        """Give a slot back: to the longest live waiter, else to the free ones."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
