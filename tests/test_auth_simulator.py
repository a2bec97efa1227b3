"""ScnetAuth against the embedded simulator's login, regions, center and renewal endpoints."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiocontainer import (
    Credentials,
    LoginError,
    RegionUnavailableError,
    ScnetAuth,
)
from aiocontainer.auth import _RegionProvider
from aiocontainer.simulator import SEED_INSTANCE_ID, Simulator


class Clock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(instances=3, seed=3) as simulator:
        yield simulator


def auth_for(sim: Simulator, *, secret_key: str | None = None, **options: Any) -> ScnetAuth:
    creds = Credentials(sim.user, sim.access_key, secret_key or sim.secret_key)
    return ScnetAuth(creds, auth_url=sim.url, platform_url=sim.url, **options)


def calls(sim: Simulator, endpoint: str) -> int:
    return int(sim.stats["endpoints"].get(endpoint, 0))


async def test_regions_and_a_client_from_the_simulator_keys(sim: Simulator) -> None:
    async with auth_for(sim) as auth:
        regions = await auth.regions()
        assert [(r.name, r.cluster_id, r.available) for r in regions] == [
            (r.name, r.cluster_id, r.available) for r in sim.regions
        ]
        usable = [r for r in regions if r.available]
        for region in usable:
            urls = await auth.ai_urls(region.name)
            assert urls == [f"{sim.url}/ai"]  # the disabled second entry is left out
            async with await auth.client(region.name) as client:
                assert client.base_url == sim.url  # one trailing /ai stripped
                detail = await client.get_instance(SEED_INSTANCE_ID)
                assert detail.id == SEED_INSTANCE_ID
    assert calls(sim, "tokens") == 1


async def test_unavailable_region_is_refused_without_an_ai_request(sim: Simulator) -> None:
    frozen = next(r for r in sim.regions if not r.available)
    async with auth_for(sim) as auth:
        with pytest.raises(RegionUnavailableError, match="disabled or in arrears"):
            await auth.client(frozen.cluster_id)
        with pytest.raises(RegionUnavailableError, match="platform's own token"):
            await auth.client("0")
    assert calls(sim, "detail") == 0 and calls(sim, "center") == 0


async def test_wrong_secret_key_is_one_login_call(sim: Simulator) -> None:
    async with auth_for(sim, secret_key="0" * 32) as auth:
        with pytest.raises(LoginError, match="clock") as info:
            await auth.regions()
    assert calls(sim, "tokens") == 1
    assert sim.secret_key not in str(info.value) and "0" * 32 not in str(info.value)


async def test_stale_timestamp_is_refused_once() -> None:
    clock = Clock()
    async with Simulator(instances=0) as simulator:
        clock.now -= 3600  # this machine's clock an hour behind the platform's
        async with auth_for(simulator, clock=clock) as auth:
            with pytest.raises(LoginError):
                await auth.regions()
        assert calls(simulator, "tokens") == 1


async def test_expired_token_10008_costs_one_renewal(sim: Simulator) -> None:
    region = next(r for r in sim.regions if r.available)
    async with auth_for(sim) as auth:
        async with await auth.client(region.name, max_attempts=2) as client:
            await client.get_instance(SEED_INSTANCE_ID)
            token = await _RegionProvider(auth, region.cluster_id, client_margin=60.0)()
            sim.expire_token(token)
            await client.get_instance(SEED_INSTANCE_ID)
    assert calls(sim, "tokens_next") + calls(sim, "tokens") == 2  # the login and one renewal


async def test_short_lived_tokens_one_call_per_lifetime_against_the_simulator() -> None:
    clock = Clock()
    start = clock.now
    async with Simulator(instances=1, token_ttl=20.0, token_clock=clock) as simulator:
        region = next(r for r in simulator.regions if r.available)
        async with auth_for(simulator, clock=clock) as auth:
            ask = _RegionProvider(auth, region.cluster_id, client_margin=60.0)
            for step in range(401):
                clock.now = start + step * 0.5
                assert simulator.token_is_valid(await ask())
        renewals = calls(simulator, "tokens_next")
        assert calls(simulator, "tokens") == 1
        assert 200 // 20 <= renewals <= 200 // 15


async def test_a_token_past_the_renewal_limit_signs_in_again() -> None:
    clock = Clock()
    async with Simulator(instances=0, token_ttl=60.0, token_clock=clock) as simulator:
        region = next(r for r in simulator.regions if r.available)
        async with auth_for(simulator, clock=clock) as auth:
            ask = _RegionProvider(auth, region.cluster_id, client_margin=60.0)
            await ask()
            clock.now += 60 + 24 * 3600 + 5  # past the renewal limit: straight to a login
            assert simulator.token_is_valid(await ask())
        assert calls(simulator, "tokens") == 2 and calls(simulator, "tokens_next") == 0
