"""The embedded simulator, read only through plain HTTP clients (aiohttp; requests for the CLI)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from aiocontainer.simulator import FAULT_KINDS, SEED_INSTANCE_ID, Simulator, main

ROOT = Path(__file__).resolve().parent.parent
SEED_SAMPLE = json.loads((ROOT / "tests" / "samples" / "seed_detail.json").read_text("utf-8"))
DETAIL = "/ai/openapi/v2/instance-service/{}/detail"
LIST = "/ai/openapi/v2/instance-service/task"
RESTART = "/ai/openapi/v2/instance-service/task/actions/restart"
TOKENS_NEXT = "/ac/openapi/v2/tokens/next"
TOKENS_STATE = "/ac/openapi/v2/tokens/state"
STATUSES = ("Waiting", "Deploying", "Running", "Terminated", "Failed", "Completed")
TERMINAL = ("Terminated", "Failed", "Completed")
EPOCH = datetime(2023, 3, 1, 8, 0, 0)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
DURATION = re.compile(r"^\d+:\d{2}:\d{2}$")


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    async with Simulator(instances=12, seed=7, clock=clock, epoch=EPOCH) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def detail(
    session: aiohttp.ClientSession, sim: Simulator, instance_id: str, *, token: str | None = None
) -> dict[str, Any]:
    headers = {"token": sim.token if token is None else token}
    status, body = await call(
        session, "GET", sim.base_url + DETAIL.format(instance_id), headers=headers
    )
    assert status == 200
    assert isinstance(body["code"], str)
    return body


def stamp(seconds: float) -> str:
    return (EPOCH + timedelta(seconds=math.floor(seconds))).strftime("%Y-%m-%d %H:%M:%S")


def hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ----- the seed example -------------------------------------------------------------------------


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


def test_generated_instances_are_varied_and_keyed_like_the_seed() -> None:
    sim = Simulator(instances=40, seed=3)
    ids = sim.instance_ids
    assert len(ids) == 40
    assert ids[0] == SEED_INSTANCE_ID
    assert len(set(ids)) == 40
    instances = [sim.instance(i) for i in ids]
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
    sim = Simulator(instances=3, seed=3, include_seed_instance=False)
    assert SEED_INSTANCE_ID not in sim.instance_ids
    assert len(sim.instance_ids) == 3
    assert Simulator(instances=0).instance_ids == []


# ----- tokens and unknown ids -------------------------------------------------------------------


def forged_from(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["expireTime"] = str(int(claims["expireTime"]) + 10**9)
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{raw}.{signature}"


async def test_bad_tokens_get_10008(sim: Simulator, session: aiohttp.ClientSession) -> None:
    url = sim.base_url + DETAIL.format(SEED_INSTANCE_ID)
    _, missing = await call(session, "GET", url)
    expired = sim.issue_token(ttl=-5)
    other = Simulator(instances=0).issue_token()
    bad_tokens = ["nope", forged_from(sim.token), expired, other, ""]
    answers = [missing] + [
        (await detail(session, sim, SEED_INSTANCE_ID, token=t)) for t in bad_tokens
    ]
    for body in answers:
        assert body["code"] == "10008"
        assert body["data"] is None
    assert (await detail(session, sim, SEED_INSTANCE_ID))["code"] == "0"


async def test_expire_token_turns_a_good_token_away(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    token = sim.issue_token(ttl=3600)
    assert (await detail(session, sim, SEED_INSTANCE_ID, token=token))["code"] == "0"
    sim.expire_token(token)
    assert (await detail(session, sim, SEED_INSTANCE_ID, token=token))["code"] == "10008"


def test_token_is_jwt_shaped_with_string_expire_time() -> None:
    now = 1_700_000_000.0
    sim = Simulator(instances=0, wall_clock=lambda: now, token_ttl=120)
    header, payload, signature = sim.token.split(".")

    def decode(part: str) -> Any:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    assert decode(header) == {"alg": "HS256", "typ": "JWT"}
    claims = decode(payload)
    assert claims["expireTime"] == str(int((now + 120) * 1000))
    assert {"user", "clusterId", "accountStatus"} <= set(claims)
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32


async def test_a_fixed_token_is_accepted(session: aiohttp.ClientSession) -> None:
    async with Simulator(instances=1, token="T") as sim:
        assert sim.token == "T"
        assert (await detail(session, sim, SEED_INSTANCE_ID, token="T"))["code"] == "0"
        assert (await detail(session, sim, SEED_INSTANCE_ID, token=sim.issue_token()))[
            "code"
        ] == "0"


async def test_unknown_id_gets_10004(sim: Simulator, session: aiohttp.ClientSession) -> None:
    body = await detail(session, sim, "0" * 32)
    assert body == {"code": "10004", "msg": body["msg"], "data": None}


async def test_token_state_and_renewal(session: aiohttp.ClientSession) -> None:
    wall = [1_700_000_000.0]
    async with Simulator(instances=1, wall_clock=lambda: wall[0], token_ttl=3600) as sim:
        state_url, next_url = sim.base_url + TOKENS_STATE, sim.base_url + TOKENS_NEXT
        _, state = await call(session, "GET", state_url, headers={"token": sim.token})
        assert state == {"code": "0", "msg": "SUCCESS", "data": "token is valid"}

        wall[0] += 3600 + 60 * 60 * 23  # expired 23 h ago: still renewable
        _, state = await call(session, "GET", state_url, headers={"token": sim.token})
        assert state["code"] == "10008"
        _, renewed = await call(session, "POST", next_url, headers={"token": sim.token})
        assert renewed["code"] == "0"
        fresh = renewed["data"]
        assert isinstance(fresh, str)
        assert fresh != sim.token
        assert fresh.count(".") == 2
        _, state = await call(session, "GET", state_url, headers={"token": fresh})
        assert state["data"] == "token is valid"

        wall[0] += 60 * 60 * 2  # the first token is now 25 h past expiry
        _, refused = await call(session, "POST", next_url, headers={"token": sim.token})
        assert refused["code"] == "10008"
        for forged in ("abc", forged_from(fresh)):
            _, refused = await call(session, "POST", next_url, headers={"token": forged})
            assert refused["code"] == "10008"


# ----- the list endpoint ------------------------------------------------------------------------


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


# ----- restart ----------------------------------------------------------------------------------


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


# ----- lifecycles -------------------------------------------------------------------------------


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


def test_phase_lengths_are_realistic_and_scale_with_speed() -> None:
    slow_clock, fast_clock = ManualClock(), ManualClock()
    slow = Simulator(instances=30, seed=9, speed=1.0, clock=slow_clock)
    fast = Simulator(instances=30, seed=9, speed=10.0, clock=fast_clock)
    outcomes = set()
    for instance_id in slow.instance_ids:
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
        assert [fast.instance(i) for i in fast.instance_ids] == [
            slow.instance(i) for i in slow.instance_ids
        ]


def test_same_seed_same_world_other_seed_other_world() -> None:
    clocks = [ManualClock() for _ in range(3)]
    a, b, c = (
        Simulator(instances=8, seed=seed, clock=clk)
        for seed, clk in zip((11, 11, 12), clocks, strict=True)
    )
    assert a.instance_ids == b.instance_ids
    assert a.instance_ids[1:] != c.instance_ids[1:]
    assert a.schedule(SEED_INSTANCE_ID) != c.schedule(SEED_INSTANCE_ID)
    for step in (0.0, 15.0, 40.0, 120.0, 600.0):
        for clk in clocks:
            clk.now = 5000.0 + step
        assert [a.instance(i) for i in a.instance_ids] == [b.instance(i) for i in b.instance_ids]
        assert [a.history(i) for i in a.instance_ids] == [b.history(i) for i in b.instance_ids]
        assert [a.schedule(i) for i in a.instance_ids] == [b.schedule(i) for i in b.instance_ids]
    assert {a.status(i) for i in a.instance_ids} <= set(TERMINAL)


def test_history_records_manual_sets_and_restarts(clock: ManualClock) -> None:
    sim = Simulator(instances=3, seed=2, clock=clock)
    instance_id = sim.instance_ids[1]
    assert sim.history(instance_id) == ["Waiting"]
    sim.set_status(instance_id, "Waiting")  # no change, no new entry
    assert sim.history(instance_id) == ["Waiting"]
    sim.set_status(instance_id, "Stopped")
    clock.advance(10_000)
    assert sim.status(instance_id) == "Stopped"  # held
    assert sim.history(instance_id) == ["Waiting", "Stopped"]
    sim.set_status(instance_id, "Stopped", hold=False)  # runs on: one phase, then Running
    assert sim.history(instance_id) == ["Waiting", "Stopped"]
    clock.advance(10_000)
    outcome = sim.status(instance_id)
    assert outcome in TERMINAL
    assert sim.history(instance_id) == ["Waiting", "Stopped", "Running", outcome]
    sim.restart(instance_id)
    sim.set_status(instance_id, "Running", hold=True)
    clock.advance(5)
    data = sim.instance(instance_id)
    assert data["status"] == "Running"
    assert data["duration"] == "0:00:05"
    sim.set_status(instance_id, "Terminated")
    assert sim.instance(instance_id)["endTime"] is not None
    assert sim.history(instance_id) == [
        "Waiting", "Stopped", "Running", outcome, "Waiting", "Running", "Terminated",
    ]  # fmt: skip
    sim.set_status(sim.instance_ids[2], "Running")
    with pytest.raises(ValueError, match="not stopped"):
        sim.restart(sim.instance_ids[2])
    with pytest.raises(KeyError):
        sim.history("0" * 32)


def test_freeze_and_advance(clock: ManualClock) -> None:
    sim = Simulator(instances=2, seed=1, clock=clock, frozen=True)
    clock.advance(100_000)
    assert sim.sim_time == 0
    assert sim.status(SEED_INSTANCE_ID) == "Waiting"
    sim.advance(25)
    assert sim.sim_time == 25
    sim.unfreeze()
    clock.advance(5)
    assert sim.sim_time == pytest.approx(30)
    sim.freeze()
    clock.advance(5)
    assert sim.sim_time == pytest.approx(30)
    with pytest.raises(ValueError, match="forward"):
        sim.advance(-1)


def test_added_and_removed_instances(clock: ManualClock) -> None:
    sim = Simulator(instances=2, seed=1, clock=clock, epoch=EPOCH)
    clock.advance(3600)
    (new,) = sim.add_instances(1)
    data = sim.instance(new)
    assert data["status"] == "Waiting"
    assert data["createTime"] == stamp(3600)
    assert sim.instance_ids[-1] == new
    odd = {"id": "abc", "status": "Pending", "extra": [1, 2], "createTime": None}
    assert sim.add_instance(odd) == "abc"
    clock.advance(10_000)
    assert sim.instance("abc") == odd
    sim.set_status("abc", "Running", hold=False)
    assert sim.instance("abc")["status"] == "Running"
    assert sim.instance("abc")["extra"] == [1, 2]
    sim.remove_instance(new)
    assert new not in sim.instance_ids
    with pytest.raises(ValueError, match="already exists"):
        sim.add_instance({"id": SEED_INSTANCE_ID})


# ----- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"), [("http_500", 500), ("http_502", 502), ("http_503", 503)]
)
async def test_http_error_faults_have_no_envelope(
    sim: Simulator, session: aiohttp.ClientSession, kind: str, status: int
) -> None:
    sim.script_faults(SEED_INSTANCE_ID, [kind])
    url = sim.base_url + DETAIL.format(SEED_INSTANCE_ID)
    async with session.get(url, headers={"token": sim.token}) as response:
        assert response.status == status
        assert response.content_type in ("text/html", "text/plain")
        text = await response.text()
    assert str(status) in text or "Internal Server Error" in text
    assert '"code"' not in text
    assert sim.stats["faults"] == {kind: 1}


async def test_429_carries_retry_after(session: aiohttp.ClientSession) -> None:
    async with Simulator(instances=1, retry_after=7) as sim:
        sim.script_faults(SEED_INSTANCE_ID, ["http_429", "http_429:3"])
        url = sim.base_url + DETAIL.format(SEED_INSTANCE_ID)
        for expected in ("7", "3"):
            async with session.get(url, headers={"token": sim.token}) as response:
                assert response.status == 429
                assert response.headers["Retry-After"] == expected


@pytest.mark.parametrize("code", ["10001", "10012"])
async def test_envelope_code_faults(
    sim: Simulator, session: aiohttp.ClientSession, code: str
) -> None:
    sim.script_faults(SEED_INSTANCE_ID, [f"code_{code}"])
    body = await detail(session, sim, SEED_INSTANCE_ID)
    assert body["code"] == code
    assert body["data"] is None


async def test_truncated_and_html_faults(sim: Simulator, session: aiohttp.ClientSession) -> None:
    url = sim.base_url + DETAIL.format(SEED_INSTANCE_ID)
    headers = {"token": sim.token}
    async with session.get(url, headers=headers) as response:
        whole = await response.read()
    sim.script_faults(SEED_INSTANCE_ID, ["truncated", "html"])
    async with session.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        cut = await response.read()
    assert 0 < len(cut) < len(whole)
    assert whole.startswith(cut)
    with pytest.raises(ValueError):
        json.loads(cut)
    async with session.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert "<html" in (await response.text()).lower()


async def test_reset_drops_the_connection(sim: Simulator, session: aiohttp.ClientSession) -> None:
    # aiohttp re-sends an idempotent request once when the connection drops, so one reset is
    # absorbed by that retry and two in a row reach the caller.
    sim.script_faults(SEED_INSTANCE_ID, ["reset"])
    assert (await detail(session, sim, SEED_INSTANCE_ID))["code"] == "0"
    assert sim.stats["endpoints"] == {"detail": 2}
    sim.script_faults(SEED_INSTANCE_ID, ["reset", "reset"])
    with pytest.raises(aiohttp.ClientError):
        await detail(session, sim, SEED_INSTANCE_ID)
    assert (await detail(session, sim, SEED_INSTANCE_ID))["code"] == "0"
    assert sim.stats["faults"] == {"reset": 3}


async def test_hang_times_out_on_the_client(sim: Simulator, session: aiohttp.ClientSession) -> None:
    sim.script_faults(SEED_INSTANCE_ID, ["hang"])
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await call(
            session,
            "GET",
            sim.base_url + DETAIL.format(SEED_INSTANCE_ID),
            headers={"token": sim.token},
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    assert time.monotonic() - started >= 0.29
    assert (await detail(session, sim, SEED_INSTANCE_ID))["code"] == "0"


async def test_close_does_not_wait_for_hung_requests(session: aiohttp.ClientSession) -> None:
    sim = Simulator(instances=1)
    await sim.start()
    sim.script_faults(SEED_INSTANCE_ID, ["hang", "hang"])
    pending = [asyncio.ensure_future(detail(session, sim, SEED_INSTANCE_ID)) for _ in range(2)]
    while sim.stats["total"] < 2:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await sim.close()
    assert time.monotonic() - started < 2  # a hung handler would hold it for good
    for outcome in await asyncio.gather(*pending, return_exceptions=True):
        assert isinstance(outcome, aiohttp.ClientError)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no handler left behind
    await sim.close()  # closing twice is harmless


async def test_slow_fault_and_latency(session: aiohttp.ClientSession) -> None:
    async with Simulator(instances=1, latency=0.05) as sim:
        started = time.monotonic()
        assert (await detail(session, sim, SEED_INSTANCE_ID))["code"] == "0"
        assert time.monotonic() - started >= 0.05
        sim.set_latency((0.06, 0.08))
        started = time.monotonic()
        await call(session, "GET", sim.base_url + LIST, params={"limit": "1"})
        assert time.monotonic() - started >= 0.06
        sim.set_latency(0)
        sim.script_faults(SEED_INSTANCE_ID, ["slow:0.2"])
        started = time.monotonic()
        body = await detail(session, sim, SEED_INSTANCE_ID)
        assert time.monotonic() - started >= 0.2
        assert body["data"] == SEED_SAMPLE["data"]
        assert sim.stats["faults"] == {"slow": 1}


async def test_scripted_faults_come_in_order_then_normal(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    target, bystander = sim.instance_ids[1], sim.instance_ids[2]
    sim.script_faults(target, ["http_503", "code_10001"])
    sim.fail_times(target, 1, kind="code_10012")
    sim.script_faults("list", ["http_502"])
    assert sim.pending_faults(target) == ["http_503", "code_10001", "code_10012"]
    assert (await detail(session, sim, bystander))["code"] == "0"
    url = sim.base_url + DETAIL.format(target)
    async with session.get(url, headers={"token": sim.token}) as response:
        assert response.status == 503
    assert (await detail(session, sim, target))["code"] == "10001"
    assert (await detail(session, sim, target))["code"] == "10012"
    for _ in range(3):
        assert (await detail(session, sim, target))["code"] == "0"
    assert sim.pending_faults(target) == []
    async with session.get(sim.base_url + LIST, params={"limit": "3"}) as response:
        assert response.status == 502
    assert sim.stats["faults"] == {"http_503": 1, "code_10001": 1, "code_10012": 1, "http_502": 1}
    with pytest.raises(ValueError, match="unknown fault kind"):
        sim.script_faults(target, ["gremlins"])


async def test_fault_rate_is_roughly_honoured_and_lifecycles_still_move(
    session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    kinds = ("http_500", "http_503", "http_429", "code_10001", "code_10012", "truncated", "html")
    async with Simulator(
        instances=4, seed=4, clock=clock, fault_rate=0.3, fault_kinds=kinds
    ) as sim:
        url = sim.base_url + DETAIL.format(SEED_INSTANCE_ID)
        faulted = 0
        seen = []
        step = sim.schedule(SEED_INSTANCE_ID)[-1][1] / 350  # over by request 350 of 400
        for _ in range(400):
            clock.advance(step)
            async with session.get(url, headers={"token": sim.token}) as response:
                raw = await response.read()
            try:
                body = json.loads(raw) if response.status == 200 else None
            except ValueError:
                body = None
            if body is None or body["code"] != "0":
                faulted += 1
            elif not seen or seen[-1] != body["data"]["status"]:
                seen.append(body["data"]["status"])
        assert 0.2 < faulted / 400 < 0.4
        assert sum(sim.stats["faults"].values()) == faulted
        assert set(sim.stats["faults"]) <= set(kinds)
        assert seen == sim.history(SEED_INSTANCE_ID)
        assert seen[-1] in TERMINAL


def test_fault_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="fault rate"):
        Simulator(instances=0, fault_rate=1.5)
    with pytest.raises(ValueError, match="unknown fault kind"):
        Simulator(instances=0, fault_kinds=("http_418",))
    sim = Simulator(instances=0)
    sim.set_fault_rate(0.5, kinds={"reset": 1, "slow:0.1": 3})
    assert sim.fault_kinds == {"reset": 1.0, "slow:0.1": 3.0}
    assert set(FAULT_KINDS) >= {"hang", "reset", "truncated", "html", "http_429"}


# ----- control surface, stats, suspend ----------------------------------------------------------


async def test_control_endpoints(sim: Simulator, session: aiohttp.ClientSession) -> None:
    base = sim.base_url + "/_sim"
    target = sim.instance_ids[3]

    status, listing = await call(session, "GET", f"{base}/instances")
    assert status == 200
    assert listing["ids"] == sim.instance_ids
    assert set(listing["statuses"].values()) == {"Waiting"}

    status, info = await call(
        session, "POST", f"{base}/instances/{target}/status", json={"status": "Stopped"}
    )
    assert status == 200
    assert info["history"] == ["Waiting", "Stopped"]
    assert (await detail(session, sim, target))["data"]["status"] == "Stopped"

    _, added = await call(session, "POST", f"{base}/instances", json={"count": 2})
    assert len(added["ids"]) == 2
    assert (await detail(session, sim, added["ids"][0]))["code"] == "0"
    given = dict(SEED_SAMPLE["data"], id="1" * 32, status="Running")
    _, added = await call(session, "POST", f"{base}/instances", json={"instance": given})
    assert (await detail(session, sim, "1" * 32))["data"] == given

    status, _ = await call(session, "DELETE", f"{base}/instances/{target}")
    assert status == 200
    assert (await detail(session, sim, target))["code"] == "10004"
    status, missing = await call(session, "GET", f"{base}/instances/{target}")
    assert status == 404
    assert "error" in missing

    _, pending = await call(
        session,
        "POST",
        f"{base}/instances/{SEED_INSTANCE_ID}/faults",
        json={"faults": ["code_10001"]},
    )
    assert pending == {"pending": ["code_10001"]}
    assert (await detail(session, sim, SEED_INSTANCE_ID))["code"] == "10001"

    _, config = await call(session, "POST", f"{base}/faults", json={"rate": 1, "kinds": ["html"]})
    assert config == {"rate": 1.0, "kinds": {"html": 1.0}}
    async with session.get(sim.base_url + LIST, params={"limit": "1"}) as response:
        assert response.content_type == "text/html"
    await call(session, "POST", f"{base}/faults", json={"rate": 0})

    _, clock_state = await call(session, "POST", f"{base}/freeze")
    assert clock_state["frozen"] is True
    _, clock_state = await call(session, "POST", f"{base}/advance", json={"seconds": 1000})
    assert clock_state["simTime"] == pytest.approx(1000)
    assert sim.status(SEED_INSTANCE_ID) != "Waiting"
    _, clock_state = await call(session, "POST", f"{base}/unfreeze")
    assert clock_state["frozen"] is False

    _, issued = await call(session, "POST", f"{base}/tokens", json={"ttl": 60})
    assert (await detail(session, sim, SEED_INSTANCE_ID, token=issued["token"]))["code"] == "0"
    await call(session, "POST", f"{base}/tokens/expire", json={"token": issued["token"]})
    assert (await detail(session, sim, SEED_INSTANCE_ID, token=issued["token"]))["code"] == "10008"

    _, latency = await call(session, "POST", f"{base}/latency", json={"latency": [0, 0.001]})
    assert latency == {"latency": [0, 0.001]}

    status, error = await call(session, "POST", f"{base}/advance", json={"seconds": "soon"})
    assert status == 400
    assert "seconds" in error["error"]
    status, _ = await call(session, "POST", f"{base}/instances/{SEED_INSTANCE_ID}/status", data="{")
    assert status == 400

    _, stats = await call(session, "GET", f"{base}/stats")
    assert stats == sim.stats
    assert stats["endpoints"] == {"detail": stats["total"] - 1, "list": 1}
    _, stats = await call(session, "POST", f"{base}/stats/reset")
    assert stats == {"total": 0, "endpoints": {}, "instances": {}, "faults": {}}


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


async def test_suspend_and_resume_on_the_same_port(
    sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    port = sim.port
    assert sim.base_url == f"http://127.0.0.1:{port}"
    sim.script_faults(SEED_INSTANCE_ID, ["hang"])
    hung = asyncio.ensure_future(detail(session, sim, SEED_INSTANCE_ID))
    while sim.stats["total"] < 1:
        await asyncio.sleep(0.01)
    await sim.suspend()
    with pytest.raises(aiohttp.ClientError):
        await hung
    with pytest.raises(aiohttp.ClientConnectionError):
        await detail(session, sim, SEED_INSTANCE_ID)
    clock.advance(1000)  # the clock runs on while the process is "down"
    await sim.resume()
    assert sim.port == port
    data = (await detail(session, sim, SEED_INSTANCE_ID))["data"]
    assert data["status"] == sim.status(SEED_INSTANCE_ID) != "Waiting"


async def test_start_twice_is_refused(sim: Simulator) -> None:
    with pytest.raises(RuntimeError, match="already"):
        await sim.start()
    with pytest.raises(RuntimeError, match="already"):
        await sim.resume()


# ----- command line -----------------------------------------------------------------------------


class Cli:
    """The simulator's command line in a child process, its stdout read line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))


@pytest.fixture
def cli() -> Iterator[Cli]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiocontainer.simulator",
            *("--port", "0", "--instances", "5", "--seed", "3", "--token", "T"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Cli(proc)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        running.pump.join(5)
        assert proc.stderr is not None
        proc.stderr.close()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(cli: Cli, signum: int) -> None:
    lines = cli.lines
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 15
    while len(seen) < 3 and time.monotonic() < deadline:
        line = lines.get(timeout=15)
        for prefix in ("base_url: ", "token: ", "export "):
            if line.startswith(prefix):
                seen[prefix] = line.removeprefix(prefix)
    base_url, token = seen["base_url: "], seen["token: "]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
    assert not base_url.endswith(":0")
    assert token == "T"
    assert f"AIOCONTAINER_BASE_URL={base_url}" in seen["export "]
    assert "AIOCONTAINER_TOKEN=T" in seen["export "]
    response = requests.get(
        base_url + DETAIL.format(SEED_INSTANCE_ID), headers={"token": "T"}, timeout=5
    )
    assert response.json()["data"] == SEED_SAMPLE["data"]
    listing = requests.get(base_url + LIST, json={"limit": 10}, headers={"token": "T"}, timeout=5)
    assert len(listing.json()["data"]) == 5
    cli.proc.send_signal(signum)
    assert cli.proc.wait(10) == 0
    assert cli.proc.stderr is not None
    assert "Traceback" not in cli.proc.stderr.read()


def test_cli_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port), "--instances", "1"]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--speed", "0"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        main(["--latency", "a,b,c"])
    assert "--latency" in capsys.readouterr().err
