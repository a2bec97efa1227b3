"""The simulator's platform endpoints and its ``/_sim/`` controls, over plain HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import math
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from aiocontainer._sim_http import control_route
from aiocontainer._sim_world import UnknownInstanceError
from aiocontainer.simulator import SEED_INSTANCE_ID, Simulator
from tests.sim_support import (
    DETAIL,
    DURATION,
    EPOCH,
    LIST,
    RESTART,
    SEED_SAMPLE,
    STATUSES,
    TERMINAL,
    TIMESTAMP,
    TOKENS_STATE,
    ManualClock,
    call,
    clock,
    detail,
    hms,
    session,
    sim,
    stamp,
)

__all__ = ["clock", "session", "sim"]  # the fixtures, for the tests below


# ----- the seed example ----------------------------------------------------------------------


async def test_seed_example_is_served_verbatim(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async with session.get(
        sim.base_url + DETAIL.format(SEED_INSTANCE_ID), headers={"token": sim.token}
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["code"] == "0"
    assert body["msg"] == "SUCCESS"
    assert body["data"] == SEED_SAMPLE["data"]
    assert list(body["data"]) == list(SEED_SAMPLE["data"])
    assert len(body["data"]) == 32


async def test_seed_instance_moves_on_once_waiting_is_over(
    sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    deploying_at = dict(sim.schedule(SEED_INSTANCE_ID))["Deploying"]
    clock.advance(deploying_at - 0.01)
    assert (await detail(session, sim, SEED_INSTANCE_ID))["data"] == SEED_SAMPLE["data"]
    clock.advance(0.02)
    data = (await detail(session, sim, SEED_INSTANCE_ID))["data"]
    assert data["status"] == "Deploying"
    assert {k for k in data if data[k] != SEED_SAMPLE["data"][k]} == {"status"}


async def test_unknown_id_gets_10004(sim: Simulator, session: aiohttp.ClientSession) -> None:
    body = await detail(session, sim, "0" * 32)
    assert body == {"code": "10004", "msg": body["msg"], "data": None}


# ----- the list endpoint ---------------------------------------------------------------------


async def list_call(
    session: aiohttp.ClientSession, sim: Simulator, style: str, params: dict[str, Any]
) -> dict[str, Any]:
    url = sim.base_url + LIST
    headers = {"token": sim.token}
    if style == "body":
        _, body = await call(session, "GET", url, headers=headers, json=params)
    else:
        query: list[tuple[str, str]] = []
        for key, value in params.items():
            if isinstance(value, list):
                query += [(key, v) for v in value]  # repeated parameter
            else:
                query.append((key, str(value)))
        _, body = await call(session, "GET", url, headers=headers, params=query)
    return body


@pytest.fixture
def mixed(sim: Simulator) -> Simulator:
    """The fixture simulator with a spread of statuses."""
    ids = sim.instance_ids
    statuses = ("Running", "Running", "Failed", "Completed", "Deploying")
    for instance_id, status in zip(ids[1:6], statuses, strict=True):
        sim.set_status(instance_id, status)
    return sim


def ids_of(body: dict[str, Any]) -> list[str]:
    assert body["code"] == "0"
    return [item["id"] for item in body["data"]]


@pytest.mark.parametrize("style", ["query", "body"])
async def test_list_filters(mixed: Simulator, session: aiohttp.ClientSession, style: str) -> None:
    sim = mixed
    everything = [sim.instance(i) for i in sim.instance_ids]
    for status in STATUSES:
        body = await list_call(session, sim, style, {"limit": 100, "status": status})
        expected = {d["id"] for d in everything if d["status"] == status}
        assert set(ids_of(body)) == expected
        assert all(item["status"] == status for item in body["data"])
    for task_type in ("ssh", "jupyter", "codeserver", "rstudio"):
        body = await list_call(session, sim, style, {"limit": 100, "taskType": task_type})
        assert set(ids_of(body)) == {d["id"] for d in everything if d["taskType"] == task_type}
    names = [everything[0]["instanceServiceName"], everything[3]["instanceServiceName"]]
    body = await list_call(session, sim, style, {"limit": 100, "instanceServiceName": names})
    assert set(ids_of(body)) == {d["id"] for d in everything if d["instanceServiceName"] in names}
    assert len(body["data"]) >= 2
    for item in body["data"]:
        assert item == sim.instance(item["id"])


@pytest.mark.parametrize("style", ["query", "body"])
async def test_list_sorting_and_paging(
    sim: Simulator, session: aiohttp.ClientSession, style: str
) -> None:
    everything = [sim.instance(i) for i in sim.instance_ids]
    by_created = [d["id"] for d in sorted(everything, key=lambda d: (d["createTime"], d["id"]))]
    newest_first = ids_of(await list_call(session, sim, style, {"limit": 100}))
    assert newest_first == by_created[::-1]
    assert (
        ids_of(await list_call(session, sim, style, {"limit": 100, "sort": "desc"})) == newest_first
    )
    assert ids_of(await list_call(session, sim, style, {"limit": 100, "sort": "asc"})) == by_created
    pages = [
        ids_of(await list_call(session, sim, style, {"start": start, "limit": 5, "sort": "asc"}))
        for start in (0, 5, 10)
    ]
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [i for page in pages for i in page] == by_created


@pytest.mark.parametrize("style", ["query", "body"])
async def test_list_rejects_bad_parameters(
    sim: Simulator, session: aiohttp.ClientSession, style: str
) -> None:
    assert (await list_call(session, sim, style, {}))["code"] == "10003"
    assert (await list_call(session, sim, style, {"start": 0}))["code"] == "10003"
    for bad in (
        {"limit": 10, "status": "Stopped"},
        {"limit": 10, "taskType": "vnc"},
        {"limit": 10, "sort": "sideways"},
        {"limit": "ten"},
        {"limit": 0},
    ):
        assert (await list_call(session, sim, style, bad))["code"] == "10004", bad


async def test_list_comma_separated_names_and_token(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    a, b = (sim.instance(i)["instanceServiceName"] for i in sim.instance_ids[:2])
    url = sim.base_url + LIST
    _, body = await call(
        session,
        "GET",
        url,
        headers={"token": sim.token},
        params={"limit": "50", "instanceServiceName": f"{a},{b}"},
    )
    assert {d["instanceServiceName"] for d in body["data"]} == {a, b}
    _, body = await call(session, "GET", url, params={"limit": "5"})
    assert body["code"] == "10008"


# ----- restart -------------------------------------------------------------------------------


async def test_restart_brings_a_terminal_instance_back(
    sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    instance_id = sim.instance_ids[2]
    headers = {"token": sim.token}
    url = sim.base_url + RESTART

    _, body = await call(
        session, "POST", url, headers=headers, params={"instanceServiceId": instance_id}
    )
    assert body["code"] == "10004"  # still Waiting
    _, body = await call(session, "POST", url, headers=headers)
    assert body["code"] == "10003"
    _, body = await call(
        session, "POST", url, headers=headers, params={"instanceServiceId": "f" * 32}
    )
    assert body["code"] == "10004"

    sim.set_status(instance_id, "Failed")
    clock.advance(10)
    _, body = await call(
        session, "POST", url, headers=headers, params={"instanceServiceId": instance_id}
    )
    assert body == {"code": "0", "msg": "SUCCESS", "data": instance_id}
    assert sim.history(instance_id) == ["Waiting", "Failed", "Waiting"]
    data = (await detail(session, sim, instance_id))["data"]
    assert (data["status"], data["startTime"], data["endTime"]) == ("Waiting", None, None)

    # a fresh lifecycle runs from now
    schedule = sim.schedule(instance_id)
    assert [s for s, _ in schedule][:3] == ["Waiting", "Deploying", "Running"]
    assert schedule[0][1] == pytest.approx(10)
    clock.advance(schedule[-1][1] - 10 + 1)
    assert sim.history(instance_id) == ["Waiting", "Failed", *[s for s, _ in schedule]]


# ----- lifecycles ----------------------------------------------------------------------------


async def test_lifecycle_follows_the_schedule(
    session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with Simulator(instances=20, seed=5, speed=4.0, clock=clock, epoch=EPOCH) as sim:
        limited = [i for i in sim.instance_ids if sim.instance(i)["timeoutLimit"] != "unlimited"]
        for instance_id in [SEED_INSTANCE_ID, limited[0]]:
            await check_one_lifecycle(sim, session, clock, instance_id)


async def check_one_lifecycle(
    sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock, instance_id: str
) -> None:
    start = clock.now - sim.sim_time / sim.speed  # clock reading at simulated second 0
    schedule = sim.schedule(instance_id)
    statuses = [s for s, _ in schedule]
    assert statuses[:3] == ["Waiting", "Deploying", "Running"]
    assert statuses[3] in TERMINAL
    run_start, run_end = schedule[2][1], schedule[3][1]
    limit = sim.instance(instance_id)["timeoutLimit"]
    limit_seconds = None
    if limit != "unlimited":
        h, m, s = (int(p) for p in limit.split(":"))
        limit_seconds = h * 3600 + m * 60 + s
        assert run_end - run_start <= limit_seconds + 1e-6

    def at(sim_seconds: float) -> None:
        clock.now = start + sim_seconds / sim.speed

    for index, (status, begins) in enumerate(schedule):
        at(begins + 0.001)
        data = (await detail(session, sim, instance_id))["data"]
        assert data["status"] == status == sim.status(instance_id)
        assert sim.history(instance_id) == statuses[: index + 1]
        if index > 0:
            at(begins - 0.001)
            assert sim.status(instance_id) == statuses[index - 1]

    at(run_start - 0.5)
    data = sim.instance(instance_id)
    assert (data["startTime"], data["endTime"], data["duration"]) == (None, None, "--")

    midway = run_start + (run_end - run_start) / 2
    at(midway)
    data = (await detail(session, sim, instance_id))["data"]
    assert data["status"] == "Running"
    assert data["startTime"] == stamp(run_start)
    assert data["endTime"] is None
    assert data["duration"] == hms(math.floor(midway) - math.floor(run_start))
    if limit_seconds is None:
        assert data["remainingTime"] == "--"
    else:
        ran = math.floor(midway) - math.floor(run_start)
        assert data["remainingTime"] == hms(max(0, limit_seconds - ran))

    at(run_end + 100)
    data = (await detail(session, sim, instance_id))["data"]
    assert data["status"] == statuses[3]
    assert data["startTime"] == stamp(run_start)
    assert data["endTime"] == stamp(run_end)
    assert data["duration"] == hms(math.floor(run_end) - math.floor(run_start))
    assert TIMESTAMP.match(data["endTime"]) and DURATION.match(data["duration"])
    assert sim.history(instance_id) == statuses


async def test_stats_count_requests(sim: Simulator, session: aiohttp.ClientSession) -> None:
    a, b = sim.instance_ids[:2]
    for instance_id in (a, a, b, "0" * 32):
        await detail(session, sim, instance_id)
    await call(
        session, "GET", sim.base_url + LIST, headers={"token": sim.token}, params={"limit": "2"}
    )
    await call(session, "GET", sim.base_url + TOKENS_STATE, headers={"token": sim.token})
    stats = sim.stats
    assert stats["total"] == 6
    assert stats["endpoints"] == {"detail": 4, "list": 1, "tokens_state": 1}
    assert stats["instances"] == {a: 2, b: 1, "0" * 32: 1}
    assert stats["faults"] == {}
    sim.reset_stats()
    assert sim.stats["total"] == 0


# ----- the control surface, one route at a time ------------------------------------------------


def control(sim: Simulator, path: str) -> str:
    return f"{sim.base_url}/_sim{path}"


async def test_control_lists_instances(sim: Simulator, session: aiohttp.ClientSession) -> None:
    status, listing = await call(session, "GET", control(sim, "/instances"))
    assert status == 200
    assert listing["ids"] == sim.instance_ids
    assert listing["statuses"] == dict.fromkeys(sim.instance_ids, "Waiting")


async def test_control_sets_a_status(sim: Simulator, session: aiohttp.ClientSession) -> None:
    target = sim.instance_ids[3]
    url = control(sim, f"/instances/{target}/status")
    status, info = await call(session, "POST", url, json={"status": "Stopped"})
    assert status == 200
    assert info["history"] == ["Waiting", "Stopped"]
    assert (await detail(session, sim, target))["data"]["status"] == "Stopped"
    status, error = await call(session, "POST", url, data="{")
    assert status == 400 and "error" in error
    status, error = await call(session, "POST", url, json={"status": ""})
    assert status == 400 and "status" in error["error"]


async def test_control_adds_generated_instances(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    _, added = await call(session, "POST", control(sim, "/instances"), json={"count": 2})
    assert len(added["ids"]) == 2
    assert sim.instance_ids[-2:] == added["ids"]
    assert (await detail(session, sim, added["ids"][0]))["code"] == "0"


async def test_control_adds_a_given_instance(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    given = dict(SEED_SAMPLE["data"], id="1" * 32, status="Running")
    body = {"instance": given}
    _, added = await call(session, "POST", control(sim, "/instances"), json=body)
    assert added == {"ids": ["1" * 32]}
    assert (await detail(session, sim, "1" * 32))["data"] == given
    status, _ = await call(session, "POST", control(sim, "/instances"), json={"instance": 3})
    assert status == 400


async def test_control_removes_an_instance(sim: Simulator, session: aiohttp.ClientSession) -> None:
    target = sim.instance_ids[3]
    status, removed = await call(session, "DELETE", control(sim, f"/instances/{target}"))
    assert (status, removed) == (200, {"removed": target})
    assert (await detail(session, sim, target))["code"] == "10004"
    status, missing = await call(session, "GET", control(sim, f"/instances/{target}"))
    assert status == 404
    assert target in missing["error"]


async def test_control_shows_one_instance(sim: Simulator, session: aiohttp.ClientSession) -> None:
    sim.script_faults(SEED_INSTANCE_ID, ["html"])
    _, info = await call(session, "GET", control(sim, f"/instances/{SEED_INSTANCE_ID}"))
    assert info["data"] == SEED_SAMPLE["data"]
    assert info["status"] == "Waiting"
    assert info["history"] == ["Waiting"]
    assert [tuple(step) for step in info["schedule"]] == sim.schedule(SEED_INSTANCE_ID)
    assert info["pendingFaults"] == ["html"]


async def test_control_restarts_an_instance(sim: Simulator, session: aiohttp.ClientSession) -> None:
    target = sim.instance_ids[2]
    url = control(sim, f"/instances/{target}/restart")
    status, refused = await call(session, "POST", url)
    assert status == 400 and "not stopped" in refused["error"]
    sim.set_status(target, "Failed")
    _, info = await call(session, "POST", url)
    assert info["history"] == ["Waiting", "Failed", "Waiting"]


async def test_control_scripts_faults(sim: Simulator, session: aiohttp.ClientSession) -> None:
    url = control(sim, f"/instances/{SEED_INSTANCE_ID}/faults")
    _, pending = await call(session, "POST", url, json={"faults": ["code_10001"]})
    assert pending == {"pending": ["code_10001"]}
    assert (await detail(session, sim, SEED_INSTANCE_ID))["code"] == "10001"
    status, _ = await call(session, "POST", url, json={"faults": ["gremlins"]})
    assert status == 400
    status, _ = await call(session, "POST", url, json={"faults": "http_503"})
    assert status == 400


async def test_control_sets_the_fault_rate(sim: Simulator, session: aiohttp.ClientSession) -> None:
    url = control(sim, "/faults")
    _, config = await call(session, "POST", url, json={"rate": 1, "kinds": ["html"]})
    assert config == {"rate": 1.0, "kinds": {"html": 1.0}}
    async with session.get(sim.base_url + LIST, params={"limit": "1"}) as response:
        assert response.content_type == "text/html"
    _, config = await call(session, "POST", url, json={"rate": 0})
    assert config == {"rate": 0.0, "kinds": {"html": 1.0}}
    status, _ = await call(session, "POST", url, json={"rate": 2})
    assert status == 400


async def test_control_freezes_advances_and_unfreezes(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    _, state = await call(session, "POST", control(sim, "/freeze"))
    assert state["frozen"] is True
    _, state = await call(session, "POST", control(sim, "/advance"), json={"seconds": 1000})
    assert state["simTime"] == pytest.approx(1000)
    assert state["simDatetime"] == stamp(1000)
    assert sim.status(SEED_INSTANCE_ID) != "Waiting"
    _, state = await call(session, "POST", control(sim, "/unfreeze"))
    assert state["frozen"] is False
    _, state = await call(session, "GET", control(sim, "/clock"))
    assert state["speed"] == 1.0
    status, error = await call(session, "POST", control(sim, "/advance"), json={"seconds": "x"})
    assert status == 400
    assert "seconds" in error["error"]


async def test_control_issues_and_expires_tokens(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    _, issued = await call(session, "POST", control(sim, "/tokens"), json={"ttl": 60})
    token = issued["token"]
    assert (await detail(session, sim, SEED_INSTANCE_ID, token=token))["code"] == "0"
    await call(session, "POST", control(sim, "/tokens/expire"), json={"token": token})
    assert (await detail(session, sim, SEED_INSTANCE_ID, token=token))["code"] == "10008"
    status, _ = await call(session, "POST", control(sim, "/tokens/expire"), json={"token": "x"})
    assert status == 400


async def test_control_sets_latency(sim: Simulator, session: aiohttp.ClientSession) -> None:
    url = control(sim, "/latency")
    _, latency = await call(session, "POST", url, json={"latency": [0, 0.001]})
    assert latency == {"latency": [0, 0.001]}
    status, _ = await call(session, "POST", url, json={"latency": True})
    assert status == 400


async def test_control_reads_and_resets_stats(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    await detail(session, sim, SEED_INSTANCE_ID)
    _, stats = await call(session, "GET", control(sim, "/stats"))
    assert stats == sim.stats
    assert stats["endpoints"] == {"detail": 1}
    _, stats = await call(session, "POST", control(sim, "/stats/reset"))
    assert stats == {"total": 0, "endpoints": {}, "instances": {}, "faults": {}}


async def test_controls_are_never_faulted_delayed_or_counted(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.set_fault_rate(1.0, kinds=["http_503"])
    sim.set_latency(5.0)  # a delayed control would blow the timeout below
    timeout = aiohttp.ClientTimeout(total=2)
    for path in ("/stats", "/clock", "/instances"):
        status, _ = await call(session, "GET", control(sim, path), timeout=timeout)
        assert status == 200
    assert sim.stats["total"] == 0


async def test_unknown_paths_are_not_counted(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    for path in ("/ai/openapi/v2/nowhere", "/ac/openapi/v2/nowhere", "/elsewhere"):
        async with session.get(sim.base_url + path) as response:
            assert response.status == 404
    assert sim.stats["total"] == 0


async def test_only_an_unknown_instance_is_a_404() -> None:
    async def unknown(request: web.Request) -> Any:
        raise UnknownInstanceError("abc")

    async def broken(request: web.Request) -> Any:
        return {}["missing"]

    request = make_mocked_request("GET", "/_sim/instances/abc")
    response = await control_route(unknown)(request)
    assert response.status == 404
    with pytest.raises(KeyError):  # left to aiohttp, which answers 500
        await control_route(broken)(request)


# ----- listing: cap, churn and list faults over HTTP ------------------------------------------


async def list_page(
    session: aiohttp.ClientSession, sim: Simulator, start: int, limit: int
) -> tuple[int, Any]:
    return await call(
        session,
        "GET",
        sim.base_url + LIST,
        headers={"token": sim.token},
        params={"start": str(start), "limit": str(limit)},
    )


async def list_everything(
    session: aiohttp.ClientSession, sim: Simulator, limit: int
) -> list[list[str]]:
    """Every page up to the first empty one, advancing by what each page held."""
    pages: list[list[str]] = []
    start = 0
    while True:
        _, body = await list_page(session, sim, start, limit)
        ids = ids_of(body)
        if not ids:
            return pages
        pages.append(ids)
        start += len(ids)


async def test_the_page_cap_is_honoured(session: aiohttp.ClientSession) -> None:
    async with Simulator(instances=23, seed=3, page_cap=5) as sim:
        assert sim.page_cap == 5
        pages = await list_everything(session, sim, limit=100)
        assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
        seen = [i for p in pages for i in p]
        assert sorted(seen) == sorted(sim.instance_ids)  # every one, once
        _, body = await list_page(session, sim, 0, 2)
        assert len(body["data"]) == 2
    assert Simulator(instances=0).page_cap == 100
    with pytest.raises(ValueError, match="page_cap"):
        Simulator(instances=0, page_cap=0)


async def test_churn_shifts_the_pages_of_a_running_listing(
    session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    async with Simulator(instances=30, seed=3, clock=clock, churn=1) as sim:
        clock.advance(5)  # created later than every instance there at the start
        before = set(sim.instance_ids)
        pages = await list_everything(session, sim, limit=5)
        seen = [i for p in pages for i in p]
        requests_made = len(pages) + 1  # and the empty page that ended it
        assert len(sim.instance_ids) == 30
        assert len(sim.deleted_ids()) == requests_made
        assert SEED_INSTANCE_ID in sim.instance_ids  # churn never deletes the seed instance
        # Each page saw one more instance created at the head: the listing saw some twice.
        assert len(seen) > len(set(seen))
        assert set(sim.instance_ids) - before  # and the world really changed under it
        assert set(seen) <= before | set(sim.instance_ids) | set(sim.deleted_ids())


async def test_scripted_list_faults_hit_the_list_or_one_page(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    async def answer(start: int) -> tuple[int, str | None]:
        async with session.get(
            sim.base_url + LIST,
            headers={"token": sim.token},
            params={"start": str(start), "limit": "5"},
        ) as response:
            if response.content_type != "application/json":
                return response.status, None
            return response.status, (await response.json())["code"]

    sim.script_faults("list", ["http_502", "code_10001"])
    sim.script_faults("list:5", ["http_503"])
    assert sim.pending_faults("list:5") == ["http_503"]
    assert await answer(0) == (502, None)
    assert await answer(0) == (200, "10001")
    assert await answer(0) == (200, "0")
    assert await answer(5) == (503, None)  # only the page at start=5
    assert await answer(5) == (200, "0")
    assert sim.stats["faults"] == {"http_502": 1, "code_10001": 1, "http_503": 1}
    assert sim.stats["endpoints"] == {"list": 5}


async def test_list_faults_at_a_random_rate(session: aiohttp.ClientSession) -> None:
    kinds = ["http_503", "code_10001", "truncated", "html"]
    async with Simulator(instances=5, seed=4, fault_rate=0.3, fault_kinds=kinds) as sim:
        faulted = 0
        for _ in range(300):
            async with session.get(
                sim.base_url + LIST, headers={"token": sim.token}, params={"limit": "5"}
            ) as response:
                raw = await response.read()
            try:
                ok = response.status == 200 and json.loads(raw)["code"] == "0"
            except ValueError:
                ok = False
            faulted += not ok
        assert 0.2 < faulted / 300 < 0.4
        assert sum(sim.stats["faults"].values()) == faulted


async def test_control_sets_the_page_cap_churn_and_total(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    url = control(sim, "/listing")
    _, listing = await call(session, "POST", url, json={"pageCap": 4, "churn": 2})
    assert listing == {"pageCap": 4, "churn": 2, "total": False}
    assert (sim.page_cap, sim.churn, sim.list_total) == (4, 2, False)
    _, body = await list_page(session, sim, 0, 100)
    assert len(body["data"]) == 4 and "total" not in body
    _, state = await call(session, "GET", control(sim, "/instances"))
    assert len(state["deleted"]) == 2 and len(state["ids"]) == 12
    _, listing = await call(session, "POST", url, json={"churn": 0, "total": True})
    assert listing == {"pageCap": 4, "churn": 0, "total": True} and sim.list_total
    _, body = await list_page(session, sim, 0, 100)
    assert len(body["data"]) == 4 and body["total"] == 12
    for bad in ({"pageCap": 0}, {"pageCap": 9, "churn": -1}, {"total": 1}, {"total": "yes"}):
        status, _ = await call(session, "POST", url, json=bad)
        assert status == 400, bad
    assert (sim.page_cap, sim.churn, sim.list_total) == (4, 0, True)


def test_instance_ids_reads_as_a_list_or_a_call() -> None:
    sim = Simulator(instances=3, seed=1)
    assert sim.instance_ids() == sim.instance_ids == list(sim.instance_ids)
    created = sim.create_instance()
    assert sim.instance_ids()[-1] == created
    sim.delete_instance(created)
    assert created not in sim.instance_ids()
    assert sim.deleted_ids() == [created]
    assert sim.history(created) == ["Waiting"]
