"""ScnetAuth against a scripted platform on 127.0.0.1: login, regions, center, renewal, limits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses

from aiocontainer import (
    AuthError,
    Credentials,
    HTTPStatusError,
    LoginError,
    PermissionDeniedError,
    Region,
    RegionNotFoundError,
    RegionUnavailableError,
    ResponseError,
    ScnetAuth,
    TransportError,
)
from aiocontainer._tokens import BLANKED
from aiocontainer.auth import _RegionProvider
from tests.conftest import closed_port, seed_envelope

USER, AK, SK = "bob", "AKID0123456789", "sk-NEVER-SHOWN-0123456789abcdef"
T0 = 1_700_000_000.0
DETAIL = "/ai/openapi/v2/instance-service/{id}/detail"
SEED_ID = "4c1f43ddb030483e89b55413bee6c004"


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@attrs.define
class Issued:
    cluster_id: str
    expires: float  # epoch seconds


@attrs.define
class FakePlatform:
    """Token, renewal, center and detail endpoints, scripted; it checks the signature itself."""

    clock: Any
    ttl: float = 3600.0
    regions: list[tuple[str, str, bool]] = attrs.field(
        factory=lambda: [("ac", "0", True), ("East", "11112", True), ("Frozen", "33334", False)]
    )
    skew_allowed: float = 300.0
    refuse_renewals: bool = False
    login_faults: list[int] = attrs.field(factory=list)  # HTTP statuses to answer first
    revoked: set[str] = attrs.field(factory=set)
    always_10008: bool = False
    enabled_urls: int = 1
    dead_url_first: str | None = None  # an enabled AI URL listed before the live one
    center_padding: int = 0  # characters of filler in the center's answer
    center_gzip: bool = False  # the center's answer sent gzip-compressed
    issued: dict[str, Issued] = attrs.field(factory=dict)
    calls: Counter[str] = attrs.field(factory=Counter)
    headers_seen: list[dict[str, str]] = attrs.field(factory=list)
    handed: list[tuple[float, str]] = attrs.field(factory=list)
    server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def issue(self, cluster_id: str) -> str:
        n = len(self.issued)
        expires = self.clock() + self.ttl
        payload = {"user": USER, "clusterId": cluster_id, "expireTime": str(int(expires * 1000))}
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        token = f"eyJhbGciOiJIUzI1NiJ9.{body}.sig{n}"
        self.issued[token] = Issued(cluster_id, expires)
        return token

    def valid(self, token: str | None) -> Issued | None:
        issued = self.issued.get(token or "")
        if issued is None or token in self.revoked or self.clock() >= issued.expires:
            return None
        return issued

    @staticmethod
    def ok(data: Any) -> web.Response:
        return web.json_response({"code": "0", "msg": "success", "data": data})

    @staticmethod
    def refuse(code: str, msg: str, status: int = 200) -> web.Response:
        return web.json_response({"code": code, "msg": msg, "data": None}, status=status)

    def answer_tokens(self) -> web.Response:
        data = [
            {"clusterName": name, "clusterId": cid, "token": self.issue(cid) if on else None}
            for name, cid, on in self.regions
        ]
        return self.ok(data)

    async def login(self, request: web.Request) -> web.StreamResponse:
        self.calls["login"] += 1
        if self.login_faults:
            return web.Response(status=self.login_faults.pop(0), text="<html>busy</html>")
        h = request.headers
        fields = {"accessKey": h.get("accessKey"), "timestamp": h.get("timestamp")}
        text = json.dumps({**fields, "user": h.get("user")}, separators=(",", ":"))
        expected = hmac.new(SK.encode(), text.encode(), hashlib.sha256).hexdigest()
        if h.get("user") != USER or h.get("accessKey") != AK:
            return self.refuse("10011", "access key not found")
        if not hmac.compare_digest(expected, h.get("signature", "")):
            return self.refuse("10012", "signature mismatch")
        if abs(float(h.get("timestamp", "0")) - self.clock()) > self.skew_allowed:
            return self.refuse("10013", "timestamp expired")
        return self.answer_tokens()

    async def password_login(self, request: web.Request) -> web.StreamResponse:
        self.calls["password"] += 1
        h = request.headers
        if (h.get("user"), h.get("password"), h.get("orgId")) != (USER, "pw", "org-1"):
            return self.refuse("10007", "bad password", status=401)
        return self.answer_tokens()

    async def renew(self, request: web.Request) -> web.StreamResponse:
        self.calls["renew"] += 1
        issued = self.issued.get(request.headers.get("token", ""))
        if self.refuse_renewals or issued is None:
            return self.refuse("10008", "renewal refused")
        if self.clock() > issued.expires + 24 * 3600:
            return self.refuse("10008", "token expired more than 24 hours ago")
        return self.ok(self.issue(issued.cluster_id))

    async def center(self, request: web.Request) -> web.StreamResponse:
        self.calls["center"] += 1
        issued = self.valid(request.headers.get("token"))
        if issued is None:
            return self.refuse("10008", "token invalid")
        if issued.cluster_id == "0":
            return self.refuse("10001", "internal_error")
        urls = [{"enable": "true", "version": "v2", "url": f"{self.url}/ai"}] * self.enabled_urls
        if self.dead_url_first:
            urls.insert(0, {"enable": "true", "version": "v2", "url": self.dead_url_first})
        urls.append({"enable": "false", "version": "v1", "url": "http://127.0.0.1:9/ai"})
        info = {"userName": "acct01", "filler": "x" * self.center_padding}
        response = self.ok({"aiUrls": urls, "clusterUserInfo": info})
        if self.center_gzip:
            response.enable_compression(web.ContentCoding.gzip)
        return response

    async def detail(self, request: web.Request) -> web.StreamResponse:
        self.calls["detail"] += 1
        token = request.headers.get("token")
        issued = self.valid(token)
        if self.always_10008 or issued is None or issued.cluster_id == "0":
            return self.refuse("10008", "insufficient permission")
        assert token is not None
        self.handed.append((self.clock(), token))
        envelope = seed_envelope()
        envelope["data"]["id"] = request.match_info["id"]
        return web.json_response(envelope)

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.headers_seen.append(dict(request.headers))
        response: web.StreamResponse = await handler(request)
        return response

    async def start(self) -> None:
        app = web.Application(middlewares=[self.record])
        app.router.add_post("/api/user/v3/tokens", self.login)
        app.router.add_post("/ac/openapi/v2/tokens", self.password_login)
        app.router.add_post("/ac/openapi/v2/tokens/next", self.renew)
        app.router.add_get("/ac/openapi/v2/center", self.center)
        app.router.add_get(DETAIL.format(id="{id}"), self.detail)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def started(clock: Any) -> AsyncIterator[FakePlatform]:
    fake = FakePlatform(clock=clock)
    await fake.start()
    try:
        yield fake
    finally:
        assert fake.server is not None
        await fake.server.close()


@pytest.fixture
async def platform(clock: FakeClock) -> AsyncIterator[FakePlatform]:
    """The scripted platform on the test's fake clock."""
    async for fake in started(clock):
        yield fake


@pytest.fixture
async def live_platform() -> AsyncIterator[FakePlatform]:
    """The scripted platform on the wall clock, for runs through a real ContainerClient."""
    async for fake in started(time.time):
        yield fake


class Sleeps:
    """An injected sleep that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_auth(platform: FakePlatform, clock: Any, **options: Any) -> ScnetAuth:
    creds = options.pop("credentials", None) or Credentials(USER, AK, SK)
    options.setdefault("sleep", Sleeps())
    return ScnetAuth(
        creds, auth_url=platform.url, platform_url=platform.url, clock=clock, **options
    )


# -- regions and clients ---------------------------------------------------------------------


async def test_regions_from_one_signed_login(platform: FakePlatform, clock: FakeClock) -> None:
    async with make_auth(platform, clock) as auth:
        regions = await auth.regions()
        assert regions == [
            Region(name="East", cluster_id="11112", available=True),
            Region(name="Frozen", cluster_id="33334", available=False),
        ]
        assert await auth.regions() == regions
        assert platform.calls["login"] == 1  # cached until refresh=True
        await auth.regions(refresh=True)
        assert platform.calls["login"] == 2
        assert auth.stats.logins == 2


async def test_client_uses_the_enabled_center_url_with_ai_stripped(
    live_platform: FakePlatform,
) -> None:
    platform = live_platform
    async with make_auth(platform, time.time) as auth:
        assert await auth.ai_urls("East") == [f"{platform.url}/ai"]
        async with await auth.client("East", concurrency=4) as client:
            assert client.base_url == platform.url
            detail = await client.get_instance(SEED_ID)
            assert detail.id == SEED_ID
            assert await auth.client("11112") is not None  # by cluster id; center cached
        assert platform.calls["center"] == 1 and platform.calls["login"] == 1
        assert (await auth.region()).name == "East"  # the only region with a token


async def test_failover_to_the_second_ai_url_when_the_first_refuses_connections(
    live_platform: FakePlatform,
) -> None:
    live_platform.dead_url_first = f"http://127.0.0.1:{closed_port()}/ai"
    async with make_auth(live_platform, time.time) as auth:
        async with await auth.client("East", backoff_factor=0.0) as client:
            assert client.base_urls == (
                live_platform.dead_url_first.removesuffix("/ai"),
                live_platform.url,
            )
            assert (await client.get_instance(SEED_ID)).id == SEED_ID
            assert client.base_url == live_platform.url  # it sticks to the one that worked
            await client.get_instance(SEED_ID)
    assert live_platform.calls["detail"] == 2


async def test_unknown_region_lists_known_names_without_any_other_request(
    platform: FakePlatform, clock: FakeClock
) -> None:
    async with make_auth(platform, clock) as auth:
        with pytest.raises(RegionNotFoundError, match=r"no region 'Mars'; known: East \(11112\)"):
            await auth.client("Mars")
        with pytest.raises(RegionUnavailableError, match="disabled or in arrears") as info:
            await auth.client("Frozen")
        assert info.value.reason == "no_token"
        with pytest.raises(RegionUnavailableError, match="platform's own token"):
            await auth.client("ac")
    assert platform.calls == Counter({"login": 1})  # no center, no AI API


async def test_default_region_of_the_profile_is_used(
    platform: FakePlatform, clock: FakeClock
) -> None:
    platform.regions.append(("West", "22223", True))
    creds = Credentials(USER, AK, SK, default_region="22223")
    async with make_auth(platform, clock, credentials=creds) as auth:
        assert (await auth.region()).name == "West"
    async with make_auth(platform, clock) as auth:
        with pytest.raises(RegionNotFoundError, match="several regions have a token"):
            await auth.client()


async def test_center_without_an_enabled_url_makes_the_region_unavailable(
    platform: FakePlatform, clock: FakeClock
) -> None:
    platform.enabled_urls = 0
    async with make_auth(platform, clock) as auth:
        with pytest.raises(RegionUnavailableError, match="no enabled AI URL") as info:
            await auth.client("East")
        assert info.value.reason == "no_ai_url"
    assert platform.calls["detail"] == 0


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
async def test_a_long_answer_is_read_whole_and_an_oversized_one_refused(
    platform: FakePlatform, clock: FakeClock, gzip: bool
) -> None:
    # Compressed, the answers are a few kilobytes on the wire: the bound counts decoded bytes.
    platform.center_gzip = gzip
    platform.center_padding = 900_000  # many chunks on the wire, under the 1 MiB bound
    async with make_auth(platform, clock) as auth:
        assert await auth.ai_urls("East") == [f"{platform.url}/ai"]
    platform.center_padding = 1_100_000
    async with make_auth(platform, clock) as auth:
        with pytest.raises(ResponseError, match="larger than 1048576 bytes"):
            await auth.ai_urls("East")


async def test_ai_override_of_the_profile_replaces_the_center(
    platform: FakePlatform, clock: FakeClock
) -> None:
    creds = Credentials(USER, AK, SK, base_overrides={"ai": "http://127.0.0.1:1/ai/"})
    async with make_auth(platform, clock, credentials=creds) as auth:
        async with await auth.client("East") as client:
            assert client.base_url == "http://127.0.0.1:1"
    assert platform.calls["center"] == 0


async def test_password_login_behind_the_same_interface(
    platform: FakePlatform, clock: FakeClock
) -> None:
    async with make_auth(
        platform, clock, credentials=Credentials.from_password(USER, "pw", "org-1")
    ) as auth:
        assert [r.name for r in await auth.regions()] == ["East", "Frozen"]
    async with make_auth(
        platform, clock, credentials=Credentials.from_password(USER, "wrong", "org-1")
    ) as auth:
        with pytest.raises(LoginError, match="password and the org id") as info:
            await auth.regions()
        assert info.value.http_status == 401
        assert "wrong" not in str(info.value)
    assert platform.calls["password"] == 2 and platform.calls["login"] == 0


# -- refusals and retries --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("creds", "code"),
    [
        (Credentials(USER, AK, "sk-wrong"), "10012"),
        (Credentials(USER, "AK-unknown", SK), "10011"),
    ],
)
async def test_wrong_keys_one_call_and_advice(
    platform: FakePlatform, clock: FakeClock, creds: Credentials, code: str
) -> None:
    sleeps = Sleeps()
    async with make_auth(platform, clock, credentials=creds, sleep=sleeps) as auth:
        with pytest.raises(LoginError) as info:
            await auth.regions()
    assert platform.calls["login"] == 1 and sleeps.waits == []
    assert info.value.code == code
    assert "access key" in str(info.value) and "clock" in str(info.value)


async def test_stale_timestamp_is_a_login_error_after_one_call(platform: FakePlatform) -> None:
    behind = FakeClock(T0 - 3600)  # this machine's clock is an hour late
    async with make_auth(platform, behind) as auth:
        with pytest.raises(LoginError, match=r"timestamp expired.*clock"):
            await auth.regions()
    assert platform.calls["login"] == 1


async def test_login_retries_only_5xx_a_bounded_number_of_times(
    platform: FakePlatform, clock: FakeClock
) -> None:
    platform.login_faults = [503, 502]
    sleeps = Sleeps()
    async with make_auth(platform, clock, sleep=sleeps) as auth:
        assert len(await auth.regions()) == 2
    assert platform.calls["login"] == 3 and len(sleeps.waits) == 2
    platform.login_faults = [500, 500, 500, 500]
    async with make_auth(platform, clock, max_attempts=3) as auth:
        with pytest.raises(HTTPStatusError):
            await auth.regions()
    assert platform.calls["login"] == 6
    platform.login_faults = [403]
    async with make_auth(platform, clock) as auth:
        with pytest.raises(LoginError, match="HTTP 403"):
            await auth.regions()
    assert platform.calls["login"] == 7


async def test_transport_failure_is_retried_then_a_transport_error() -> None:
    sleeps = Sleeps()
    auth = ScnetAuth(
        Credentials(USER, AK, SK),
        auth_url="http://127.0.0.1:1",
        platform_url="http://127.0.0.1:1",
        sleep=sleeps,
        max_attempts=2,
    )
    async with auth:
        with pytest.raises(TransportError) as info:
            await auth.regions()
    assert len(sleeps.waits) == 1 and auth.stats.logins == 2
    assert SK not in repr(info.value)


# -- renewal ---------------------------------------------------------------------------------


def provider(auth: ScnetAuth, client_margin: float = 60.0) -> _RegionProvider:
    """What ``auth.client("East")`` gives its client as ``token=``."""
    return _RegionProvider(auth, "11112", client_margin=client_margin)


@pytest.fixture
async def auth600(platform: FakePlatform, clock: FakeClock) -> AsyncIterator[ScnetAuth]:
    """A ScnetAuth on the fake clock, against a platform issuing 600 s tokens."""
    platform.ttl = 600.0
    async with make_auth(platform, clock) as auth:
        yield auth


async def test_renewal_before_expiry_on_the_injected_clock(
    platform: FakePlatform, clock: FakeClock, auth600: ScnetAuth
) -> None:
    ask = provider(auth600)
    first = await ask()
    assert platform.calls == Counter({"login": 1})
    clock.now = T0 + 539  # 61 s before expiry: no renewal yet
    assert await provider(auth600)() == first
    clock.now = T0 + 541  # inside the 60 s margin: one tokens/next call
    second = await ask()
    assert second != first and platform.issued[second].expires == T0 + 541 + 600
    assert platform.calls == Counter({"login": 1, "renew": 1})
    assert await provider(auth600)() == second  # another client gets it without a call
    assert platform.calls == Counter({"login": 1, "renew": 1})


async def test_refused_renewal_leads_to_one_fresh_signed_call(
    platform: FakePlatform, clock: FakeClock, auth600: ScnetAuth
) -> None:
    ask = provider(auth600)
    first = await ask()
    platform.refuse_renewals = True
    clock.now = T0 + 590
    second = await ask()
    assert second != first and platform.issued[second].cluster_id == "11112"
    assert platform.calls == Counter({"login": 2, "renew": 1})
    assert auth600.stats.refused_renewals == 1


async def test_more_than_24_hours_past_expiry_skips_renewal(
    platform: FakePlatform, clock: FakeClock, auth600: ScnetAuth
) -> None:
    ask = provider(auth600)
    await ask()
    clock.now = T0 + 600 + 24 * 3600 + 1
    await ask()
    assert platform.calls == Counter({"login": 2})


async def test_renewals_are_single_flight_across_clients(
    platform: FakePlatform, clock: FakeClock, auth600: ScnetAuth
) -> None:
    providers = [provider(auth600) for _ in range(5)]
    await asyncio.gather(*(p() for p in providers))
    clock.now = T0 + 590
    tokens = await asyncio.gather(*(p() for p in providers for _ in range(10)))
    assert len(set(tokens)) == 1
    assert platform.calls == Counter({"login": 1, "renew": 1})


async def test_short_lived_tokens_cost_one_call_per_token_lifetime(
    platform: FakePlatform, clock: FakeClock
) -> None:
    # 20 s tokens, a client whose 60 s margin makes it ask on every request for 200 s.
    platform.ttl = 20.0
    async with make_auth(platform, clock) as auth:
        ask = provider(auth, client_margin=60.0)
        steps = 800
        for step in range(steps + 1):
            clock.now = T0 + step * 0.25
            token = await ask()
            assert platform.valid(token) is not None, f"an expired token at {clock.now - T0}s"
        calls = platform.calls["login"] + platform.calls["renew"]
        # Renewed 5 s (a quarter of the lifetime) before expiry: one call per 15 s at most.
        assert calls <= 1 + math.ceil(200 / 15)
        assert calls >= 200 // 20  # and it did renew, or the check above would have failed


async def test_clients_renew_before_expiry_on_the_injected_clock(
    platform: FakePlatform, clock: FakeClock, auth600: ScnetAuth
) -> None:
    # The client's own clock (retry deadlines, spacing of early renewals) is the fake one too.
    async with await auth600.client("East", clock=clock) as client:
        await client.get_instance(SEED_ID)
        first = platform.handed[-1][1]
        clock.now = T0 + 530
        await client.get_instance(SEED_ID)
        assert platform.handed[-1][1] == first and platform.calls["renew"] == 0
        clock.now = T0 + 545  # inside the 60 s margin: the next lookup renews first
        await client.get_instance(SEED_ID)
        assert platform.handed[-1][1] != first and platform.calls["renew"] == 1
    assert platform.calls["login"] == 1


async def test_short_lived_tokens_through_a_client(
    platform: FakePlatform, clock: FakeClock
) -> None:
    platform.ttl = 20.0
    async with make_auth(platform, clock) as auth, await auth.client("East", clock=clock) as client:
        for step in range(401):  # a lookup every 0.5 s for 200 s, none refused
            clock.now = T0 + step * 0.5
            await client.get_instance(SEED_ID)
        assert client.stats.retries == 0  # no token was ever refused: renewed in time
    # Renewed a quarter of the lifetime (5 s) before expiry: one call per 15 s at most.
    assert platform.calls["login"] + platform.calls["renew"] <= 1 + math.ceil(200 / 15)
    assert platform.calls["renew"] >= 200 // 20


async def test_10008_leads_to_one_renewal(live_platform: FakePlatform) -> None:
    platform = live_platform
    async with make_auth(platform, time.time) as auth:
        # The resend after a renewal is an attempt of its own: two attempts, no transport retries.
        async with await auth.client("East", max_attempts=2) as client:
            await client.get_instance(SEED_ID)
            platform.revoked.update(platform.issued)  # the platform forgets every token
            await client.get_instance(SEED_ID)
            assert platform.calls["renew"] == 1 and platform.calls["login"] == 1
            # A permission error that no renewal cures: the token that replaced a refused one
            # is not renewed again outside its schedule, so no lookup calls a token endpoint.
            platform.always_10008 = True
            for _ in range(5):
                with pytest.raises(PermissionDeniedError):
                    await client.get_instance(SEED_ID)
            assert platform.calls["renew"] == 1 and platform.calls["login"] == 1


# -- secrets ---------------------------------------------------------------------------------


async def test_secret_key_absent_from_logs_reprs_errors_and_headers(
    live_platform: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    platform = live_platform
    caplog.set_level(logging.DEBUG, logger="aiocontainer")
    texts: list[str] = []
    creds = Credentials(USER, AK, SK)
    platform.login_faults = [503]
    async with make_auth(platform, time.time, credentials=creds) as auth:
        async with await auth.client("East") as client:
            await client.get_instance(SEED_ID)
            texts += [repr(auth), repr(client), repr(creds), str(creds), repr(auth.stats)]
        for bad in ("Mars", "Frozen"):
            with pytest.raises(AuthError) as info:
                await auth.client(bad)
            texts += [repr(info.value), str(info.value)]
    wrong = Credentials(USER, AK, SK + "x")
    async with make_auth(platform, time.time, credentials=wrong) as auth:
        with pytest.raises(LoginError) as login_info:
            await auth.regions()
        texts += [repr(login_info.value), str(login_info.value), repr(login_info.value.__cause__)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [json.dumps(headers) for headers in platform.headers_seen]
    assert any("POST /api/user/v3/tokens -> 503" in t for t in texts)  # the logs were captured
    for text in texts:
        assert SK not in text
    tokens = list(platform.issued)
    for record in caplog.records:
        assert not any(token in record.getMessage() for token in tokens)


async def test_closed_auth_refuses_and_a_borrowed_session_stays_open(
    platform: FakePlatform, clock: FakeClock
) -> None:
    async with aiohttp.ClientSession() as session:
        auth = make_auth(platform, clock, session=session)
        async with auth:
            await auth.regions()
        assert not session.closed
        with pytest.raises(AuthError, match="closed"):
            await auth.regions(refresh=True)


async def test_client_options_cannot_override_url_or_token(
    platform: FakePlatform, clock: FakeClock
) -> None:
    async with make_auth(platform, clock) as auth:
        with pytest.raises(TypeError, match="base_url is chosen"):
            await auth.client("East", base_url="http://127.0.0.1:1")


async def test_a_foreign_error_quoting_a_secret_is_blanked_in_place() -> None:
    # What aiohttp raises stays readable to the caller (on Python 3.10 it can become the context
    # of the next exception raised): the secret key, whole or in part, is blanked out of it.
    secret_key = "SK" + "b" * 30
    creds = Credentials("bob", "AK" + "a" * 30, secret_key)
    foreign = aiohttp.ClientConnectionError(f"proxy said {secret_key}", f"cut: {secret_key[:12]}")
    url = "http://127.0.0.1:9"
    with aioresponses() as mocked:
        mocked.post(re.compile(".*"), exception=foreign, repeat=True)
        mocked.get(re.compile(".*"), exception=foreign, repeat=True)
        async with ScnetAuth(creds, auth_url=url, platform_url=url, max_attempts=1) as auth:
            with pytest.raises(TransportError) as caught:
                await auth.regions()
    assert foreign.args == ("proxy said ***", BLANKED)
    assert caught.value.__context__ is None
    assert secret_key not in str(caught.value)
