"""Listing: ContainerClient.list_page and list_instances against servers on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aiocontainer import (
    ContainerClient,
    InstanceDetail,
    InstanceStatus,
    ListEntryError,
    ListPage,
    ResponseError,
)
from aiocontainer.simulator import Simulator
from tests.conftest import TOKEN, seed_envelope

FAST = {"backoff_factor": 0.001, "backoff_max": 0.01}
LIST_PATH = "/ai/openapi/v2/instance-service/task"


def entry(instance_id: str, **fields: Any) -> dict[str, Any]:
    data = copy.deepcopy(seed_envelope()["data"])
    data.update(id=instance_id, **fields)
    return data


class ListServer:
    """A list endpoint over a fixed list of entries, pages capped at ``cap`` entries."""

    def __init__(self, entries: list[Any], *, cap: int, total: object = None) -> None:
        self.entries = entries
        self.cap = cap
        self.total = total  # sent beside data unless None ("count": the number of entries)
        self.queries: list[dict[str, list[str]]] = []
        self.replies: list[tuple[int, bytes]] = []  # scripted answers, used first
        self._server: TestServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    async def _handle(self, request: web.Request) -> web.Response:
        assert request.path == LIST_PATH
        query = {key: request.query.getall(key) for key in request.query}
        self.queries.append(query)
        if self.replies:
            status, raw = self.replies.pop(0)
            return web.Response(status=status, body=raw, content_type="application/json")
        start, limit = int(query["start"][0]), int(query["limit"][0])
        page = self.entries[start : start + min(limit, self.cap)]
        body = {"code": "0", "msg": "success", "data": page}
        if self.total is not None:
            body["total"] = len(self.entries) if self.total == "count" else self.total
        return web.json_response(body)

    async def __aenter__(self) -> ListServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.close()


async def collect(stream: AsyncIterator[InstanceDetail]) -> list[str]:
    return [detail.id async for detail in stream]


# -- against a scripted list server ------------------------------------------------------------


async def test_a_page_cap_below_page_size_still_finds_everything_once() -> None:
    ids = [f"i{n:03d}" for n in range(23)]
    async with ListServer([entry(i) for i in ids], cap=5) as server:
        async with ContainerClient(server.base_url, token=TOKEN) as client:
            found = await collect(client.list_instances(page_size=100))
    assert found == ids
    # Five pages of five or fewer, then the empty page that ends it: short pages are not the end.
    assert [q["start"] for q in server.queries] == [["0"], ["5"], ["10"], ["15"], ["20"], ["23"]]
    assert all(q["limit"] == ["100"] and q["sort"] == ["desc"] for q in server.queries)


async def test_filters_go_as_query_parameters() -> None:
    async with ListServer([], cap=10) as server:
        async with ContainerClient(server.base_url, token=TOKEN) as client:
            await collect(
                client.list_instances(status="Running", task_type="ssh", names=["a", "b"])
            )
    (query,) = server.queries
    assert query["status"] == ["Running"]
    assert query["taskType"] == ["ssh"]
    assert query["instanceServiceName"] == ["a", "b"]


async def test_a_bad_entry_is_raised_after_the_good_ones_before_it() -> None:
    entries = [entry("a"), entry("b"), entry("c", cpuNumber="many"), entry("d")]
    async with ListServer(entries, cap=10) as server:
        async with ContainerClient(server.base_url, token=TOKEN) as client:
            found: list[str] = []
            stream = client.list_instances()
            with pytest.raises(ListEntryError) as caught:  # noqa: PT012 - raised mid-iteration
                async for detail in stream:
                    found.append(detail.id)
            page = await client.list_page(start=0, limit=10)
    assert found == ["a", "b"]
    assert (caught.value.page_start, caught.value.index, caught.value.instance_id) == (0, 2, "c")
    assert "offset 0, entry 2" in str(caught.value) and "$.cpuNumber" in str(caught.value)
    assert isinstance(page, ListPage) and page.count == 4
    assert [d.id for d in page.details] == ["a", "b", "d"]
    assert [e.index for e in page.errors] == [2]


async def test_a_failing_page_is_retried_and_the_token_kept_out_of_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo = json.dumps({"code": "10001", "msg": f"busy, token {TOKEN}"}).encode()
    async with ListServer([entry("a")], cap=10) as server:
        server.replies = [(503, b"<html>busy</html>"), (200, echo)]
        async with ContainerClient(server.base_url, token=TOKEN, **FAST) as client:
            with caplog.at_level(logging.WARNING, logger="aiocontainer"):
                found = await collect(client.list_instances())
            assert client.stats.retries == 2
    assert found == ["a"]
    assert "list page at offset 0" in caplog.text
    assert TOKEN not in caplog.text


async def test_a_page_that_is_not_a_list_fails_the_listing() -> None:
    bad = json.dumps({"code": "0", "data": {"id": "a"}}).encode()
    async with ListServer([], cap=10) as server:
        server.replies = [(200, bad)]
        async with ContainerClient(server.base_url, token=TOKEN, **FAST) as client:
            with pytest.raises(ResponseError, match="expected a list"):
                await collect(client.list_instances())


async def test_a_10008_on_a_page_renews_the_token_once() -> None:
    expired = json.dumps({"code": "10008", "msg": "token expired"}).encode()
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return f"token{calls}"

    async with ListServer([entry("a")], cap=10) as server:
        server.replies = [(200, expired)]
        async with ContainerClient(server.base_url, token=provider, **FAST) as client:
            assert await collect(client.list_instances()) == ["a"]
    assert calls == 2


BAD_FILTERS: list[dict[str, Any]] = [
    {"status": 5},
    {"status": "Sleeping"},
    {"task_type": "vnc"},
    {"names": "one-name"},
    {"names": [None]},
    {"names": ["\ud800"]},  # a lone surrogate would not reach the server as itself
    {"names": ["fine", "half a pair \udcff"]},
]


@pytest.mark.parametrize(
    "options", [*BAD_FILTERS, {"page_size": 0}, {"page_size": -3}, {"page_size": True}]
)
async def test_bad_listing_options_raise_at_the_call(options: dict[str, Any]) -> None:
    async with ListServer([], cap=10) as server:
        async with ContainerClient(server.base_url, token=TOKEN) as client:
            with pytest.raises(ValueError):
                client.list_instances(**options)  # not iterated: the call itself raises
    assert server.queries == []


@pytest.mark.parametrize("options", [*BAD_FILTERS, {"start": -1}, {"limit": 0}])
async def test_bad_page_options_raise_before_any_request(options: dict[str, Any]) -> None:
    async with ListServer([], cap=10) as server:
        async with ContainerClient(server.base_url, token=TOKEN) as client:
            with pytest.raises(ValueError):
                await client.list_page(**{"start": 0, "limit": 10, **options})
    assert server.queries == []


# -- against the simulator ---------------------------------------------------------------------


@pytest.mark.parametrize("total", ["count", 23, "23"], ids=["count", "int", "digits"])
async def test_a_total_ends_the_listing_without_the_empty_page(total: object) -> None:
    ids = [f"i{n:03d}" for n in range(23)]
    async with ListServer([entry(i) for i in ids], cap=5, total=total) as server:
        async with ContainerClient(server.base_url, token=TOKEN) as client:
            found = await collect(client.list_instances(page_size=100))
            page = await client.list_page(start=20, limit=100)
    assert found == ids
    assert [q["start"] for q in server.queries[:5]] == [["0"], ["5"], ["10"], ["15"], ["20"]]
    assert len(server.queries) == 6  # five pages of the listing and the one asked for after
    assert page.total == 23 and page.count == 3


@pytest.mark.parametrize("total", [-1, 3, True, 23.0, "twenty-three", [23]])
async def test_a_total_that_is_no_count_or_too_small_changes_nothing(total: object) -> None:
    ids = [f"i{n:03d}" for n in range(23)]
    async with ListServer([entry(i) for i in ids], cap=5, total=total) as server:
        async with ContainerClient(server.base_url, token=TOKEN) as client:
            found = await collect(client.list_instances(page_size=100))
    assert found == ids
    assert len(server.queries) == 6  # on to the empty page, as without a total


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(instances=40, seed=5, frozen=True) as simulator:
        yield simulator


async def test_the_simulator_account_is_listed_whole_once(sim: Simulator) -> None:
    async with ContainerClient(sim.base_url, token=sim.token) as client:
        found = await collect(client.list_instances(page_size=7))
    assert sorted(found) == sorted(sim.instance_ids)
    assert len(found) == len(set(found))


async def test_a_status_filter_lists_exactly_those(sim: Simulator) -> None:
    running = {i for i in sim.instance_ids if sim.status(i) == InstanceStatus.RUNNING}
    async with ContainerClient(sim.base_url, token=sim.token) as client:
        found = await collect(client.list_instances(status="Running", page_size=4))
    assert set(found) == running


async def test_instances_created_during_a_listing_shift_pages_without_repeats(
    sim: Simulator,
) -> None:
    before = set(sim.instance_ids)
    async with ContainerClient(sim.base_url, token=sim.token) as client:
        found: list[str] = []
        async for detail in client.list_instances(page_size=6):
            found.append(detail.id)
            if len(found) in (3, 15):  # mid-listing: newest first, so every page shifts
                sim.add_instances(4)
    assert len(found) == len(set(found))
    assert before <= set(found)


async def test_instances_deleted_during_a_listing_cause_no_repeats(sim: Simulator) -> None:
    async with ContainerClient(sim.base_url, token=sim.token) as client:
        found: list[str] = []
        async for detail in client.list_instances(page_size=6):
            found.append(detail.id)
            if len(found) == 8:
                for gone in found[:4]:
                    sim.remove_instance(gone)
    assert len(found) == len(set(found))
    assert set(found) <= set(sim.instance_ids) | set(found[:4])


async def test_list_faults_at_30_percent_are_retried_to_a_whole_listing(sim: Simulator) -> None:
    sim.set_fault_rate(0.3, kinds=["http_500", "http_503", "code_10001", "code_10012", "reset"])
    async with ContainerClient(sim.base_url, token=sim.token, max_attempts=12, **FAST) as client:
        found = await collect(client.list_instances(page_size=5))
        retries = client.stats.retries
    assert sorted(found) == sorted(sim.instance_ids)
    assert retries > 0


async def test_the_simulators_page_cap_below_page_size_loses_nothing() -> None:
    async with Simulator(instances=60, seed=8, frozen=True, page_cap=7) as capped:
        async with ContainerClient(capped.base_url, token=capped.token) as client:
            found = await collect(client.list_instances(page_size=20))
            requests = client.stats.requests
    assert sorted(found) == sorted(capped.instance_ids)
    assert len(found) == len(set(found))
    # 60 instances (and the seed) in pages of at most 7, then the empty page that ends it.
    assert requests == -(-len(capped.instance_ids) // 7) + 1


async def test_the_simulators_total_saves_the_empty_page() -> None:
    async with Simulator(instances=60, seed=8, frozen=True, page_cap=7, list_total=True) as sim:
        async with ContainerClient(sim.base_url, token=sim.token) as client:
            found = await collect(client.list_instances(page_size=20))
            requests = client.stats.requests
    assert sorted(found) == sorted(sim.instance_ids)
    assert requests == -(-len(sim.instance_ids) // 7)


async def churned_listing(*, total: bool) -> int:
    """List an account that churns before every page; check it, return the requests it took."""
    async with Simulator(instances=60, seed=9, frozen=True, page_cap=10, list_total=total) as sim:
        before = set(sim.instance_ids)
        sim.set_listing(churn=2)
        async with ContainerClient(sim.base_url, token=sim.token) as client:
            found = await collect(client.list_instances(page_size=10))
            requests = client.stats.requests
        lasting = before & set(sim.instance_ids)
        assert len(found) == len(set(found))
        assert lasting <= set(found)
        assert set(found) <= before | set(sim.instance_ids) | set(sim.deleted_ids())
    return requests


async def test_churn_with_a_total_finds_every_lasting_id_once_for_fewer_requests() -> None:
    # The same seed churns the same way: the total ends the listing on its last page.
    assert await churned_listing(total=True) < await churned_listing(total=False)


async def test_churn_during_a_listing_never_repeats_an_id() -> None:
    async with Simulator(instances=60, seed=9, frozen=True, page_cap=10) as sim:
        sim.set_listing(churn=2)  # two created and two deleted before every page
        async with ContainerClient(sim.base_url, token=sim.token) as client:
            found = await collect(client.list_instances(page_size=10))
    assert len(found) == len(set(found))
    assert len(found) > 30
