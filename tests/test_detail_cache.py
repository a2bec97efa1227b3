"""The list reader's cache: what it hands back and what it never hides, without sockets."""

from __future__ import annotations

import functools
import json
import random
from typing import Any

import attrs
import pytest

from aiocontainer import ContainerClient, _paging
from aiocontainer._json import fingerprint
from aiocontainer._paging import DetailCache, ListPage
from aiocontainer._protocol import read_detail, read_list_page
from aiocontainer._tracker import _lookup_with
from aiocontainer.errors import (
    AiocontainerError,
    ClientClosedError,
    ListEntryError,
    ResponseError,
)
from tests.conftest import seed_envelope

needs_orjson = pytest.mark.skipif(
    fingerprint({}) is None, reason="entries are fingerprinted only with orjson"
)


def entry(instance_id: str, **fields: Any) -> dict[str, Any]:
    return {**seed_envelope()["data"], "id": instance_id, **fields}


def body(entries: list[Any]) -> bytes:
    return json.dumps({"code": "0", "msg": "success", "data": entries}).encode()


def counting_builds(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[str]:
    """The ids ``module`` builds a detail for from now on (instead of handing back a kept one)."""
    built: list[str] = []
    structure = module.structure

    def counting(data: Any, cls: Any) -> Any:
        built.append(data.get("id"))
        return structure(data, cls)

    monkeypatch.setattr(module, "structure", counting)
    return built


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The list entries built."""
    return counting_builds(monkeypatch, _paging)


def read(raw: bytes, start: int, cache: DetailCache | None) -> ListPage:
    return read_list_page(200, {}, raw, start, secret="tok-secret-1234", cache=cache)


@needs_orjson
def test_the_same_body_at_the_same_offset_is_the_same_page_unparsed(builds: list[str]) -> None:
    cache = DetailCache()
    raw = body([entry("a"), entry("b")])
    first = read(raw, 0, cache)
    assert builds == ["a", "b"]
    again = read(bytes(raw), 0, cache)  # an equal body, not the same object
    assert again is first and builds == ["a", "b"]
    # The same bytes at another offset are another page; its entries are the kept details.
    moved = read(raw, 100, cache)
    assert moved is not first and moved.start == 100
    assert [d is e for d, e in zip(moved.details, first.details, strict=True)] == [True, True]
    assert builds == ["a", "b"]


@needs_orjson
def test_an_entry_that_changed_is_built_again_the_others_are_kept(builds: list[str]) -> None:
    cache = DetailCache()
    first = read(body([entry("a"), entry("b", cpuNumber=4)]), 0, cache)
    second = read(body([entry("a"), entry("b", cpuNumber=8)]), 0, cache)
    assert builds == ["a", "b", "b"]
    assert second.details[0] is first.details[0]
    assert (first.details[1].cpu_number, second.details[1].cpu_number) == (4, 8)
    assert second.details == read(body([entry("a"), entry("b", cpuNumber=8)]), 0, None).details


@needs_orjson
@pytest.mark.parametrize(
    ("good", "bad"),
    [(4, True), (4, 4.0), (4, "4"), (None, 0)],
    ids=["bool-for-int", "float-for-int", "string-for-int", "zero-for-null"],
)
def test_a_value_equal_in_python_but_not_in_json_is_checked_again(
    builds: list[str], good: Any, bad: Any
) -> None:
    """``True == 1`` and ``4.0 == 4`` in Python: a cache comparing values would let them by."""
    cache = DetailCache()
    read(body([entry("a", cpuNumber=good)]), 0, cache)
    page = read(body([entry("a", cpuNumber=bad)]), 0, cache)
    uncached = read(body([entry("a", cpuNumber=bad)]), 0, None)
    assert builds == ["a", "a"]
    assert [str(e) for e in page.errors] == [str(e) for e in uncached.errors]
    assert page.details == uncached.details


@needs_orjson
def test_a_bad_entry_is_reported_every_time_and_its_page_is_not_kept(builds: list[str]) -> None:
    cache = DetailCache()
    read(body([entry("a"), entry("b")]), 0, cache)
    raw = body([entry("a"), entry("b", cpuNumber="4")])
    for _ in range(2):
        page = read(raw, 0, cache)
        assert [d.id for d in page.details] == ["a"]
        (error,) = page.errors
        assert isinstance(error, ListEntryError) and "$.cpuNumber" in str(error)
        assert "tok-secret-1234" not in repr(cache)
    assert builds == ["a", "b", "b", "b"]  # the bad entry is built (and refused) each time
    # What the cache held for "b" went with the bad entry: its old JSON is built again.
    read(body([entry("a"), entry("b")]), 0, cache)
    assert builds == ["a", "b", "b", "b", "b"]


@needs_orjson
def test_retain_forgets_other_ids_and_pages_not_asked_for(builds: list[str]) -> None:
    cache = DetailCache()
    page_0, page_1 = body([entry("a"), entry("B")]), body([entry("c")])
    read(page_0, 0, cache)
    read(page_1, 2, cache)
    assert len(cache) == 3
    cache.retain(["A", "b"])  # compared in lower case
    assert len(cache) == 2
    assert repr(cache) == "DetailCache(2 details, 0 answers, 2 pages)"
    read(page_0, 0, cache)  # asked for: kept whole
    cache.retain(["a", "b"])
    assert repr(cache) == "DetailCache(2 details, 0 answers, 1 pages)"
    assert read(page_0, 0, cache).details[0].id == "a"
    read(page_1, 2, cache)  # neither the page nor "c" was kept: built again
    assert builds == ["a", "B", "c", "c"]


@needs_orjson
def test_a_clock_that_moved_is_read_alone_and_the_rest_is_kept(builds: list[str]) -> None:
    """A running instance's duration is new every pass: only it is read, and checked, again."""
    cache = DetailCache()
    first = read(body([entry("a", duration="0:00:01", remainingTime="--")]), 0, cache)
    raw = body([entry("a", duration="0:00:06", remainingTime=None)])
    second, plain = read(raw, 0, cache), read(raw, 0, None)
    assert builds == ["a"]  # built by the first read only: the clock was patched
    (old,), (new,) = first.details, second.details
    assert new is not old and new == plain.details[0]
    assert new.to_api() == plain.details[0].to_api() == json.loads(raw)["data"][0]
    assert (new.duration, new.remaining_time, old.duration) == ("0:00:06", None, "0:00:01")
    assert new.mount_info_list is old.mount_info_list  # the rest is the kept detail's own
    # Read again at another offset: the same clock, the same detail.
    assert read(raw, 100, cache).details[0] is new


@needs_orjson
@pytest.mark.parametrize(
    "change",
    [
        {"duration": 5},
        {"duration": True},
        {"remainingTime": ["--"]},
        {"duration": "9", "cpuNumber": "4"},
    ],
    ids=["int", "bool", "list", "and-another-field"],
)
def test_a_clock_value_a_build_refuses_is_refused_the_same_way(
    builds: list[str], change: dict[str, Any]
) -> None:
    cache = DetailCache()
    read(body([entry("a", duration="1", remainingTime="--")]), 0, cache)
    raw = body([entry("a", **{"duration": "1", "remainingTime": "--", **change})])
    page, plain = read(raw, 0, cache), read(raw, 0, None)
    assert builds == ["a", "a"]  # the cache sent it to a full build
    assert page.details == plain.details == ()
    assert [str(e) for e in page.errors] == [str(e) for e in plain.errors] != []


@needs_orjson
def test_a_clock_key_that_comes_or_goes_is_a_full_build(builds: list[str]) -> None:
    """Which keys were sent is part of a detail (``to_api`` gives them back): never patched."""
    cache = DetailCache()
    gone = entry("a", duration="1")
    del gone["remainingTime"]
    for sent in (entry("a", duration="1"), gone, entry("a", duration="2")):
        page, plain = read(body([sent]), 0, cache), read(body([sent]), 0, None)
        assert page.details[0].to_api() == plain.details[0].to_api() == sent
    assert builds == ["a"] * 3


def test_without_orjson_only_whole_pages_are_kept(
    builds: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_paging, "fingerprint", lambda value: None)
    cache = DetailCache()
    raw = body([entry("a")])
    first = read(raw, 0, cache)
    assert read(raw, 0, cache) is first
    read(raw, 100, cache)
    assert builds == ["a", "a"] and len(cache) == 0


def test_reading_through_the_cache_gives_what_reading_without_it_gives() -> None:
    """Random edits of a page, read in turn with and without one cache: equal every time."""
    rng = random.Random(20261127)
    fields: list[tuple[str, list[Any]]] = [
        ("status", ["Running", "Completed", "Failed", 3, None]),
        ("cpuNumber", [1, 2, 2.0, True, "2", -1]),
        ("startTime", ["2024-01-01 00:00:00", "2024-01-01 00:00:01", "2024-13-01 00:00:00"]),
        ("duration", ["1m", "2m", None, [], 3]),
        ("remainingTime", ["--", "1m", None, True]),
        ("extraKey", [1, "x", [1, 2], {"k": None}]),
    ]
    page = [entry(f"id-{n}") for n in range(8)]
    cache = DetailCache()
    for _ in range(300):
        target = rng.choice(page)
        name, values = rng.choice(fields)
        target[name] = rng.choice(values)
        if rng.random() < 0.1:
            target.pop(name, None)
        start = rng.choice([0, 0, 0, 8])
        raw = body(page)
        cached, plain = read(raw, start, cache), read(raw, start, None)
        assert cached.details == plain.details
        assert [d.to_api() for d in cached.details] == [d.to_api() for d in plain.details]
        assert (cached.start, cached.count) == (plain.start, plain.count)
        assert [str(e) for e in cached.errors] == [str(e) for e in plain.errors]


# -- detail answers ------------------------------------------------------------------------------


def detail_body(data: Any, code: str = "0") -> bytes:
    return json.dumps({"code": code, "msg": "success", "data": data}).encode()


@pytest.fixture
def detail_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The detail answers built (with a cache, through it)."""
    return counting_builds(monkeypatch, _paging)


def test_the_same_answer_for_the_same_id_is_the_same_detail(detail_builds: list[str]) -> None:
    cache = DetailCache()
    raw = detail_body(entry("a"))
    first = read_detail(200, {}, raw, "a", cache=cache)
    assert read_detail(200, {}, bytes(raw), "A", cache=cache) is first  # ids in any case
    assert detail_builds == ["a"]
    changed = read_detail(200, {}, detail_body(entry("a", cpuNumber=9)), "a", cache=cache)
    assert changed.cpu_number == 9 and detail_builds == ["a", "a"]
    # Another id with the same bytes is read (and refused: the answer names another instance).
    with pytest.raises(ResponseError, match="asked for instance b"):
        read_detail(200, {}, raw, "b", cache=cache)
    assert repr(cache) == "DetailCache(1 details, 1 answers, 0 pages)"
    cache.forget("A")
    read_detail(200, {}, detail_body(entry("a", cpuNumber=9)), "a", cache=cache)
    assert detail_builds == ["a", "a", "a", "a"]  # "b" read the body again; "a" too, forgotten


@pytest.mark.parametrize(
    "raw",
    [
        detail_body(entry("a", cpuNumber="4")),
        detail_body(None, code="10008"),
        b'{"code": "0", "data": {"id": "a"',
    ],
    ids=["bad-field", "api-error", "truncated"],
)
def test_a_bad_answer_is_an_error_every_time_and_nothing_is_kept(raw: bytes) -> None:
    cache = DetailCache()
    good = detail_body(entry("a"))
    first = read_detail(200, {}, good, "a", cache=cache)
    for _ in range(2):
        with pytest.raises(AiocontainerError):
            read_detail(200, {}, raw, "a", cache=cache)
    # The good answer is still the one kept: a bad one in between replaced nothing.
    assert read_detail(200, {}, good, "a", cache=cache) is first
    assert repr(cache).endswith(" 1 answers, 0 pages)")


@needs_orjson
def test_a_detail_answer_whose_clock_moved_is_patched_not_built(detail_builds: list[str]) -> None:
    cache = DetailCache()
    running = {
        "status": "Running",
        "duration": "1:00:00",
        "remainingTime": "2:00:00",
        "mountInfoList": [{"sourcePath": "/public/home/u", "type": "nfs"}],
    }
    first = read_detail(200, {}, detail_body(entry("a", **running)), "a", cache=cache)
    later = {**running, "duration": "1:00:05", "remainingTime": "1:59:55"}
    second = read_detail(200, {}, detail_body(entry("a", **later)), "a", cache=cache)
    assert detail_builds == ["a"]  # the second answer was patched
    assert (second.duration, second.remaining_time) == ("1:00:05", "1:59:55")
    assert first.mount_info_list and second.mount_info_list is first.mount_info_list
    assert second == attrs.evolve(first, duration="1:00:05", remaining_time="1:59:55")
    # Anything else that moved is a full build, and a bad clock value is refused as ever.
    read_detail(200, {}, detail_body(entry("a", **later, cpuNumber=9)), "a", cache=cache)
    assert detail_builds == ["a", "a"]
    with pytest.raises(ResponseError, match="duration"):
        read_detail(200, {}, detail_body(entry("a", **{**later, "duration": 5})), "a", cache=cache)


async def test_the_watcher_gives_its_cache_only_to_a_client_that_takes_one() -> None:
    asked: list[tuple[str, Any]] = []

    class Taking:
        async def get_instance(self, instance_id: str, *, cache: Any = None) -> Any:
            asked.append((instance_id, cache))

    class Plain:
        async def get_instance(self, instance_id: str) -> Any:
            asked.append((instance_id, "no cache"))

    cache = DetailCache()
    await _lookup_with(Taking(), cache)("a")
    await _lookup_with(Plain(), cache)("b")
    assert asked == [("a", cache), ("b", "no cache")]


async def test_the_watcher_asks_a_container_client_without_checking_ids_again() -> None:
    class Overriding(ContainerClient):
        async def get_instance(self, instance_id: str, *, cache: Any = None) -> Any:
            return ("overridden", instance_id, cache)

    class OverridingWithoutCache(ContainerClient):
        async def get_instance(self, instance_id: str) -> Any:  # type: ignore[override]
            return ("overridden", instance_id, "no cache")

    cache = DetailCache()
    async with ContainerClient("http://127.0.0.1:9", token="t") as client:
        lookup = _lookup_with(client, cache)
        # The ids a watcher holds were checked when added: the lookup skips that check...
        assert isinstance(lookup, functools.partial)
        assert (lookup.func, lookup.keywords) == (client._get_valid, {"cache": cache})
    # ...and still refuses a closed client before anything else happens.
    with pytest.raises(ClientClosedError):
        await lookup("a1")
    # A subclass that replaces get_instance is asked through it, with the cache if it takes one.
    async with Overriding("http://127.0.0.1:9", token="t") as mine:
        assert await _lookup_with(mine, cache)("a1") == ("overridden", "a1", cache)
    async with OverridingWithoutCache("http://127.0.0.1:9", token="t") as other:
        assert await _lookup_with(other, cache)("a1") == ("overridden", "a1", "no cache")
