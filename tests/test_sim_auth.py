"""Tokens: how the simulator signs them, when they expire, renewal, and who may log in."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from aiocontainer.simulator import SEED_INSTANCE_ID, Simulator
from tests.sim_support import (
    DETAIL,
    TOKENS_NEXT,
    TOKENS_STATE,
    call,
    clock,
    detail,
    session,
    sim,
)

__all__ = ["clock", "session", "sim"]  # the fixtures, for the tests below


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
