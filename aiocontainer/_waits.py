"""Waiting for a status: what a wait decides at each observation, and the registry of waits.

Rule 1: the decision (``verdict``) is a plain function of the wanted and failing statuses and the
        status seen; futures only carry its outcome.
Rule 2: a wanted status never fails a wait, even when it is terminal.
Rule 3: a wait ends once: the first outcome (reached, failed, timed out, removed, gone) stands.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TypeAlias

from aiocontainer._delivery import Statuses, status_set
from aiocontainer._diff import Snapshot
from aiocontainer._protocol import validate_instance_id
from aiocontainer.errors import (
    AiocontainerError,
    InvalidInstanceIdError,
    WaitFailedError,
    WaitTimeoutError,
)
from aiocontainer.models import InstanceDetail, InstanceStatus

__all__ = [
    "Verdict",
    "WaitRegistry",
    "WaitResult",
    "Waiter",
    "verdict",
    "wait_each",
    "wait_statuses",
]

#: What ``wait_all`` gives per id: the detail once reached, or the error the wait ended with.
WaitResult: TypeAlias = InstanceDetail | AiocontainerError


class Verdict(enum.Enum):
    """What one observation means to a wait."""

    REACHED = "reached"
    FAILED = "failed"
    PENDING = "pending"


def wait_statuses(
    status: Statuses, fail_on: Statuses | None
) -> tuple[frozenset[str], frozenset[str]]:
    """The wanted statuses and the failing ones; a wanted status never fails a wait."""
    targets = status_set(status, name="status")
    assert targets is not None
    if fail_on is None:
        return targets, InstanceStatus.TERMINAL - targets
    failing = status_set(fail_on, name="fail_on", allow_empty=True)
    assert failing is not None
    return targets, failing - targets


def verdict(status: str, *, targets: frozenset[str], failing: frozenset[str]) -> Verdict:
    """Whether seeing ``status`` ends a wait, and how."""
    if status in targets:
        return Verdict.REACHED
    if status in failing:
        return Verdict.FAILED
    return Verdict.PENDING


class Waiter:
    """One pending ``wait_for``: what it waits for, what it has seen, and how it ended."""

    def __init__(
        self,
        instance_id: str,
        *,
        targets: frozenset[str],
        fail_on: frozenset[str],
        known: Snapshot | None,
    ) -> None:
        self.instance_id = instance_id
        self.targets = targets
        self.fail_on = fail_on
        self.last_detail: InstanceDetail | None = None if known is None else known.detail
        self.history: list[str] = [] if known is None else [known.status]
        self.outcome: asyncio.Future[WaitResult] = asyncio.get_running_loop().create_future()

    def observe(self, detail: InstanceDetail) -> None:
        """Record a detail and end the wait if its status decides it."""
        self.last_detail = detail
        if not self.history or self.history[-1] != detail.status:
            self.history.append(detail.status)
        seen = verdict(detail.status, targets=self.targets, failing=self.fail_on)
        if seen is Verdict.REACHED:
            self.end(detail)
        elif seen is Verdict.FAILED:
            self.end(self.error(WaitFailedError, f"reached {detail.status}"))

    def error(self, kind: type[WaitFailedError | WaitTimeoutError], why: str) -> WaitResult:
        """A wait error carrying what was seen."""
        wanted = " or ".join(sorted(self.targets))
        return kind(
            f"instance {self.instance_id} {why} while waiting for {wanted}",
            instance_id=self.instance_id,
            last_detail=self.last_detail,
            history=self.history,
        )

    def end(self, result: WaitResult) -> None:
        """End the wait with ``result`` unless it already ended."""
        if not self.outcome.done():
            self.outcome.set_result(result)

    async def result(
        self, *, timeout: float | None, sleep: Callable[[float], Awaitable[None]]
    ) -> WaitResult:
        """The outcome, or a ``WaitTimeoutError`` after ``timeout`` seconds of ``sleep``."""
        if timeout is None:
            return await self.outcome

        async def expire() -> None:
            await sleep(timeout)
            self.end(self.error(WaitTimeoutError, f"did not get there within {timeout:g}s"))

        timer = asyncio.get_running_loop().create_task(expire())
        try:
            return await self.outcome
        finally:
            timer.cancel()
            await asyncio.gather(timer, return_exceptions=True)


async def wait_each(
    ids: Iterable[str], wait: Callable[[str], Awaitable[WaitResult]]
) -> dict[str, WaitResult]:
    """Run ``wait`` for each valid id at once; ``{id: outcome}`` in first-seen order.

    An invalid id gets its ``InvalidInstanceIdError`` and never ends the others' waits.
    """
    order = list(dict.fromkeys(ids))
    results: dict[str, WaitResult] = {}
    valid: list[str] = []
    for instance_id in order:
        try:
            valid.append(validate_instance_id(instance_id))
        except InvalidInstanceIdError as exc:
            results[instance_id] = exc
    waits = [asyncio.ensure_future(wait(i)) for i in valid]
    try:
        outcomes = await asyncio.gather(*waits)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    results.update(zip(valid, outcomes, strict=True))
    return {instance_id: results[instance_id] for instance_id in order}


class WaitRegistry:
    """The pending waits of one watcher, by instance id."""

    def __init__(self) -> None:
        self._by_id: dict[str, list[Waiter]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._by_id

    def add(self, waiter: Waiter) -> None:
        """Register a pending wait."""
        self._by_id.setdefault(waiter.instance_id, []).append(waiter)
        self._count += 1

    def discard(self, waiter: Waiter) -> None:
        """Forget a wait that has ended."""
        waiting = self._by_id.get(waiter.instance_id)
        if waiting is None or waiter not in waiting:
            return
        waiting.remove(waiter)
        self._count -= 1
        if not waiting:
            del self._by_id[waiter.instance_id]

    def of(self, instance_id: str) -> Iterator[Waiter]:
        """The waits on one id."""
        return iter(tuple(self._by_id.get(instance_id, ())))

    def observe(self, instance_id: str, detail: InstanceDetail) -> None:
        """Show a new detail to every wait on its id."""
        if instance_id not in self._by_id:
            return  # most ids have no wait: the common case costs one lookup
        for waiter in self.of(instance_id):
            waiter.observe(detail)

    def end(self, instance_id: str, result: WaitResult | None = None, *, why: str = "") -> None:
        """End every wait on one id with ``result``, or with a ``WaitFailedError`` saying why."""
        for waiter in self.of(instance_id):
            waiter.end(result if result is not None else waiter.error(WaitFailedError, why))
