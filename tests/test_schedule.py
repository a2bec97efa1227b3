"""The per-instance decisions, without an event loop, and the rotation's bookkeeping."""

from __future__ import annotations

import pytest

from aiocontainer._diff import Snapshot
from aiocontainer._schedule import (
    COALESCE,
    Entry,
    SchedulePolicy,
    after_failure,
    after_success,
    catch_up_group,
    is_due,
    next_slot,
)


def visits_until_due(entry: Entry, *, limit: int = 100) -> int:
    """How many visits pass before ``entry`` is polled (0: at the first visit)."""
    for visit in range(limit):
        if is_due(entry, wanted=True):
            return visit
    raise AssertionError("never due")


def test_a_fresh_entry_is_due_at_its_first_visit() -> None:
    assert is_due(Entry("a", None), wanted=True)


def test_an_unwanted_entry_or_one_with_a_poll_in_flight_is_not_due() -> None:
    entry = Entry("a", None)
    assert not is_due(entry, wanted=False)
    entry.poll = object()
    assert not is_due(entry, wanted=True)


def test_a_resting_entry_counts_down_one_visit_at_a_time() -> None:
    entry = Entry("a", None)
    entry.rest = 3
    assert visits_until_due(entry) == 3
    assert entry.rest == 0


@pytest.mark.parametrize(
    ("failures", "rests"),
    [(1, [0]), (3, [0, 1, 3]), (6, [0, 1, 3, 7, 7, 7])],
)
def test_failures_back_off_doubling_up_to_max_backoff(failures: int, rests: list[int]) -> None:
    policy = SchedulePolicy(interval=5, max_backoff=8)
    entry = Entry("a", None)
    seen = []
    for _ in range(failures):
        assert not after_failure(entry, policy, invalid=False)
        seen.append(entry.rest)
    assert seen == rests


def test_gone_after_counts_only_invalid_answers_in_a_row() -> None:
    policy = SchedulePolicy(gone_after=3)
    entry = Entry("a", None)
    assert not after_failure(entry, policy, invalid=True)
    assert not after_failure(entry, policy, invalid=True)
    assert not after_failure(entry, policy, invalid=False)  # another error resets the count
    assert entry.invalid == 0
    assert not after_failure(entry, policy, invalid=True)
    assert not after_failure(entry, policy, invalid=True)
    assert after_failure(entry, policy, invalid=True)
    assert entry.invalid == 3


def test_a_success_resets_failures_and_the_gone_count() -> None:
    policy = SchedulePolicy()
    entry = Entry("a", Snapshot(status="Running", seq=1))
    after_failure(entry, policy, invalid=True)
    after_failure(entry, policy, invalid=True)
    after_success(entry, policy, terminal=False)
    assert (entry.failures, entry.invalid, entry.rest, entry.dormant) == (0, 0, 0, False)


def test_a_terminal_status_is_dormant_without_a_terminal_interval() -> None:
    entry = Entry("a", None)
    after_success(entry, SchedulePolicy(), terminal=True)
    assert entry.dormant and entry.rest == 0


@pytest.mark.parametrize(("terminal_interval", "rest"), [(5, 0), (30, 5), (32, 5), (33, 6), (1, 0)])
def test_a_terminal_interval_rests_whole_intervals(terminal_interval: float, rest: int) -> None:
    entry = Entry("a", None)
    after_success(
        entry, SchedulePolicy(interval=5, terminal_interval=terminal_interval), terminal=True
    )
    assert not entry.dormant and entry.rest == rest


def test_next_slot_follows_the_spacing_but_never_bursts_to_catch_up() -> None:
    assert next_slot(10.0, 0.5, now=10.2, interval=5) == 10.5
    assert next_slot(10.0, 0.5, now=15.4, interval=5) == 10.5  # behind by less than an interval
    assert next_slot(10.0, 0.5, now=100.0, interval=5) == 100.0  # far behind: start afresh


@pytest.mark.parametrize(
    ("ids", "interval", "group"),
    [
        (10_000, 5.0, 10),  # slots 0.5 ms apart: one 5 ms tick holds ten
        (100_000, 1.0, 500),
        (1_000, 5.0, 1),  # 5 ms apart: one at a time
        (100, 5.0, 1),  # far apart: never fewer than one
    ],
)
def test_slots_already_past_go_out_one_tick_at_a_time(
    ids: int, interval: float, group: int
) -> None:
    assert COALESCE == 0.005
    assert catch_up_group(interval / ids) == group


def test_a_policy_is_frozen() -> None:
    policy = SchedulePolicy()
    with pytest.raises(AttributeError):
        policy.interval = 1  # type: ignore[misc]
