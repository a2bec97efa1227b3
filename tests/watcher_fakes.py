"""Fakes shared by the watcher's tests: a clock that moves only when told, a scripted client."""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from aiocontainer.errors import InvalidParameterError, ResponseError
from aiocontainer.models import InstanceDetail, StatusChange
from aiocontainer.watcher import InstanceWatcher

W, D, R = "Waiting", "Deploying", "Running"
C, F, T = "Completed", "Failed", "Terminated"


async def settle(rounds: int = 40) -> None:
    """Let every ready task run until the fake clock is the only thing left to move."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeTime:
    """A clock and a sleep that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._sleepers, (self.now + max(delay, 0.0), self._count, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its moment and letting it run."""
        end = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= end:
            when, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self.now = max(self.now, when)
            future.set_result(None)
            await settle()
        self.now = end
        await settle()

    async def run_until(
        self, task: asyncio.Task[Any], *, step: float = 1.0, limit: float = 1e4
    ) -> None:
        """Advance time until ``task`` is done."""
        start = self.now
        while not task.done():
            assert self.now - start < limit, "the task did not finish in fake time"
            await self.advance(step)
            await asyncio.sleep(0.001)  # real time, for work that waits on the real loop clock


Outcome = str | BaseException


class FakeClient:
    """``get_instance`` answers from a script per id, then from a current status."""

    token = "SECRET-TOKEN-never-shown"

    def __init__(
        self,
        time: FakeTime,
        statuses: Mapping[str, Outcome] | None = None,
        *,
        concurrency: int = 32,
        latency: float = 0.0,
    ) -> None:
        self.time = time
        self.statuses: dict[str, Outcome] = dict(statuses or {})
        self.scripts: defaultdict[str, deque[Outcome]] = defaultdict(deque)
        self.calls: list[tuple[float, str]] = []
        self.concurrency = concurrency
        self.latency = latency
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight = 0
        self.max_per_id = 0
        self.cancelled = 0

    def script(self, instance_id: str, *outcomes: Outcome) -> None:
        self.scripts[instance_id].extend(outcomes)

    def times(self, instance_id: str) -> list[float]:
        return [at for at, i in self.calls if i == instance_id]

    def count(self, instance_id: str) -> int:
        return len(self.times(instance_id))

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        self.calls.append((self.time.now, instance_id))
        self.in_flight[instance_id] += 1
        self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        self.max_per_id = max(self.max_per_id, self.in_flight[instance_id])
        try:
            if self.latency:
                await self.time.sleep(self.latency)
            queue = self.scripts[instance_id]
            outcome = queue.popleft() if queue else self.statuses[instance_id]
            if isinstance(outcome, BaseException):
                raise outcome
            return InstanceDetail(id=instance_id, status=outcome)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight[instance_id] -= 1


def make(
    client: FakeClient, ids: Iterable[str] = (), *, interval: float = 10.0, **options: Any
) -> InstanceWatcher:
    options.setdefault("jitter", 0.0)
    return InstanceWatcher(
        client,
        ids,
        interval=interval,
        clock=client.time.clock,
        sleep=client.time.sleep,
        **options,
    )


def summary(changes: Iterable[StatusChange]) -> list[tuple[str, str | None, str, int]]:
    return [(c.instance_id, c.previous, c.current, c.seq) for c in changes]


def invalid(instance_id: str) -> InvalidParameterError:
    return InvalidParameterError("10004", "invalid parameter", instance_id=instance_id)


async def changes_within(
    watcher: InstanceWatcher, time: FakeTime, seconds: float
) -> list[StatusChange]:
    """Run ``watcher`` for ``seconds`` of fake time; the changes it emitted meanwhile."""
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await time.advance(seconds)
    return seen


@attrs.frozen
class FakePage:
    """A list page as the sweep reads it."""

    start: int
    count: int
    details: tuple[InstanceDetail, ...] = ()
    errors: tuple[Exception, ...] = ()
    total: int | None = None


class FakeListClient(FakeClient):
    """A ``FakeClient`` that also lists: pages over its instances in insertion order.

    Ids in ``statuses`` whose outcome is an exception are not listed (they are gone, or exist
    only for detail); ``page_cap`` shortens pages; ``list_script`` queues outcomes of the next
    page requests (an exception to raise, "bad:<id>" to list that id as a bad entry, or "" for
    an answer as usual).
    A listed entry carries ``version="listed"``, a detail ``version="detail"``.
    """

    def __init__(
        self, time: FakeTime, statuses: Mapping[str, Outcome] | None = None, *, page_cap: int = 100
    ) -> None:
        super().__init__(time, statuses)
        self.page_cap = page_cap
        self.list_calls: list[tuple[float, int, int]] = []
        self.list_script: deque[BaseException | str] = deque()

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        detail = await super().get_instance(instance_id)
        return attrs.evolve(detail, version="detail")

    async def list_page(self, *, start: int, limit: int, cache: object = None) -> FakePage:
        self.list_calls.append((self.time.now, start, limit))
        bad = None
        if self.list_script:
            outcome = self.list_script.popleft()
            if isinstance(outcome, BaseException):
                raise outcome
            bad = outcome.removeprefix("bad:")
        listed = [(i, s) for i, s in self.statuses.items() if isinstance(s, str)]
        window = listed[start : start + min(limit, self.page_cap)]
        details = tuple(
            InstanceDetail(id=i, status=s, version="listed") for i, s in window if i != bad
        )
        errors: tuple[Exception, ...] = ()
        if bad is not None and any(i == bad for i, _ in window):
            errors = (ResponseError("entry 0 has no status", instance_id=bad),)
        return FakePage(start=start, count=len(window), details=details, errors=errors)

    def detail_calls(self) -> int:
        return len(self.calls)
