"""Helpers shared by the simulator's tests: a manual clock, fixtures and plain HTTP calls.

The simulator is read only through plain HTTP clients here (aiohttp; requests for the command
line), never through aiocontainer's own client, so the two cannot agree on a misreading.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aiocontainer.simulator import Simulator

ROOT = Path(__file__).resolve().parent.parent
SEED_SAMPLE = json.loads((ROOT / "tests" / "samples" / "seed_detail.json").read_text("utf-8"))
DETAIL = "/ai/openapi/v2/instance-service/{}/detail"
LIST = "/ai/openapi/v2/instance-service/task"
RESTART = "/ai/openapi/v2/instance-service/task/actions/restart"
TOKENS_NEXT = "/ac/openapi/v2/tokens/next"
TOKENS_STATE = "/ac/openapi/v2/tokens/state"
CENTER = "/ac/openapi/v2/center"
AKSK_TOKENS = "/api/user/v3/tokens"
PASSWORD_TOKENS = "/ac/openapi/v2/tokens"
STATUSES = ("Waiting", "Deploying", "Running", "Terminated", "Failed", "Completed")
TERMINAL = ("Terminated", "Failed", "Completed")
EPOCH = datetime(2023, 3, 1, 8, 0, 0)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
DURATION = re.compile(r"^\d+:\d{2}:\d{2}$")


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

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
