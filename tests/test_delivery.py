"""Delivery on its own: one filter, one drop-oldest rule, outboxes, streams and the drain."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest

from aiocontainer._delivery import (
    ChangeFilter,
    ChangeStream,
    Delivery,
    Outbox,
    drop_oldest,
    status_set,
)
from aiocontainer.errors import ChangesDroppedError
from aiocontainer.models import InstanceDetail, StatusChange
from tests.watcher_fakes import FakeTime, settle

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def change(seq: int, previous: str | None = "Waiting", current: str = "Running") -> StatusChange:
    detail = InstanceDetail(id="a", status=current)
    return StatusChange(
        instance_id="a", previous=previous, current=current, detail=detail, observed_at=AT, seq=seq
    )


# -- pure rules ----------------------------------------------------------------------------------


def test_drop_oldest_makes_room_only_when_full() -> None:
    items = deque([1, 2])
    assert drop_oldest(items, 3) is None and list(items) == [1, 2]
    assert drop_oldest(items, 2) == 1 and list(items) == [2]


@pytest.mark.parametrize(
    ("to", "from_", "previous", "current", "wanted"),
    [
        (None, None, None, "Running", True),
        ("Running", None, "Waiting", "Running", True),
        (("Failed", "Completed"), None, "Waiting", "Running", False),
        (None, "Waiting", "Waiting", "Running", True),
        (None, "Waiting", None, "Running", False),  # a first observation comes from nowhere
        ("Running", "Deploying", "Waiting", "Running", False),
    ],
)
def test_one_filter_for_callbacks_and_streams(
    to: str | tuple[str, ...] | None,
    from_: str | None,
    previous: str | None,
    current: str,
    wanted: bool,
) -> None:
    assert ChangeFilter.from_options(to, from_).matches(change(1, previous, current)) is wanted


@pytest.mark.parametrize(("value", "error"), [((), ValueError), ([1], TypeError)])
def test_bad_status_sets_are_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        status_set(value, name="to")  # type: ignore[arg-type]


# -- outboxes and streams ------------------------------------------------------------------------


async def test_delivery_halted_before_it_began_starts_again() -> None:
    got: list[int] = []

    async def deliver(item: int) -> None:
        got.append(item)

    box = Outbox(deliver, limit=5, on_overflow=got.append, name="test")
    box.put(1, start=True)
    await box.halt()  # cancelled before its first step: its body never ran
    assert got == []
    box.start()
    await settle()
    assert got == [1]


async def test_an_outbox_not_started_keeps_its_items_and_drops_the_oldest() -> None:
    got: list[int] = []
    dropped: list[int] = []

    async def deliver(item: int) -> None:
        got.append(item)

    box = Outbox(deliver, limit=2, on_overflow=dropped.append, name="test")
    for item in (1, 2, 3):
        box.put(item, start=False)
    assert (len(box), dropped, got) == (2, [1], [])
    box.start()
    await settle()
    assert got == [2, 3]


async def test_a_stream_and_a_callback_drop_by_the_same_rule_and_report_it() -> None:
    delivery = Delivery(queue_size=2)
    errors: list[tuple[str | None, Exception]] = []
    delivery.on_error(lambda i, e: errors.append((i, e)))
    got: list[StatusChange] = []
    delivery.subscribe(got.append, ChangeFilter(), limit=2)
    stream = delivery.stream(ChangeFilter(), limit=2)
    for seq in (1, 2, 3):
        delivery.publish(change(seq))
    delivery.start()
    await settle()
    assert [c.seq for c in got] == [2, 3]
    assert [c.seq async for c in _take(stream, 2)] == [2, 3]
    consumers = sorted(e.consumer for _, e in errors if isinstance(e, ChangesDroppedError))
    assert [e.change.seq for _, e in errors if isinstance(e, ChangesDroppedError)] == [1, 1]
    assert consumers[0].startswith("callback") and consumers[1] == "changes() iterator"


async def _take(stream: ChangeStream, count: int) -> AsyncIterator[StatusChange]:
    for _ in range(count):
        yield await stream.__anext__()


async def test_a_raising_callback_is_logged_with_its_traceback_when_nobody_listens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivery = Delivery(queue_size=5)

    def broken(c: StatusChange) -> None:
        raise KeyError("boom")

    delivery.subscribe(broken, ChangeFilter(), limit=5)
    delivery.start()
    with caplog.at_level(logging.WARNING, logger="aiocontainer"):
        delivery.publish(change(1))
        await settle()
    [record] = caplog.records
    assert "instance a" in record.getMessage() and record.exc_info is not None
    assert record.exc_info[0] is KeyError


async def test_a_closed_stream_receives_nothing_more() -> None:
    delivery = Delivery(queue_size=5)
    stream = delivery.stream(ChangeFilter(), limit=5)
    delivery.publish(change(1))
    await stream.aclose()
    delivery.publish(change(2))
    assert delivery.stream_count == 0
    assert [c async for c in stream] == []


# -- the drain, on a fake clock ------------------------------------------------------------------


def stuck_delivery() -> Delivery:
    """A delivery whose one callback never returns, with one change being delivered."""
    delivery = Delivery(queue_size=5)
    never = asyncio.Event()
    delivery.subscribe(lambda c: never.wait(), ChangeFilter(), limit=5)
    delivery.start()
    delivery.publish(change(1))
    return delivery


async def test_the_drain_lasts_drain_timeout_on_the_injected_clock() -> None:
    ft = FakeTime()
    delivery = stuck_delivery()
    await settle()
    drain = asyncio.create_task(delivery.settle(clock=ft.clock, sleep=ft.sleep, drain_timeout=2))
    await ft.advance(1.9)
    assert not drain.done()
    await ft.advance(0.1)
    assert drain.done() and not delivery.busy()


async def test_a_cut_drain_waits_for_all_until_cut_then_drain_timeout() -> None:
    ft = FakeTime()
    delivery = stuck_delivery()
    cut = asyncio.Event()
    drain = asyncio.create_task(
        delivery.settle(clock=ft.clock, sleep=ft.sleep, drain_timeout=2, cut=cut)
    )
    await ft.advance(1000)
    assert not drain.done()  # no deadline until cut
    cut.set()
    await ft.advance(1.5)
    assert not drain.done()
    await ft.advance(0.5)
    assert drain.done()


async def test_a_drain_with_nothing_to_deliver_ends_at_once() -> None:
    ft = FakeTime()
    delivery = Delivery(queue_size=5)
    await asyncio.wait_for(delivery.settle(clock=ft.clock, sleep=ft.sleep, drain_timeout=1000), 1)
