"""Faults and delays: the pure plan (which request gets what) and what a client sees over HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from aiocontainer._sim_faults import FaultPlan, Latency, format_fault, latency_range, parse_fault
from aiocontainer.simulator import FAULT_KINDS, SEED_INSTANCE_ID, Simulator
from tests.sim_support import (
    DETAIL,
    LIST,
    SEED_SAMPLE,
    TERMINAL,
    ManualClock,
    call,
    clock,
    detail,
    session,
    sim,
)

__all__ = ["clock", "session", "sim"]  # the fixtures, for the tests below


# ----- the plan, without sockets ----------------------------------------------------------------


def test_fault_specs_round_trip_and_are_checked() -> None:
    for spec in ("http_503", "slow:0.2", "http_429:5", "hang"):
        assert format_fault(parse_fault(spec)) == spec
    assert parse_fault("slow:0.25") == ("slow", 0.25)
    for bad in ("gremlins", "http_503:1", "slow:-1", "slow:inf", "slow:soon"):
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_scripted_faults_are_served_in_order_before_random_ones() -> None:
    plan = FaultPlan(seed=1, rate=1.0, kinds=["html"])
    plan.script("a", ["http_503", "code_10001"])
    plan.script("a", ["slow:0.1"])
    assert plan.pending("a") == ["http_503", "code_10001", "slow:0.1"]
    served = [plan.take("a") for _ in range(4)]
    assert served == [("http_503", None), ("code_10001", None), ("slow", 0.1), ("html", None)]
    assert plan.pending("a") == []


def test_scripted_faults_are_kept_per_key_and_can_be_cleared() -> None:
    plan = FaultPlan(seed=1)
    plan.script("a", ["http_503"])
    plan.script("list", ["http_502"])
    assert plan.take("b") is None
    plan.clear("a")
    assert plan.take("a") is None
    assert plan.take("list") == ("http_502", None)
    plan.script("a", ["reset"])
    plan.clear()
    assert plan.pending("a") == []


def test_the_random_rate_and_mix_are_drawn_from_the_seed() -> None:
    draws = []
    for _ in range(2):
        plan = FaultPlan(seed=5, rate=0.3, kinds={"http_503": 1, "html": 3})
        draws.append([plan.take("x") for _ in range(2000)])
    assert draws[0] == draws[1]
    faults = [fault for fault in draws[0] if fault is not None]
    assert 0.25 < len(faults) / 2000 < 0.35
    assert 0.65 < sum(f == ("html", None) for f in faults) / len(faults) < 0.85


def test_latency_draws_stay_in_range() -> None:
    latency = Latency(seed=1, every=(0.01, 0.02), slow=0.5)
    assert all(0.01 <= latency.draw() <= 0.02 for _ in range(100))
    assert latency.draw_slow(("slow", None)) == 0.5
    assert latency.draw_slow(("slow", 0.1)) == 0.1
    latency.set(0)
    assert latency.draw() == 0
    for bad in (-1, (0.2, 0.1), (0, float("inf"))):
        with pytest.raises(ValueError, match="latency"):
            latency_range(bad)


# ----- over HTTP --------------------------------------------------------------------------------


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
