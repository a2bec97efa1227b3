"""Tokens: how the simulator signs them, when they expire, renewal, and who may log in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from aiocontainer._sim_auth import (
    CODE_BAD_SIGNATURE,
    CODE_STALE_TIMESTAMP,
    CODE_WRONG_KEYS,
    PLATFORM_CLUSTER_ID,
    TIMESTAMP_WINDOW_SECONDS,
    Account,
    TokenBook,
    signature,
)
from aiocontainer.simulator import SEED_INSTANCE_ID, Region, Simulator
from tests.sim_support import (
    AKSK_TOKENS,
    CENTER,
    DETAIL,
    LIST,
    PASSWORD_TOKENS,
    RESTART,
    TOKENS_NEXT,
    TOKENS_STATE,
    ManualClock,
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


# ----- the token book, without sockets --------------------------------------------------------


def make_book(clock: ManualClock, *, fixed: str | None = None) -> TokenBook:
    return TokenBook(
        secret=b"k" * 32, clock=clock, claims={"user": "u"}, default_cluster="11112", fixed=fixed
    )


def test_a_book_issues_tokens_per_region_and_knows_their_expiry() -> None:
    wall = ManualClock(1_700_000_000.0)
    book = make_book(wall)
    token = book.issue(60, cluster_id="11276")
    assert book.cluster_of(token) == "11276"
    assert book.expiry(token) == 1_700_000_060.0
    assert book.is_valid(token) and book.is_region_token(token)
    wall.advance(60)
    assert not book.is_valid(token)
    platform = book.issue(60, cluster_id=PLATFORM_CLUSTER_ID)
    assert book.is_valid(platform) and not book.is_region_token(platform)
    assert book.cluster_of(book.issue(60)) == "11112"


def test_a_book_verifies_tokens_it_did_not_see_issued() -> None:
    wall = ManualClock(1_700_000_000.0)
    token = make_book(wall).issue(60, cluster_id="11276")
    other = make_book(wall)  # same secret, so the signature holds
    assert other.is_region_token(token) and other.cluster_of(token) == "11276"
    assert not other.is_valid(forged_from(token))
    assert not other.is_valid("a.b.c") and not other.is_valid("x")
    stranger = TokenBook(
        secret=b"z" * 32, clock=wall, claims={}, default_cluster="11112", fixed=None
    )
    assert not stranger.is_valid(token)


def test_a_book_renews_within_a_day_of_expiry_for_the_same_region() -> None:
    wall = ManualClock(1_700_000_000.0)
    book = make_book(wall)
    token = book.issue(60, cluster_id="11276")
    wall.advance(60 + 24 * 3600)  # exactly 24 h past expiry: still renewable
    renewed = book.renew(token, 60)
    assert renewed is not None and book.cluster_of(renewed) == "11276"
    wall.advance(1)
    assert book.renew(token, 60) is None
    assert book.renew(None, 60) is None


def test_a_fixed_token_never_expires_and_belongs_to_the_default_region() -> None:
    wall = ManualClock(1_700_000_000.0)
    book = make_book(wall, fixed="T")
    wall.advance(10**9)
    assert book.is_region_token("T") and book.cluster_of("T") == "11112"
    book.expire("T")
    assert not book.is_valid("T")


# ----- the AK/SK signature ---------------------------------------------------------------------


def test_signature_matches_a_vector_worked_out_by_hand() -> None:
    # HMAC-SHA256, keyed with the secret key, over exactly this text, as lowercase hex
    # (computed outside Python: printf '%s' TEXT | openssl dgst -sha256 -hmac SKEXAMPLESECRET).
    text = '{"accessKey":"AKIDEXAMPLE","timestamp":"1700000000","user":"magic2"}'
    expected = "5cff0ba19e24113ce7e876381aeab0da155e26fec8da8d2e60a40bf4790859e7"
    assert hmac.new(b"SKEXAMPLESECRET", text.encode(), hashlib.sha256).hexdigest() == expected
    given = signature(
        "SKEXAMPLESECRET", access_key="AKIDEXAMPLE", timestamp="1700000000", user="magic2"
    )
    assert given == expected


# ----- the token endpoints over HTTP ---------------------------------------------------------


NOW = 1_700_000_000.0


@pytest.fixture
def wall() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def keyed(wall: ManualClock) -> AsyncIterator[Simulator]:
    async with Simulator(
        instances=3,
        seed=2,
        token_clock=wall,
        access_key="AKIDEXAMPLE",
        secret_key="SKEXAMPLESECRET",
        password="pw",
        org_id="ORG9",
        token_ttl=600,
    ) as simulator:
        yield simulator


def key_headers(sim: Simulator, *, at: float = NOW, **overrides: str) -> dict[str, str]:
    headers = {"user": sim.user, "accessKey": sim.access_key, "timestamp": str(int(at))}
    headers["signature"] = signature(
        overrides.pop("secret_key", sim.secret_key),
        access_key=headers["accessKey"],
        timestamp=headers["timestamp"],
        user=headers["user"],
    )
    headers.update(overrides)
    return headers


async def login(session: aiohttp.ClientSession, sim: Simulator, headers: dict[str, str]) -> Any:
    status, body = await call(session, "POST", sim.url + AKSK_TOKENS, headers=headers)
    assert status == 200
    return body


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


async def test_a_signed_login_answers_one_token_per_region(
    keyed: Simulator, session: aiohttp.ClientSession
) -> None:
    body = await login(session, keyed, key_headers(keyed))
    assert body["code"] == "0"
    entries = body["data"]
    assert [(e["clusterName"], e["clusterId"]) for e in entries] == [
        ("ac", "0"),
        *((r.name, r.cluster_id) for r in keyed.regions),
    ]
    assert [e["token"] is None for e in entries] == [False, False, False, True]
    for entry in entries[:3]:
        assert claims(entry["token"])["clusterId"] == entry["clusterId"]
        assert claims(entry["token"])["expireTime"] == str(int((NOW + 600) * 1000))
    assert keyed.secret_key not in json.dumps(body)
    assert keyed.stats["endpoints"] == {"tokens": 1}


async def test_region_tokens_call_container_apis_and_the_platform_token_does_not(
    keyed: Simulator, session: aiohttp.ClientSession
) -> None:
    entries = (await login(session, keyed, key_headers(keyed)))["data"]
    platform, first, second = (e["token"] for e in entries[:3])
    for token in (first, second):
        assert (await detail(session, keyed, SEED_INSTANCE_ID, token=token))["code"] == "0"
    assert (await detail(session, keyed, SEED_INSTANCE_ID, token=platform))["code"] == "10008"
    for path, method in ((LIST + "?limit=5", "GET"), (RESTART + "?instanceServiceId=x", "POST")):
        _, body = await call(session, method, keyed.url + path, headers={"token": platform})
        assert body["code"] == "10008"
    _, state = await call(session, "GET", keyed.url + TOKENS_STATE, headers={"token": platform})
    assert state["data"] == "token is valid"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"user": "someone"}, CODE_WRONG_KEYS),
        ({"accessKey": "AKOTHER"}, CODE_WRONG_KEYS),
        ({"secret_key": "SKWRONG"}, CODE_BAD_SIGNATURE),
        ({"signature": "00" * 32}, CODE_BAD_SIGNATURE),
        ({"timestamp": "soon"}, CODE_STALE_TIMESTAMP),
        ({"signature": ""}, "10003"),
    ],
)
async def test_a_refused_login_names_why(
    keyed: Simulator, session: aiohttp.ClientSession, change: dict[str, str], code: str
) -> None:
    body = await login(session, keyed, key_headers(keyed, **change))
    assert body["code"] == code
    assert body["data"] is None
    assert keyed.secret_key not in json.dumps(body)


async def test_the_timestamp_window_is_five_minutes_either_way(
    keyed: Simulator, session: aiohttp.ClientSession
) -> None:
    window = TIMESTAMP_WINDOW_SECONDS
    for at in (NOW - window, NOW + window):
        assert (await login(session, keyed, key_headers(keyed, at=at)))["code"] == "0"
    for at in (NOW - window - 1, NOW + window + 1):
        body = await login(session, keyed, key_headers(keyed, at=at))
        assert body["code"] == CODE_STALE_TIMESTAMP


async def test_the_legacy_password_login(keyed: Simulator, session: aiohttp.ClientSession) -> None:
    url = keyed.url + PASSWORD_TOKENS
    good = {"user": keyed.user, "password": "pw", "orgId": "ORG9"}
    _, body = await call(session, "POST", url, headers=good)
    assert body["code"] == "0"
    assert [e["clusterId"] for e in body["data"]] == ["0", "11112", "11276", "11245"]
    for wrong in ({"password": "nope"}, {"orgId": "ORG1"}, {"user": "x"}):
        _, body = await call(session, "POST", url, headers={**good, **wrong})
        assert body["code"] == CODE_WRONG_KEYS
    _, body = await call(session, "POST", url, headers={"user": keyed.user})
    assert body["code"] == "10003"


async def test_the_center_answers_for_the_tokens_region(
    keyed: Simulator, session: aiohttp.ClientSession
) -> None:
    entries = (await login(session, keyed, key_headers(keyed)))["data"]
    for entry in entries[1:3]:
        _, body = await call(session, "GET", keyed.url + CENTER, headers={"token": entry["token"]})
        data = body["data"]
        assert (data["clusterId"], data["clusterName"]) == (
            entry["clusterId"],
            entry["clusterName"],
        )
        assert [u["enable"] for u in data["aiUrls"]] == ["true", "false"]
        assert data["aiUrls"][0]["url"] == f"{keyed.url}/ai"
        assert data["clusterUserInfo"]["userName"] == keyed.user
    _, body = await call(session, "GET", keyed.url + CENTER, headers={"token": entries[0]["token"]})
    assert (body["data"]["clusterId"], body["data"]["aiUrls"]) == ("0", [])
    _, body = await call(session, "GET", keyed.url + CENTER, headers={"token": "nope"})
    assert body["code"] == "10008"


async def test_tokens_expire_on_schedule_and_renew_within_a_day(
    keyed: Simulator, session: aiohttp.ClientSession, wall: ManualClock
) -> None:
    region = (await login(session, keyed, key_headers(keyed)))["data"][2]["token"]
    wall.advance(599)
    assert (await detail(session, keyed, SEED_INSTANCE_ID, token=region))["code"] == "0"
    wall.advance(1)
    assert (await detail(session, keyed, SEED_INSTANCE_ID, token=region))["code"] == "10008"
    _, renewed = await call(session, "POST", keyed.url + TOKENS_NEXT, headers={"token": region})
    fresh = renewed["data"]
    assert claims(fresh)["clusterId"] == "11276"
    assert claims(fresh)["expireTime"] == str(int((wall.now + 600) * 1000))
    assert (await detail(session, keyed, SEED_INSTANCE_ID, token=fresh))["code"] == "0"
    wall.advance(24 * 3600 + 1)  # the first token is now more than a day past expiry
    _, refused = await call(session, "POST", keyed.url + TOKENS_NEXT, headers={"token": region})
    assert refused["code"] == "10008"


async def test_token_endpoints_take_scripted_faults_but_no_random_ones(
    keyed: Simulator, session: aiohttp.ClientSession
) -> None:
    keyed.set_fault_rate(1.0, kinds=["http_503"])
    assert (await login(session, keyed, key_headers(keyed)))["code"] == "0"
    keyed.script_faults("tokens", ["http_503"])
    async with session.post(keyed.url + AKSK_TOKENS, headers=key_headers(keyed)) as response:
        assert response.status == 503
    keyed.script_faults("center", ["code_10001"])
    _, body = await call(session, "GET", keyed.url + CENTER, headers={"token": keyed.token})
    assert body["code"] == "10001"
    assert keyed.stats["faults"] == {"http_503": 1, "code_10001": 1}


def test_keys_are_generated_unless_given_and_never_shown_in_a_repr() -> None:
    a, b = Simulator(instances=0), Simulator(instances=0)
    assert re.fullmatch(r"[0-9a-f]{32}", a.access_key)
    assert a.access_key != b.access_key and a.secret_key != b.secret_key
    fixed = Simulator(instances=0, access_key="AK", secret_key="SK")
    assert (fixed.access_key, fixed.secret_key) == ("AK", "SK")
    account = Account(user="u", access_key="AK", secret_key="SK", password="PW", org_id="O")
    assert "SK" not in repr(account) and "PW" not in repr(account)


def test_regions_need_one_available_and_none_posing_as_the_platform() -> None:
    with pytest.raises(ValueError, match="regions"):
        Simulator(instances=0, regions=[Region("x", "1", available=False)])
    with pytest.raises(ValueError, match="regions"):
        Simulator(instances=0, regions=[Region("x", "0")])
    sim = Simulator(instances=0, regions=[Region("x", "7"), Region("y", "8")])
    assert claims(sim.token)["clusterId"] == "7"
    assert claims(sim.issue_token(cluster_id="8"))["clusterId"] == "8"
