"""The sweep's pass bookkeeping and its choices, without sockets or an event loop."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import pytest

from aiocontainer._diff import Snapshot
from aiocontainer._sweep import (
    MAX_STALE_PAGES,
    Listed,
    SweepPass,
    classify,
    probe_offset,
    sweep_is_cheaper,
    weigh,
)
from aiocontainer.models import InstanceDetail
from tests.watcher_fakes import FakePage


def page(
    start: int, ids: list[str], *, count: int | None = None, total: int | None = None
) -> FakePage:
    details = tuple(InstanceDetail(id=i, status="Running") for i in ids)
    count = len(ids) if count is None else count
    return FakePage(start=start, count=count, details=details, total=total)


def test_the_next_page_starts_where_the_last_entries_ended_not_at_the_limit() -> None:
    sweep = SweepPass(page_size=100)
    assert sweep.next_request() == (0, 100)
    sweep.take(page(0, [f"i{n}" for n in range(30)]))  # a short page is not the last
    assert sweep.next_request() == (30, 100)
    sweep.take(page(30, ["x"], count=2))  # one entry did not parse: it still counts
    assert sweep.next_request() == (32, 100)
    sweep.take(page(32, []))
    assert sweep.next_request() is None and sweep.done and not sweep.cut_short
    assert sweep.pages == 3


def test_shifted_pages_never_yield_an_id_twice_and_case_variants_are_one() -> None:
    sweep = SweepPass(page_size=3)
    assert [d.id for d in sweep.take(page(0, ["a", "b", "c"]))] == ["a", "b", "c"]
    # An instance was created before "a": everything shifted by one.
    assert [d.id for d in sweep.take(page(3, ["C", "d", "e"]))] == ["d", "e"]
    assert sweep.saw("A") and sweep.unseen(["a", "e", "f", "G"]) == ["f", "G"]


def test_a_repeat_with_another_status_is_taken_as_a_newer_sighting() -> None:
    sweep = SweepPass(page_size=3)
    sweep.take(page(0, ["a", "b", "c"]))
    repeat = (InstanceDetail(id="C", status="Completed"), InstanceDetail(id="d", status="Waiting"))
    # "c" moved on between the two pages and a shift showed it again: that is not dropped...
    assert sweep.take(FakePage(start=3, count=2, details=repeat)) == list(repeat)
    # ...but shown again with the status just taken, it is.
    assert sweep.take(FakePage(start=5, count=1, details=repeat[:1])) == []


def test_repeats_with_another_status_do_not_keep_a_pass_going() -> None:
    sweep = SweepPass(page_size=1)
    sweep.take(page(0, ["a"]))
    for n in range(MAX_STALE_PAGES):
        assert not sweep.done
        moved = InstanceDetail(id="a", status=f"Status{n}")
        assert sweep.take(FakePage(start=0, count=1, details=(moved,))) == [moved]
    assert sweep.done and sweep.cut_short


def test_an_entry_handled_as_bad_is_taken_when_a_repeat_shows_it_good() -> None:
    sweep = SweepPass(page_size=2)
    sweep.handled("A")
    assert [d.id for d in sweep.take(page(0, ["a", "b"]))] == ["a", "b"]
    assert sweep.saw("a") and sweep.seen == {"a", "b"}


def test_a_server_that_ignores_start_cannot_keep_a_pass_going() -> None:
    sweep = SweepPass(page_size=2)
    sweep.take(page(0, ["a", "b"]))
    for _ in range(MAX_STALE_PAGES):
        assert not sweep.done
        assert sweep.take(page(0, ["a", "b"])) == []
    assert sweep.done and sweep.cut_short


def test_a_total_reached_exactly_ends_the_pass_without_an_empty_page() -> None:
    sweep = SweepPass(page_size=100)
    sweep.take(page(0, [f"i{n}" for n in range(30)], total=31))  # short, and not the end
    assert sweep.next_request() == (30, 100)
    sweep.take(page(30, ["x"], total=31))
    assert sweep.next_request() is None and sweep.done and not sweep.cut_short
    assert sweep.pages == 2 and len(sweep.seen) == 31


def test_a_total_the_pass_went_past_is_not_trusted() -> None:
    sweep = SweepPass(page_size=100)
    sweep.take(page(0, ["a", "b", "c"], total=2))  # deleted meanwhile, or wrong
    assert sweep.next_request() == (3, 100)
    sweep.take(page(3, [], total=2))
    assert sweep.done and sweep.pages == 2


def test_a_page_with_no_total_attribute_is_read_as_before() -> None:
    sweep = SweepPass(page_size=100)
    details = (InstanceDetail(id="a", status="Running"),)
    sweep.take(SimpleNamespace(count=1, details=details, errors=()))  # type: ignore[arg-type]
    assert sweep.next_request() == (1, 100)


def test_an_abandoned_pass_is_cut_short() -> None:
    sweep = SweepPass()
    sweep.abandon()
    assert sweep.next_request() is None and sweep.cut_short


@pytest.mark.parametrize(
    ("known", "listed", "expected"),
    [
        (None, "Running", Listed.FIRST),
        (Snapshot(status="Running", seq=2), "Running", Listed.SAME),
        (Snapshot(status="Running", seq=2), "Completed", Listed.CHANGED),
        (Snapshot(status="Completed", seq=3), "Waiting", Listed.CHANGED),  # a restart
    ],
)
def test_classify(known: Snapshot | None, listed: str, expected: Listed) -> None:
    assert classify(known, InstanceDetail(id="a", status=listed)) is expected


def statuses(details: Sequence[InstanceDetail]) -> list[str]:
    return [d.status for d in details]


@pytest.mark.parametrize(
    ("known", "answer", "listed", "later", "passed", "ahead"),
    [
        # Listed before the lookup began: reported before the answer when on the way to it...
        ("Waiting", "Running", ["Deploying"], [], ["Deploying"], []),
        # ...else older than the answer and dropped (an instance back in Waiting).
        ("Waiting", "Waiting", ["Deploying"], [], [], []),
        ("Running", "Completed", ["Running"], [], [], []),
        # Listed while it ran: the same when passed, confirmed when possibly newer...
        ("Waiting", "Running", [], ["Deploying"], ["Deploying"], []),
        ("Waiting", "Waiting", [], ["Deploying"], [], ["Deploying"]),
        ("Waiting", "Waiting", [], ["Deploying", "Running"], [], ["Deploying", "Running"]),
        # ...and neither when the answer shows it.
        ("Waiting", "Running", [], ["Running"], [], []),
        # Several pages during one lookup, in order, each checked against the last passed.
        ("Waiting", "Completed", [], ["Deploying", "Running"], ["Deploying", "Running"], []),
        ("Waiting", "Completed", ["Deploying"], ["Running"], ["Deploying", "Running"], []),
        ("Waiting", "Running", [], ["Deploying", "Completed"], ["Deploying"], ["Completed"]),
        # Nothing known yet: the path starts at Waiting.
        (None, "Running", [], ["Waiting", "Deploying"], ["Waiting", "Deploying"], []),
        (None, "Waiting", [], ["Deploying"], [], ["Deploying"]),
        (None, "Running", [], ["Running"], [], []),
        # Off the path (unknown statuses, a terminal one to another): never passed.
        ("Waiting", "Stopped", [], ["Deploying"], [], ["Deploying"]),
        ("Waiting", "Running", [], ["Stopped"], [], ["Stopped"]),
        ("Completed", "Failed", [], ["Terminated"], [], ["Terminated"]),
        # A restart: Completed, then Waiting on the way to Deploying.
        ("Completed", "Deploying", ["Waiting"], [], ["Waiting"], []),
    ],
)
def test_entries_listed_around_a_lookup_are_weighed_against_its_answer(
    known: str | None,
    answer: str,
    listed: list[str],
    later: list[str],
    passed: list[str],
    ahead: list[str],
) -> None:
    def entries(names: list[str]) -> tuple[InstanceDetail, ...]:
        return tuple(InstanceDetail(id="a", status=s, version="listed") for s in names)

    got_passed, got_ahead = weigh(known, answer, entries(listed), entries(later))
    assert (statuses(got_passed), statuses(got_ahead)) == (passed, ahead)


def test_weighing_hands_back_the_listed_entries_themselves() -> None:
    deploying, completed = (InstanceDetail(id="a", status=s) for s in ("Deploying", "Completed"))
    passed, ahead = weigh("Waiting", "Running", (), (deploying, completed))
    assert passed[0] is deploying and ahead[0] is completed


def test_a_sweep_is_chosen_only_when_its_pages_cost_less() -> None:
    assert sweep_is_cheaper(due=5_000, pages=101)
    assert not sweep_is_cheaper(due=100, pages=101)
    assert not sweep_is_cheaper(due=101, pages=101)


@pytest.mark.parametrize(("due", "offset"), [(0, None), (2, None), (3, 100), (100, 9_800)])
def test_the_probe_page_sits_where_a_pass_would_stop_being_cheaper(
    due: int, offset: int | None
) -> None:
    assert probe_offset(due=due, page_size=100) == offset
