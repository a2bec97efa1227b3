"""The pure diff step: (last known state, new detail) -> a change or nothing."""

from __future__ import annotations

import ast
import datetime as dt
import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocontainer import _diff
from aiocontainer._diff import Snapshot, advance, diff, precedes, skipped_between
from aiocontainer.models import InstanceDetail, InstanceStatus, StatusChange

W, D, R = InstanceStatus.WAITING, InstanceStatus.DEPLOYING, InstanceStatus.RUNNING
C, F, T = InstanceStatus.COMPLETED, InstanceStatus.FAILED, InstanceStatus.TERMINATED
AT = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
ID = "a1"

# Every ordered pair of different documented statuses and what the usual path passes over.
SKIPPED = {
    (W, D): (),
    (W, R): (D,),
    (W, C): (D, R),
    (W, F): (D, R),
    (W, T): (D, R),
    (D, W): (),
    (D, R): (),
    (D, C): (R,),
    (D, F): (R,),
    (D, T): (R,),
    (R, W): (),
    (R, D): (),
    (R, C): (),
    (R, F): (),
    (R, T): (),
    # A restart takes a terminal instance back to Waiting and along the path again.
    (C, W): (),
    (C, D): (W,),
    (C, R): (W, D),
    (F, W): (),
    (F, D): (W,),
    (F, R): (W, D),
    (T, W): (),
    (T, D): (W,),
    (T, R): (W, D),
    # One terminal status to another is not a move the path makes.
    (C, F): (),
    (C, T): (),
    (F, C): (),
    (F, T): (),
    (T, C): (),
    (T, F): (),
}


def detail(status: str, instance_id: str = ID, **fields: object) -> InstanceDetail:
    return InstanceDetail(id=instance_id, status=status, **fields)  # type: ignore[arg-type]


def test_the_table_covers_every_pair_of_documented_statuses() -> None:
    pairs = {(a, b) for a in InstanceStatus.ALL for b in InstanceStatus.ALL if a != b}
    assert set(SKIPPED) == pairs


@pytest.mark.parametrize(("pair", "skipped"), sorted(SKIPPED.items()))
def test_a_change_between_documented_statuses(
    pair: tuple[str, str], skipped: tuple[str, ...]
) -> None:
    previous, current = pair
    change = diff(Snapshot(status=previous, seq=4), detail(current), observed_at=AT)
    assert change == StatusChange(
        instance_id=ID,
        previous=previous,
        current=current,
        detail=detail(current),
        observed_at=AT,
        seq=5,
        skipped=skipped,
    )
    assert skipped_between(previous, current) == skipped


@pytest.mark.parametrize("status", [*sorted(InstanceStatus.ALL), "Stopped", "running", ""])
def test_the_same_status_is_no_change(status: str) -> None:
    # Level-triggered: other fields may move, a status that left and came back is not seen.
    previous = Snapshot(status=status, seq=2, detail=detail(status, duration="0:00:01"))
    assert diff(previous, detail(status, duration="0:09:00"), observed_at=AT) is None


@pytest.mark.parametrize("status", [*sorted(InstanceStatus.ALL), "Stopped"])
def test_a_first_observation_skips_nothing_and_is_number_one(status: str) -> None:
    change = diff(None, detail(status), observed_at=AT)
    assert change is not None
    assert (change.previous, change.current, change.seq, change.skipped) == (None, status, 1, ())
    assert change.is_initial
    assert change.observed_at is AT


@pytest.mark.parametrize(
    ("previous", "current"),
    [
        (W, "Stopped"),
        ("Stopped", R),
        ("Pending", C),
        (W, "running"),  # statuses are compared exactly; this one is not documented
        ("Restarting", "Stopped"),
    ],
)
def test_unknown_statuses_pass_through_and_skip_nothing(previous: str, current: str) -> None:
    change = diff(Snapshot(status=previous, seq=1), detail(current), observed_at=AT)
    assert change is not None
    assert (change.previous, change.current, change.seq, change.skipped) == (
        previous,
        current,
        2,
        (),
    )


def test_skipped_between_without_a_previous_status_is_empty() -> None:
    assert skipped_between(None, C) == ()


PRECEDES = {(W, D), (W, R), (W, C), (W, F), (W, T), (D, R), (D, C), (D, F), (D, T)} | {
    (R, C),
    (R, F),
    (R, T),
}


@pytest.mark.parametrize("pair", sorted(itertools.permutations(sorted(InstanceStatus.ALL), 2)))
def test_precedes_follows_the_path_without_restarts(pair: tuple[str, str]) -> None:
    assert precedes(*pair) is (pair in PRECEDES)


@pytest.mark.parametrize("pair", [(W, W), (W, "Stopped"), ("Stopped", R), ("waiting", R)])
def test_a_status_precedes_neither_itself_nor_an_unknown_one(pair: tuple[str, str]) -> None:
    assert not precedes(*pair)


def test_the_change_carries_the_new_detail_and_its_id() -> None:
    new = detail(R, instance_id="b2", duration="0:00:05")
    change = diff(Snapshot(status=W, seq=1), new, observed_at=AT)
    assert change is not None
    assert change.detail is new
    assert change.instance_id == "b2"


def test_advance_records_every_observation_and_counts_changes() -> None:
    state, change = advance(None, detail(W), observed_at=AT)
    assert change is not None and change.seq == 1
    assert state == Snapshot(status=W, seq=1)

    newer = detail(W, duration="0:00:03")
    state, change = advance(state, newer, observed_at=AT)
    assert change is None
    assert state.seq == 1 and state.detail is newer

    state, change = advance(state, detail(R), observed_at=AT)
    assert change is not None
    assert (change.previous, change.seq, change.skipped) == (W, 2, (D,))
    assert state == Snapshot(status=R, seq=2)


def test_the_same_detail_object_again_keeps_the_same_state() -> None:
    # A cache hands back the detail read before: no new state object, no change.
    seen = detail(R)
    state, _ = advance(None, seen, observed_at=AT)
    again, change = advance(state, seen, observed_at=AT)
    assert again is state and change is None
    # An equal detail that is another object is still recorded as the latest one.
    equal = detail(R)
    later, change = advance(state, equal, observed_at=AT)
    assert change is None and later is not state and later.detail is equal
    assert (later.status, later.seq) == (state.status, state.seq)


def test_advance_without_emit_initial_records_silently_at_seq_zero() -> None:
    state, change = advance(None, detail(W), observed_at=AT, emit_initial=False)
    assert change is None
    assert state == Snapshot(status=W, seq=0)
    assert state.detail == detail(W)
    state, change = advance(state, detail(D), observed_at=AT, emit_initial=False)
    assert change is not None
    assert (change.previous, change.current, change.seq) == (W, D, 1)


def test_a_checkpointed_state_continues_its_seq() -> None:
    restored = Snapshot(status=R, seq=7)  # no detail: it came from a file
    assert restored.detail is None
    state, change = advance(restored, detail(C), observed_at=AT, emit_initial=False)
    assert change is not None
    assert (change.previous, change.current, change.seq) == (R, C, 8)
    assert advance(state, detail(C), observed_at=AT)[1] is None


def test_snapshots_compare_by_status_and_seq_only() -> None:
    assert Snapshot(status=R, seq=1, detail=detail(R)) == Snapshot(status=R, seq=1)


statuses = st.sampled_from([W, D, R, C, F, T, "Stopped"])


@given(st.lists(statuses, min_size=1, max_size=40), st.booleans())
def test_seq_grows_by_one_per_change_and_only_on_a_change(
    observed: list[str], emit_initial: bool
) -> None:
    state: Snapshot | None = None
    emitted: list[StatusChange] = []
    for status in observed:
        before = state
        state, change = advance(state, detail(status), observed_at=AT, emit_initial=emit_initial)
        if before is None:
            assert (change is not None) == emit_initial
        else:
            assert (change is not None) == (before.status != status)
        if change is not None:
            emitted.append(change)
    assert [c.seq for c in emitted] == list(range(1, len(emitted) + 1))
    for earlier, later in itertools.pairwise(emitted):
        assert later.previous == earlier.current
    assert state is not None and state.seq == len(emitted)


def test_the_module_imports_neither_aiohttp_nor_asyncio() -> None:
    tree = ast.parse(Path(_diff.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"aiohttp", "asyncio"}
