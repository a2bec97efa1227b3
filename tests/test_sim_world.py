"""The simulated world without sockets or an event loop: instances, lifecycles, clock, counts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime

import pytest

from aiocontainer._sim_lifecycle import EPOCH as SIM_EPOCH
from aiocontainer._sim_lifecycle import SEED_INSTANCE_ID
from aiocontainer._sim_world import SimClock, Stats, UnknownInstanceError, World, parse_list_query
from tests.sim_support import EPOCH, SEED_SAMPLE, TERMINAL, TIMESTAMP, ManualClock, clock, stamp

__all__ = ["clock"]  # the fixture, for the tests below


def make_world(
    *,
    instances: int,
    seed: int = 0,
    speed: float = 1.0,
    clock: Callable[[], float] | None = None,
    frozen: bool = False,
    include_seed: bool = True,
    epoch: datetime = SIM_EPOCH,
) -> World:
    """A world on a manual clock unless one is given; nothing listens anywhere."""
    return World(
        clock=SimClock(clock or ManualClock(), speed=speed, frozen=frozen),
        seed=seed,
        epoch=epoch,
        user="magic2",
        instances=instances,
        include_seed=include_seed,
    )


def test_generated_instances_are_varied_and_keyed_like_the_seed() -> None:
    world = make_world(instances=40, seed=3)
    ids = world.ids()
    assert len(ids) == 40
    assert ids[0] == SEED_INSTANCE_ID
    assert len(set(ids)) == 40
    instances = [world.instance(i) for i in ids]
    for data in instances:
        assert list(data) == list(SEED_SAMPLE["data"])
        assert re.fullmatch(r"[0-9a-f]{32}", data["id"])
        assert TIMESTAMP.match(data["createTime"])
        for port in data["containerPortInfoList"]:
            assert set(port) == {"accessUrl", "containerPort", "protocolType"}
        for mount in data["mountInfoList"]:
            assert set(mount) == {"sourcePath", "type"}
    assert {d["taskType"] for d in instances} == {"ssh", "jupyter", "codeserver", "rstudio"}
    assert {d["acceleratorType"] for d in instances} == {"gpu", "dcu", "cpu"}
    assert len({d["resourceSpec"] for d in instances}) > 5
    assert any(d["containerPortInfoList"] for d in instances)
    assert any(d["mountInfoList"] for d in instances)
    assert all(d["status"] == "Waiting" for d in instances)


def test_seed_instance_can_be_left_out() -> None:
    world = make_world(instances=3, seed=3, include_seed=False)
    assert SEED_INSTANCE_ID not in world.ids()
    assert len(world.ids()) == 3
    assert make_world(instances=0).ids() == []


def test_phase_lengths_are_realistic_and_scale_with_speed() -> None:
    slow_clock, fast_clock = ManualClock(), ManualClock()
    slow = make_world(instances=30, seed=9, speed=1.0, clock=slow_clock)
    fast = make_world(instances=30, seed=9, speed=10.0, clock=fast_clock)
    outcomes = set()
    for instance_id in slow.ids():
        (_, w0), (_, d0), (_, r0), (outcome, end) = slow.schedule(instance_id)
        assert 3 <= d0 - w0 <= 20
        assert 5 <= r0 - d0 <= 40
        assert 0 < end - r0 <= 420
        outcomes.add(outcome)
    assert outcomes == set(TERMINAL)
    # the same lives, lived ten times faster on the clock
    for seconds in (1.0, 9.0, 30.0, 70.0, 200.0, 500.0):
        slow_clock.now = 5000.0 + seconds
        fast_clock.now = 5000.0 + seconds / 10
        assert [fast.instance(i) for i in fast.ids()] == [slow.instance(i) for i in slow.ids()]


def test_same_seed_same_world_other_seed_other_world() -> None:
    clocks = [ManualClock() for _ in range(3)]
    a, b, c = (
        make_world(instances=8, seed=seed, clock=clk)
        for seed, clk in zip((11, 11, 12), clocks, strict=True)
    )
    assert a.ids() == b.ids()
    assert a.ids()[1:] != c.ids()[1:]
    assert a.schedule(SEED_INSTANCE_ID) != c.schedule(SEED_INSTANCE_ID)
    for step in (0.0, 15.0, 40.0, 120.0, 600.0):
        for clk in clocks:
            clk.now = 5000.0 + step
        assert [a.instance(i) for i in a.ids()] == [b.instance(i) for i in b.ids()]
        assert [a.history(i) for i in a.ids()] == [b.history(i) for i in b.ids()]
        assert [a.schedule(i) for i in a.ids()] == [b.schedule(i) for i in b.ids()]
    assert {a.status(i) for i in a.ids()} <= set(TERMINAL)


def test_history_records_manual_sets_and_restarts(clock: ManualClock) -> None:
    world = make_world(instances=3, seed=2, clock=clock)
    instance_id = world.ids()[1]
    assert world.history(instance_id) == ["Waiting"]
    world.set_status(instance_id, "Waiting")  # no change, no new entry
    assert world.history(instance_id) == ["Waiting"]
    world.set_status(instance_id, "Stopped")
    clock.advance(10_000)
    assert world.status(instance_id) == "Stopped"  # held
    assert world.history(instance_id) == ["Waiting", "Stopped"]
    world.set_status(instance_id, "Stopped", hold=False)  # runs on: one phase, then Running
    assert world.history(instance_id) == ["Waiting", "Stopped"]
    clock.advance(10_000)
    outcome = world.status(instance_id)
    assert outcome in TERMINAL
    assert world.history(instance_id) == ["Waiting", "Stopped", "Running", outcome]
    world.restart(instance_id)
    world.set_status(instance_id, "Running", hold=True)
    clock.advance(5)
    data = world.instance(instance_id)
    assert data["status"] == "Running"
    assert data["duration"] == "0:00:05"
    world.set_status(instance_id, "Terminated")
    assert world.instance(instance_id)["endTime"] is not None
    assert world.history(instance_id) == [
        "Waiting", "Stopped", "Running", outcome, "Waiting", "Running", "Terminated",
    ]  # fmt: skip
    world.set_status(world.ids()[2], "Running")
    with pytest.raises(ValueError, match="not stopped"):
        world.restart(world.ids()[2])
    with pytest.raises(UnknownInstanceError):
        world.history("0" * 32)
    assert issubclass(UnknownInstanceError, KeyError)


def test_freeze_and_advance(clock: ManualClock) -> None:
    world = make_world(instances=2, seed=1, clock=clock, frozen=True)
    clock.advance(100_000)
    assert world.clock.now() == 0
    assert world.status(SEED_INSTANCE_ID) == "Waiting"
    world.clock.advance(25)
    assert world.clock.now() == 25
    world.clock.unfreeze()
    clock.advance(5)
    assert world.clock.now() == pytest.approx(30)
    world.clock.freeze()
    clock.advance(5)
    assert world.clock.now() == pytest.approx(30)
    with pytest.raises(ValueError, match="forward"):
        world.clock.advance(-1)


def test_added_and_removed_instances(clock: ManualClock) -> None:
    world = make_world(instances=2, seed=1, clock=clock, epoch=EPOCH)
    clock.advance(3600)
    (new,) = world.add_instances(1)
    data = world.instance(new)
    assert data["status"] == "Waiting"
    assert data["createTime"] == stamp(3600)
    assert world.ids()[-1] == new
    odd = {"id": "abc", "status": "Pending", "extra": [1, 2], "createTime": None}
    assert world.add_instance(odd) == "abc"
    clock.advance(10_000)
    assert world.instance("abc") == odd
    world.set_status("abc", "Running", hold=False)
    assert world.instance("abc")["status"] == "Running"
    assert world.instance("abc")["extra"] == [1, 2]
    world.remove_instance(new)
    assert new not in world.ids()
    with pytest.raises(ValueError, match="already exists"):
        world.add_instance({"id": SEED_INSTANCE_ID})


def test_stats_count_per_endpoint_instance_and_fault() -> None:
    stats = Stats()
    stats.count("detail", "a")
    stats.count("detail", "a")
    stats.count("list")
    stats.count_fault("http_503")
    assert stats.snapshot() == {
        "total": 3,
        "endpoints": {"detail": 2, "list": 1},
        "instances": {"a": 2},
        "faults": {"http_503": 1},
    }
    stats.reset()
    assert stats.snapshot() == {"total": 0, "endpoints": {}, "instances": {}, "faults": {}}


def test_a_clock_needs_a_positive_finite_speed() -> None:
    for speed in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="speed"):
            SimClock(ManualClock(), speed=speed, frozen=False)
    with pytest.raises(ValueError, match="instances"):
        make_world(instances=-1)


def test_detail_envelope_is_the_rendering_in_the_platform_envelope() -> None:
    world = make_world(instances=2, seed=1)
    envelope = world.detail_envelope(SEED_INSTANCE_ID)
    assert envelope is not None
    assert json.loads(envelope) == {"code": "0", "msg": "SUCCESS", "data": SEED_SAMPLE["data"]}
    assert world.detail_envelope("0" * 32) is None


def list_ids(world: World, **params: object) -> list[str]:
    query = parse_list_query(params)
    assert not isinstance(query, str), query
    body = json.loads(world.list_envelope(query))
    assert body["code"] == "0"
    return [item["id"] for item in body["data"]]


def test_list_pages_are_offsets_into_the_creation_order() -> None:
    world = make_world(instances=12, seed=7)
    by_created = sorted(world.ids(), key=lambda i: (world.instance(i)["createTime"], i))
    assert list_ids(world, limit=100, sort="asc") == by_created
    assert list_ids(world, limit=100) == by_created[::-1]
    pages = [list_ids(world, start=start, limit=5, sort="asc") for start in (0, 5, 10, 15)]
    assert pages == [by_created[0:5], by_created[5:10], by_created[10:], []]


def test_every_page_in_either_order_is_a_slice_of_the_sorted_account() -> None:
    world = make_world(instances=9, seed=3)
    ordered = sorted(world.ids(), key=lambda i: (world.instance(i)["createTime"], i))
    for start in range(12):
        for limit in range(1, 11):
            asc = list_ids(world, start=start, limit=limit, sort="asc")
            assert asc == ordered[start : start + limit]
            assert list_ids(world, start=start, limit=limit) == ordered[::-1][start : start + limit]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "10003"),
        ({"start": 0}, "10003"),
        ({"limit": ""}, "10003"),
        ({"limit": 0}, "10004"),
        ({"limit": "ten"}, "10004"),
        ({"limit": True}, "10004"),
        ({"limit": 5, "start": -1}, "10004"),
        ({"limit": 5, "sort": "sideways"}, "10004"),
        ({"limit": 5, "status": "Stopped"}, "10004"),
        ({"limit": 5, "taskType": "vnc"}, "10004"),
        ({"limit": 5, "instanceServiceName": [1]}, "10004"),
    ],
)
def test_list_query_refusals(params: dict[str, object], code: str) -> None:
    assert parse_list_query(params) == code


def test_list_query_accepts_strings_and_comma_separated_names() -> None:
    query = parse_list_query(
        {"start": "3", "limit": "7", "sort": "ASC", "instanceServiceName": ["a,b", "c"]}
    )
    assert not isinstance(query, str)
    assert (query.start, query.limit, query.descending) == (3, 7, False)
    assert query.names == frozenset({"a", "b", "c"})


# ----- listing: the page cap, and pages that shift under creation and deletion ----------------


def page(world: World, start: int, limit: int, *, cap: int | None = None) -> list[str]:
    query = parse_list_query({"start": start, "limit": limit})
    assert not isinstance(query, str)
    return [item["id"] for item in json.loads(world.list_envelope(query, cap=cap))["data"]]


def test_a_page_is_never_longer_than_the_cap() -> None:
    world = make_world(instances=12, seed=7)
    newest_first = page(world, 0, 100)
    assert len(newest_first) == 12
    assert page(world, 0, 100, cap=5) == newest_first[:5]
    assert page(world, 5, 100, cap=5) == newest_first[5:10]
    assert page(world, 10, 100, cap=5) == newest_first[10:]
    assert page(world, 0, 3, cap=5) == newest_first[:3]


def test_pages_shift_when_instances_are_created_or_deleted_between_them() -> None:
    world = make_world(instances=12, seed=7)
    first = page(world, 0, 5)
    (created,) = world.add_instances(1)  # the newest: it lands at the head of the listing
    second = page(world, 5, 5)
    assert second[0] == first[-1]  # seen twice
    assert created not in first + second  # created behind the listing's back: missed
    world.remove_instance(first[0])  # everything after it moves one place up
    third = page(world, 10, 5)
    everything = page(world, 0, 100)
    missed = set(everything) - set(first + second + third)
    assert created in missed and len(missed) == 2  # and the one that moved onto page two


def test_churn_creates_the_newest_and_deletes_older_ones_reproducibly() -> None:
    clock = ManualClock()
    worlds = [make_world(instances=12, seed=7, clock=clock) for _ in range(2)]
    clock.advance(10)  # created a second or more after every other instance
    results = [w.churn(3, keep=frozenset({SEED_INSTANCE_ID})) for w in worlds]
    assert results[0] == results[1]
    created, deleted = results[0]
    world = worlds[0]
    assert len(world) == 12
    assert set(deleted).isdisjoint(world.ids()) and SEED_INSTANCE_ID not in deleted
    assert set(page(world, 0, 3)) == set(created)
    assert world.deleted_ids() == deleted
    for instance_id in deleted:
        assert world.history(instance_id)[0] == "Waiting"  # still readable after deletion
        with pytest.raises(UnknownInstanceError):
            world.instance(instance_id)
    assert world.churn(0) == ([], [])
    with pytest.raises(ValueError, match="churn"):
        world.churn(-1)


def test_a_deleted_instance_keeps_the_history_it_had(clock: ManualClock) -> None:
    world = make_world(instances=3, seed=2, clock=clock)
    target = world.ids()[1]
    clock.advance(world.schedule(target)[2][1] + 1)  # into Running
    world.remove_instance(target)
    clock.advance(10_000)
    assert world.history(target) == ["Waiting", "Deploying", "Running"]
    with pytest.raises(UnknownInstanceError):
        world.remove_instance(target)
