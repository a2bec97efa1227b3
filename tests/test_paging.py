"""The pager: which page to ask for next and which entries are new, without sockets."""

from __future__ import annotations

import pytest

from aiocontainer._paging import MAX_STALE_PAGES, MAX_TOTAL_DIGITS, Pager, read_total
from aiocontainer.errors import ResponseError


def drain(pager: Pager, pages: list[list[str]]) -> tuple[list[tuple[int, int]], list[str]]:
    """Feed ``pages`` (each the ids a server answered) in turn; the requests made, ids kept."""
    requests, kept = [], []
    for ids in pages:
        request = pager.next_request()
        assert request is not None
        requests.append(request)
        kept += [i for i, new in zip(ids, pager.take(len(ids), ids), strict=True) if new]
    return requests, kept


def test_offsets_advance_by_what_the_page_held_not_by_the_limit() -> None:
    pager = Pager(100)
    # A server that caps pages at 3 whatever the limit: no short page is taken for the last.
    requests, kept = drain(pager, [["a", "b", "c"], ["d", "e", "f"], ["g"], []])
    assert requests == [(0, 100), (3, 100), (6, 100), (7, 100)]
    assert kept == list("abcdefg")
    assert pager.done and pager.next_request() is None
    assert pager.pages == 4 and pager.seen == 7


def test_only_an_empty_page_ends_the_listing() -> None:
    pager = Pager(10)
    drain(pager, [["a"], ["b"]])  # two short pages
    assert not pager.done
    assert pager.next_request() == (2, 10)
    pager.take(0, [])
    assert pager.done


def test_a_shifted_page_never_yields_an_id_twice() -> None:
    # An instance created during the listing (newest first) pushes "c" from page one to page two.
    pager = Pager(3)
    _, kept = drain(pager, [["a", "b", "c"], ["c", "d", "e"], ["f"], []])
    assert kept == list("abcdef")


def test_case_variants_are_one_id() -> None:
    pager = Pager(2)
    _, kept = drain(pager, [["4c1f", "aa"], ["4C1F", "bb"], []])
    assert kept == ["4c1f", "aa", "bb"]


def test_a_page_with_bad_entries_still_moves_the_offset_by_every_entry() -> None:
    pager = Pager(5)
    assert pager.next_request() == (0, 5)
    assert pager.take(5, ["a", "b"]) == [True, True]  # three entries had no valid id
    assert pager.next_request() == (5, 5)


def test_a_server_that_ignores_start_cannot_loop_forever() -> None:
    pager = Pager(2)
    pager.take(2, ["a", "b"])
    for _ in range(MAX_STALE_PAGES - 1):
        assert pager.take(2, ["a", "b"]) == [False, False]
    with pytest.raises(ResponseError, match="ignore the start offset"):
        pager.take(2, ["a", "b"])
    assert pager.done


def test_one_repeated_page_between_new_ones_is_not_stale() -> None:
    pager = Pager(2)
    _, kept = drain(pager, [["a", "b"], ["a", "b"], ["c", "d"], ["c", "d"], ["e"], []])
    assert kept == list("abcde")


@pytest.mark.parametrize("size", [0, -1, True, 2.5, "10"])
def test_a_bad_page_size_is_refused(size: object) -> None:
    with pytest.raises(ValueError, match="page_size"):
        Pager(size)  # type: ignore[arg-type]


def test_more_ids_than_entries_is_a_bug() -> None:
    with pytest.raises(ValueError, match="fewer entries than ids"):
        Pager(2).take(1, ["a", "b"])


# -- a total, when an answer sends one ---------------------------------------------------------


def test_a_total_reached_exactly_ends_the_listing_without_an_empty_page() -> None:
    pager = Pager(100)
    assert pager.take(3, ["a", "b", "c"], total=7) == [True] * 3  # a short page: not the end
    assert not pager.done and pager.next_request() == (3, 100)
    pager.take(3, ["d", "e", "f"], total=7)
    assert not pager.done
    pager.take(1, ["g"], total=7)
    assert pager.done and pager.next_request() is None
    assert pager.pages == 3 and pager.seen == 7


@pytest.mark.parametrize(
    ("total", "why"),
    [(2, "passed: instances were deleted meanwhile, or it is wrong"), (50, "not reached")],
)
def test_a_total_not_reached_exactly_leaves_the_end_to_an_empty_page(total: int, why: str) -> None:
    pager = Pager(100)
    pager.take(3, ["a", "b", "c"], total=total)
    assert not pager.done, why
    pager.take(0, [], total=total)
    assert pager.done and pager.pages == 2


def test_a_total_of_zero_is_the_empty_page_it_comes_with() -> None:
    pager = Pager(100)
    assert pager.take(0, [], total=0) == []
    assert pager.done and pager.pages == 1


def test_a_total_does_not_stop_the_stale_page_rule() -> None:
    pager = Pager(2)
    pager.take(2, ["a", "b"], total=100)
    for _ in range(MAX_STALE_PAGES - 1):
        pager.take(2, ["a", "b"], total=100)
    with pytest.raises(ResponseError, match="ignore the start offset"):
        pager.take(2, ["a", "b"], total=100)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (12, 12),
        ("12", 12),
        ("0", 0),
        ("000123", 123),
        ("9" * MAX_TOTAL_DIGITS, int("9" * MAX_TOTAL_DIGITS)),
        ("9" * (MAX_TOTAL_DIGITS + 1), None),
        (None, None),
        (True, None),
        (False, None),
        (-1, None),
        (12.0, None),
        ("1.5", None),
        ("-3", None),
        ("+3", None),
        ("", None),
        (" 12", None),
        ("12\n", None),
        ("\uff11\uff12", None),  # full-width digits: str.isdigit says yes
        ("\u00b2", None),  # a superscript two: str.isdigit says yes, int() says no
        ([12], None),
        ({"value": 12}, None),
    ],
)
def test_read_total_takes_only_a_count(value: object, expected: int | None) -> None:
    assert read_total(value) == expected
