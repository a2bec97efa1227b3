"""The rotation: the watched ids visited one slot at a time, and the polls it starts.

Rule 1: each slot lasts ``interval / len(ids)`` seconds (plus up to ``jitter`` of a slot), so every
        id is visited once per interval and N polls are spread evenly over it. Slots less than
        ``COALESCE`` apart start in one loop iteration; so do slots already past, one
        ``COALESCE`` worth at a time, when the loop has fallen behind.
Rule 2: per id, at most one poll is in flight; its outcome is handed back as soon as it completes.
Rule 3: adding, removing or moving an id costs O(1): a moved or removed id leaves its old place
        behind as a stale place that the loop skips without using a slot, and the queue is
        compacted when stale places outnumber live ones.
Rule 4: time is read only through the injected ``clock`` and ``sleep``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from aiocontainer._diff import Snapshot
from aiocontainer._schedule import (
    COALESCE,
    Entry,
    SchedulePolicy,
    catch_up_group,
    is_due,
    next_slot,
)

__all__ = ["Rotation"]

_O = TypeVar("_O")


class Rotation(Generic[_O]):
    """The watched entries in visiting order, with the loop that visits them and starts polls."""

    def __init__(
        self,
        policy: SchedulePolicy,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rand: Callable[[], float],
        fetch: Callable[[str], Awaitable[_O]],
        apply: Callable[[Entry, _O], None],
        wanted: Callable[[Entry], bool],
        tick: Callable[[], None],
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._fetch = fetch
        self._apply = apply
        self._wanted = wanted
        self._tick = tick
        #: The watched entries by id, in the order they were added.
        self.entries: dict[str, Entry] = {}
        self._order: deque[tuple[Entry, int]] = deque()
        self._stale = 0
        # Slots started since the loop last yielded while it was behind (see ``_sleep_until``).
        self._unyielded = 0
        # The polls in flight, each with its entry (read back by one shared done callback).
        self._polls: dict[asyncio.Task[None], Entry] = {}
        self._task: asyncio.Task[None] | None = None
        self._added = asyncio.Event()
        # Cleared while another way of observing (a list sweep) stands in for the rotation.
        self._active = asyncio.Event()
        self._active.set()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def places(self) -> int:
        """Places in the visiting queue, stale ones included (bounded by twice the entries)."""
        return len(self._order)

    # -- what is in it -------------------------------------------------------------------------

    def add(self, ids: Iterable[str], known: Callable[[str], Snapshot | None]) -> list[Entry]:
        """Add the ids not yet in the rotation at its front, so their first poll comes soon."""
        fresh = [Entry(i, known(i)) for i in dict.fromkeys(ids) if i not in self.entries]
        for entry in fresh:
            self.entries[entry.instance_id] = entry
        self._order.extendleft((entry, entry.place) for entry in reversed(fresh))
        if fresh:
            self._added.set()
        return fresh

    def discard(self, entry: Entry) -> None:
        """Take ``entry`` out; its place in the queue goes stale."""
        if self.entries.get(entry.instance_id) is entry:
            del self.entries[entry.instance_id]
            self._leave(entry)

    def move(self, entry: Entry, *, front: bool) -> None:
        """Give ``entry`` a new place at the front (next slot) or the back (about one interval)."""
        self._leave(entry)
        if front:
            self._order.appendleft((entry, entry.place))
        else:
            self._order.append((entry, entry.place))

    def _leave(self, entry: Entry) -> None:
        entry.place += 1
        self._stale += 1
        if self._stale > max(len(self.entries), 64):
            self._order = deque(item for item in self._order if self._live(item))
            self._stale = 0

    def _live(self, item: tuple[Entry, int]) -> bool:
        entry, place = item
        return entry.place == place and self.entries.get(entry.instance_id) is entry

    def _next(self) -> Entry | None:
        """The entry of the next live place, which goes to the back; None when there is none."""
        while self._order:
            item = self._order.popleft()
            if self._live(item):
                self._order.append(item)
                return item[0]
            self._stale -= 1
        return None

    # -- polls ---------------------------------------------------------------------------------

    def poll_soon(self, entry: Entry, *, now: bool) -> None:
        """Poll ``entry`` at once (``now``) or at the next slot, whatever its resting state."""
        entry.rest = 0
        if entry.poll is None:
            if now:
                self.launch(entry)
            # The back of the rotation is about one interval away: the next regular poll.
            self.move(entry, front=not now)
        self.ensure()

    def launch(self, entry: Entry) -> None:
        """Start a poll of ``entry`` now."""
        task = asyncio.get_running_loop().create_task(self._poll(entry))
        entry.poll = task
        self._polls[task] = entry
        task.add_done_callback(self._poll_done)

    def _poll_done(self, task: asyncio.Task[None]) -> None:
        # Also reached by a poll cancelled before it started, whose body never ran.
        entry = self._polls.pop(task)
        if entry.poll is task:
            entry.poll = None

    async def _poll(self, entry: Entry) -> None:
        try:
            outcome = await self._fetch(entry.instance_id)
        finally:
            # Cleared here, not only when the task is done, so the next slot may poll again.
            if entry.poll is asyncio.current_task():
                entry.poll = None
        if self.entries.get(entry.instance_id) is entry:  # not removed while in flight
            self._apply(entry, outcome)

    # -- the loop ------------------------------------------------------------------------------

    def pause(self, paused: bool) -> None:
        """Stop visiting (``True``) while something else observes the entries, or go on."""
        if paused:
            self._active.clear()
        else:
            self._active.set()

    def ensure(self) -> None:
        """Start the loop unless it runs."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="aiocontainer-watcher-schedule"
            )

    async def halt(self) -> None:
        """Cancel the loop and every poll in flight, and wait until they are gone."""
        tasks = [t for t in (self._task, *self._polls) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        slot_at = self._clock()
        idle_visits = 0
        while True:
            if not self._active.is_set():
                await self._active.wait()
                slot_at = self._clock()
            entry = self._next()
            if entry is None:
                self._added.clear()
                await self._added.wait()
                slot_at = self._clock()
                continue
            count = len(self.entries)
            spacing = self.policy.interval / count
            idle_visits += 1
            if self._wanted(entry):
                jitter = self.policy.jitter * spacing * self._rand()
                await self._sleep_until(slot_at + jitter, group=catch_up_group(spacing))
                # Decided at the slot itself: a poll may have ended or the id gone meanwhile.
                if self.entries.get(entry.instance_id) is entry and is_due(
                    entry, wanted=self._wanted(entry)
                ):
                    self.launch(entry)
                idle_visits = 0
            elif idle_visits >= count:
                # A whole round had nothing to poll: wait out its time instead of spinning.
                await self._sleep_until(slot_at)  # a past slot yields at once (a group of 1)
                idle_visits = 0
            slot_at = next_slot(slot_at, spacing, now=self._clock(), interval=self.policy.interval)
            self._tick()

    async def _sleep_until(self, when: float, *, group: int = 1) -> None:
        """Wait for ``when``; one that is past yields once per ``group`` such calls."""
        delay = when - self._clock()
        if delay > COALESCE:
            self._unyielded = 0
            await self._sleep(delay)
        elif delay <= 0:
            # Behind: the slots already past start in groups of one tick's worth, and the loop
            # yields once per group so that other tasks run. One yield per slot would cost a loop
            # iteration per poll, and keep a busy rotation behind for good.
            self._unyielded += 1
            if self._unyielded >= group:
                self._unyielded = 0
                await asyncio.sleep(0)
        # Otherwise the slot is due within COALESCE: it starts now with the others of this
        # tick. Thousands of ids give slots a fraction of a millisecond apart, and a timer per
        # slot would cost more than the polls gain from exact spacing.
