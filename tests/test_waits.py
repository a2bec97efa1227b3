"""Wait decisions without futures, and the registry and ``wait_each`` with them."""

from __future__ import annotations

import asyncio

import pytest

from aiocontainer._diff import Snapshot
from aiocontainer._waits import (
    Verdict,
    Waiter,
    WaitRegistry,
    WaitResult,
    verdict,
    wait_each,
    wait_statuses,
)
from aiocontainer.errors import InvalidInstanceIdError, WaitFailedError, WaitTimeoutError
from aiocontainer.models import InstanceDetail
from tests.watcher_fakes import FakeTime, settle

TERMINAL = frozenset({"Completed", "Failed", "Terminated"})


def test_by_default_the_terminal_statuses_not_wanted_fail_a_wait() -> None:
    targets, failing = wait_statuses("Completed", None)
    assert targets == {"Completed"} and failing == TERMINAL - {"Completed"}


def test_a_wanted_status_never_fails_a_wait() -> None:
    targets, failing = wait_statuses(("Running", "Failed"), ("Failed", "Terminated"))
    assert targets == {"Running", "Failed"} and failing == {"Terminated"}


def test_no_fail_statuses_may_be_asked_for() -> None:
    assert wait_statuses("Running", ())[1] == frozenset()


@pytest.mark.parametrize(
    ("status", "expected"),
    [("Running", Verdict.REACHED), ("Failed", Verdict.FAILED), ("Waiting", Verdict.PENDING)],
)
def test_verdict(status: str, expected: Verdict) -> None:
    assert verdict(status, targets=frozenset({"Running"}), failing=TERMINAL) is expected


async def test_a_waiter_keeps_its_history_and_ends_once() -> None:
    known = Snapshot(status="Waiting", seq=1)
    waiter = Waiter("a", targets=frozenset({"Running"}), fail_on=TERMINAL, known=known)
    for status in ("Waiting", "Deploying", "Failed", "Running"):
        waiter.observe(InstanceDetail(id="a", status=status))
    result = waiter.outcome.result()
    assert isinstance(result, WaitFailedError)  # the first outcome stands
    assert tuple(result.history) == ("Waiting", "Deploying", "Failed")


async def test_a_waiter_times_out_on_the_injected_sleep() -> None:
    ft = FakeTime()
    waiter = Waiter("a", targets=frozenset({"Running"}), fail_on=TERMINAL, known=None)
    task = asyncio.create_task(waiter.result(timeout=30, sleep=ft.sleep))
    await ft.advance(29.9)
    assert not task.done()
    await ft.advance(0.1)
    assert isinstance(task.result(), WaitTimeoutError)


async def test_the_registry_counts_and_ends_waits_per_id() -> None:
    registry = WaitRegistry()
    a1 = Waiter("a", targets=frozenset({"Running"}), fail_on=TERMINAL, known=None)
    a2 = Waiter("a", targets=frozenset({"Running"}), fail_on=TERMINAL, known=None)
    b = Waiter("b", targets=frozenset({"Running"}), fail_on=TERMINAL, known=None)
    for waiter in (a1, a2, b):
        registry.add(waiter)
    assert len(registry) == 3 and "a" in registry and "c" not in registry
    registry.end("a", why="was removed from the watch")
    assert all(isinstance(w.outcome.result(), WaitFailedError) for w in (a1, a2))
    assert not b.outcome.done()
    for waiter in (a1, a2, a1):  # discarding twice is harmless
        registry.discard(waiter)
    assert len(registry) == 1 and "a" not in registry


async def test_wait_each_keeps_order_and_gives_bad_ids_their_error() -> None:
    started: list[str] = []

    async def wait(instance_id: str) -> WaitResult:
        started.append(instance_id)
        await settle(2)
        return InstanceDetail(id=instance_id, status="Running")

    results = await wait_each(["b", "a/b", "a", "b"], wait)
    assert list(results) == ["b", "a/b", "a"]
    assert isinstance(results["a/b"], InvalidInstanceIdError)
    assert started == ["b", "a"]
