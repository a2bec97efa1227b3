"""ContainerClient against a scripted server on 127.0.0.1 (and aioresponses for precise faults)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from aiocontainer import (
    AiocontainerError,
    ApiError,
    ClientClosedError,
    ContainerClient,
    HTTPStatusError,
    InstanceDetail,
    InternalApiError,
    InvalidInstanceIdError,
    InvalidParameterError,
    PermissionDeniedError,
    ResponseError,
    TokenError,
    TransportError,
)
from tests.conftest import (
    TOKEN,
    Reply,
    ScriptedServer,
    closed_port,
    code_reply,
    json_reply,
    leftover_tasks,
    ok_reply,
)

FAST = {"backoff_factor": 0.001, "backoff_max": 0.01}


class CountingProvider:
    """A token provider that hands out t1, t2, ... and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return f"t{self.calls}"


def client_for(server: ScriptedServer, **options: Any) -> ContainerClient:
    return ContainerClient(server.base_url, token=TOKEN, **{**FAST, **options})


def jwt_expiring_at(epoch_seconds: float, marker: str) -> str:
    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    payload = {"expireTime": str(int(epoch_seconds * 1000)), "user": marker}
    return f"{part({'alg': 'HS256'})}.{part(payload)}.c2ln"


# -- the happy path ----------------------------------------------------------------------------


async def test_get_instance_reads_the_seed_example(
    server: ScriptedServer, seed: dict[str, Any]
) -> None:
    seed_id = seed["data"]["id"]
    server.script(seed_id, json_reply(seed))
    async with client_for(server) as client:
        detail = await client.get_instance(seed_id)
    assert detail == InstanceDetail.from_api(seed["data"])
    assert detail.to_api() == seed["data"]
    assert server.seen[0].raw_path == f"/ai/openapi/v2/instance-service/{seed_id}/detail"
    assert server.seen[0].token == TOKEN


async def test_json_with_wrong_content_type_is_read(
    server: ScriptedServer, seed: dict[str, Any]
) -> None:
    seed_id = seed["data"]["id"]
    server.script(
        seed_id, Reply(body=json.dumps(seed).encode(), headers={"Content-Type": "text/html"})
    )
    async with client_for(server) as client:
        assert (await client.get_instance(seed_id)).status == "Waiting"


async def test_an_answer_about_another_instance_is_refused(server: ScriptedServer) -> None:
    server.script("abc", ok_reply("other"))
    async with client_for(server) as client:
        with pytest.raises(ResponseError, match="describes 'other'"):
            await client.get_instance("abc")
        assert (await client.get_instance("ABC")).id == "ABC"


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "attempts"),
    [
        ("10003", 1),
        ("10004", 1),
        ("10007", 1),
        ("10008", 1),
        ("10009", 1),
        ("10010", 1),
        ("10011", 1),
        ("55555", 1),
        ("10001", 3),
        ("10012", 3),
    ],
)
async def test_error_codes_and_their_attempts(
    server: ScriptedServer, code: str, attempts: int
) -> None:
    server.default = lambda _id: code_reply(code, "msg")
    async with client_for(server, max_attempts=3) as client:
        with pytest.raises(ApiError) as caught:
            await client.get_instance("abc")
    assert caught.value.code == code
    assert caught.value.instance_id == "abc" and caught.value.http_status == 200
    assert server.count("abc") == attempts


@pytest.mark.parametrize(
    ("reply", "error", "attempts"),
    [
        (Reply(status=200, body=b"<html>login</html>"), ResponseError, 1),
        (Reply(status=200, body=b'{"code": "0", "da'), ResponseError, 1),
        (Reply(status=200, body=b""), ResponseError, 1),
        (json_reply({"code": "0", "msg": "ok", "data": None}), ResponseError, 1),
        (json_reply({"code": "0", "msg": "ok", "data": {"id": "x"}}), ResponseError, 1),
        (Reply(status=502, body=b"<html>bad gateway</html>"), HTTPStatusError, 3),
        (Reply(status=503, body=b""), HTTPStatusError, 3),
        (Reply(status=429, body=b"slow down"), HTTPStatusError, 3),
        (Reply(status=404, body=b"nope"), HTTPStatusError, 1),
        (Reply(reset=True), TransportError, 3),
    ],
)
async def test_malformed_bodies(
    server: ScriptedServer, reply: Reply, error: type[Exception], attempts: int
) -> None:
    server.default = lambda _id: reply
    async with client_for(server, max_attempts=3) as client:
        with pytest.raises(error) as caught:
            await client.get_instance("abc")
    assert isinstance(caught.value, AiocontainerError)
    assert getattr(caught.value, "instance_id", None) == "abc"
    assert server.count("abc") == attempts


async def test_response_error_carries_status_and_snippet(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(status=200, body=b"<html><h1>Maintenance</h1></html>")
    async with client_for(server) as client:
        with pytest.raises(ResponseError) as caught:
            await client.get_instance("abc")
    assert caught.value.http_status == 200
    assert "Maintenance" in (caught.value.snippet or "")


# -- ids ---------------------------------------------------------------------------------------

BAD_IDS = ["", "..", "a/b", "a?b", "a#b", "%2e", " a", "a\r\nX: y", "é", "a" * 129]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_id_sends_nothing(server: ScriptedServer, bad: str) -> None:
    async with client_for(server) as client:
        with pytest.raises(InvalidInstanceIdError):
            await client.get_instance(bad)
        results = await client.get_instances([bad, "good"])
    assert isinstance(results[bad], InvalidInstanceIdError)
    assert isinstance(results["good"], InstanceDetail)
    assert [s.raw_path for s in server.seen] == ["/ai/openapi/v2/instance-service/good/detail"]


# -- retries -----------------------------------------------------------------------------------


async def test_transient_failures_are_retried_then_succeed(server: ScriptedServer) -> None:
    server.script("abc", Reply(status=503), code_reply("10012"), Reply(reset=True))
    async with client_for(server, max_attempts=4) as client:
        detail = await client.get_instance("abc")
        stats = client.stats
    assert detail.id == "abc"
    assert server.count("abc") == 4
    assert (stats.requests, stats.retries, stats.failures) == (4, 3, 0)


async def test_max_attempts_bounds_requests(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(status=500)
    async with client_for(server, max_attempts=5) as client:
        with pytest.raises(HTTPStatusError):
            await client.get_instance("abc")
        assert client.stats.failures == 1
    assert server.count("abc") == 5


class FakeTime:
    """A monotonic clock that only moves when the client sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)

    def options(self) -> dict[str, Any]:
        return {"clock": self.clock, "sleep": self.sleep}


async def test_max_retry_time_bounds_the_run(server: ScriptedServer) -> None:
    # Waits of exactly 0.25 s (a Retry-After above the tiny backoff) in a 1 s budget: attempts
    # start at 0, 0.25, 0.5, 0.75 and 1.0 (the last wait is what was left), then none.
    server.default = lambda _id: Reply(status=429, headers={"Retry-After": "0.25"})
    fake = FakeTime()
    async with client_for(server, max_attempts=1000, max_retry_time=1.0, **fake.options()) as c:
        with pytest.raises(HTTPStatusError):
            await c.get_instance("abc")
    assert fake.sleeps == [0.25, 0.25, 0.25, 0.25]
    assert server.count("abc") == 5


async def test_no_attempt_starts_after_the_budget(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(status=503)
    fake = FakeTime()
    options = {"backoff_factor": 0.3, "backoff_max": 0.3, **fake.options()}
    async with client_for(server, max_attempts=1000, max_retry_time=2.0, **options) as client:
        with pytest.raises(HTTPStatusError):
            await client.get_instance("abc")
    # Jittered waits, each cut to what was left: they add up to at most the budget, and every
    # attempt but the first followed one wait.
    assert sum(fake.sleeps) <= 2.0
    assert fake.now <= 2.0
    assert server.count("abc") == len(fake.sleeps) + 1


async def test_retry_after_is_a_floor(server: ScriptedServer) -> None:
    server.script("abc", Reply(status=429, headers={"Retry-After": "0.4"}))
    fake = FakeTime()
    async with client_for(server, **fake.options()) as client:
        await client.get_instance("abc")
    assert fake.sleeps == [0.4]  # backoff alone would wait at most 0.01 s here


async def test_retry_after_is_capped_by_the_budget(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(status=429, headers={"Retry-After": "3600"})
    fake = FakeTime()
    async with client_for(server, max_retry_time=0.3, **fake.options()) as client:
        with pytest.raises(HTTPStatusError) as caught:
            await client.get_instance("abc")
    assert fake.sleeps == [0.3]
    assert server.count("abc") == 2
    assert caught.value.retry_after == 3600


async def test_timeout_bounds_each_attempt(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(delay=30)
    async with client_for(server, timeout=0.2, max_attempts=2) as client:
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"within 0\.2s"):
            await client.get_instance("abc")
    assert time.monotonic() - started < 5
    assert server.count("abc") == 2


async def test_timeout_does_not_count_waiting_for_a_slot(server: ScriptedServer) -> None:
    # Three lookups through one slot: each answer takes 0.25 s, the timeout is 0.4 s, so the
    # third would time out if queueing counted (it starts 0.5 s after the first).
    server.default = lambda i: Reply(**{**_fields(ok_reply(i)), "delay": 0.25})
    async with client_for(server, concurrency=1, timeout=0.4, max_attempts=1) as client:
        results = await asyncio.gather(*(client.get_instance(f"i{n}") for n in range(3)))
    assert [d.id for d in results] == ["i0", "i1", "i2"]


def _fields(reply: Reply) -> dict[str, Any]:
    return {"status": reply.status, "body": reply.body, "headers": reply.headers}


async def test_cancellation_is_not_retried(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(delay=30)
    async with client_for(server) as client:
        task = asyncio.ensure_future(client.get_instance("abc"))
        while server.count("abc") == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
    assert server.count("abc") == 1


# -- lifecycle ---------------------------------------------------------------------------------


async def test_borrowed_session_is_never_closed(server: ScriptedServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with ContainerClient(server.base_url, token=TOKEN, session=session) as client:
            await client.get_instance("abc")
        assert client.closed
        assert not session.closed
        async with session.get(server.base_url + "/anything") as response:
            assert response.status == 404


async def test_own_session_is_closed_once_and_reuse_is_refused(server: ScriptedServer) -> None:
    client = client_for(server)
    await client.get_instance("abc")
    session = client._transport.session()  # the session it made for itself
    assert not session.closed
    await client.aclose()
    await client.aclose()  # twice is fine
    assert session.closed and client.closed
    with pytest.raises(ClientClosedError, match="closed"):
        await client.get_instance("abc")
    with pytest.raises(ClientClosedError):
        await client.get_instances(["abc"])
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert server.count() == 1


async def test_closing_never_warns_even_without_requests(server: ScriptedServer) -> None:
    async with client_for(server):
        pass
    client = client_for(server)
    await client.aclose()


def test_bad_options_are_refused() -> None:
    for options, named in (
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": 0}, "timeout"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_retry_time": -1}, "max_retry_time"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"ssl": False}, "ssl"),
        ({"backoff_factor": -1}, "backoff"),
        ({"backoff_max": -0.5}, "backoff"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"refresh_margin": -1}, "refresh_margin"),
    ):
        with pytest.raises(ValueError, match=named):
            ContainerClient("http://127.0.0.1:1", token="t", **options)
    with pytest.raises(TypeError):
        ContainerClient("http://127.0.0.1:1", token=123)  # type: ignore[arg-type]
    with pytest.raises(TokenError):
        ContainerClient("http://127.0.0.1:1", token="a\r\nb")
    with pytest.raises(ValueError, match="base_url"):
        ContainerClient("127.0.0.1:1", token="t")


# -- tokens ------------------------------------------------------------------------------------


async def test_provider_is_called_lazily_once(server: ScriptedServer) -> None:
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return "fresh-token"

    async with ContainerClient(server.base_url, token=provider) as client:
        assert calls == 0
        await client.get_instances(["a", "b", "c"])
    assert calls == 1
    assert {s.token for s in server.seen} == {"fresh-token"}


async def test_token_near_expiry_is_renewed_before_use(server: ScriptedServer) -> None:
    wall = [1_000_000.0]
    old = jwt_expiring_at(wall[0] + 3600, "old")
    new = jwt_expiring_at(wall[0] + 7200, "new")
    tokens = iter([old, new])

    async def provider() -> str:
        return next(tokens)

    async with ContainerClient(
        server.base_url,
        token=provider,
        refresh_margin=60,
        wall_clock=lambda: wall[0],
        clock=lambda: wall[0],
    ) as client:
        await client.get_instance("a")  # the provider's first token
        wall[0] += 3600 - 61
        await client.get_instance("b")  # 61 s from expiry: still outside the margin
        wall[0] += 2
        await client.get_instance("c")  # 59 s from expiry: renewed first
        assert client.stats.token_refreshes == 2
    assert [s.token for s in server.seen] == [old, old, new]


async def test_10008_with_50_concurrent_requests_refreshes_exactly_once(
    server: ScriptedServer,
) -> None:
    server.default = lambda i: ok_reply(i)
    refreshes = 0

    async def provider() -> str:
        nonlocal refreshes
        refreshes += 1
        await asyncio.sleep(0.05)
        return f"token-{refreshes}"

    def by_token(instance_id: str) -> Reply:
        return ok_reply(instance_id)

    ids = [f"id{n}" for n in range(50)]
    async with ContainerClient(server.base_url, token=provider, **FAST) as client:
        await client.get_instance("warmup")  # the first token: "token-1"
        for instance_id in ids:
            server.script(instance_id, code_reply("10008", "token expired"))
        results = await client.get_instances(ids, concurrency=50)
        assert client.stats.token_refreshes == 2
    assert refreshes == 2  # the first token and exactly one renewal
    assert all(isinstance(r, InstanceDetail) for r in results.values())
    for instance_id in ids:
        assert server.count(instance_id) == 2
    assert {s.token for s in server.seen[-50:]} == {"token-2"}


async def test_10008_twice_is_raised_not_looped(server: ScriptedServer) -> None:
    server.default = lambda _id: code_reply("10008", "insufficient permission")
    provider = CountingProvider()
    async with ContainerClient(server.base_url, token=provider, **FAST) as client:
        with pytest.raises(PermissionDeniedError):
            await client.get_instance("abc")
    assert server.count("abc") == 2
    assert provider.calls == 2


async def test_10008_without_provider_is_raised_at_once(server: ScriptedServer) -> None:
    server.default = lambda _id: code_reply("10008")
    async with client_for(server) as client:
        with pytest.raises(PermissionDeniedError):
            await client.get_instance("abc")
    assert server.count("abc") == 1


async def test_failing_provider_is_a_token_error(server: ScriptedServer) -> None:
    async def provider() -> str:
        raise RuntimeError("vault unreachable")

    async def bad_provider() -> str:
        return ""

    for p in (provider, bad_provider):
        async with ContainerClient(server.base_url, token=p) as client:
            with pytest.raises(TokenError):
                await client.get_instance("abc")
    assert server.count() == 0


async def test_sync_provider_is_accepted(server: ScriptedServer) -> None:
    async with ContainerClient(server.base_url, token=lambda: "sync-token") as client:
        await client.get_instance("abc")
    assert server.seen[0].token == "sync-token"


# -- secrecy -----------------------------------------------------------------------------------


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


async def test_token_absent_from_logs_reprs_and_errors(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiocontainer")
    server.script("a", Reply(status=503), Reply(reset=True))
    server.script("b", code_reply("10004"))
    server.script("c", Reply(status=200, body=TOKEN.encode()))  # a server echoing the token
    server.script("d", Reply(delay=30))
    failures: list[BaseException] = []
    async with client_for(server, timeout=0.2, max_attempts=2) as client:
        assert TOKEN not in repr(client) and TOKEN not in str(client)
        results = await client.get_instances(["a", "b", "c", "d", "e/f"])
        for value in results.values():
            if isinstance(value, BaseException):
                failures.append(value)
            else:
                assert TOKEN not in repr(value)
    assert len(failures) == 4
    assert any("GET /ai/openapi/v2/instance-service/a/detail -> 503" in m for m in caplog.messages)
    assert any(r.levelno == logging.WARNING and "retrying" in r.message for r in caplog.records)
    for failure in failures:
        for exc in _chain(failure):
            assert TOKEN not in repr(exc) and TOKEN not in str(exc)
            assert TOKEN not in repr(vars(exc))
    for record in caplog.records:
        assert TOKEN not in record.getMessage()


async def test_a_foreign_exception_naming_the_token_is_not_chained() -> None:
    with aioresponses() as mocked:
        url = "http://127.0.0.1:9/ai/openapi/v2/instance-service/abc/detail"
        mocked.get(url, exception=aiohttp.ClientConnectionError(f"proxy said {TOKEN}"))
        async with ContainerClient("http://127.0.0.1:9", token=TOKEN, max_attempts=1) as client:
            with pytest.raises(TransportError) as caught:
                await client.get_instance("abc")
    assert TOKEN not in str(caught.value)
    assert "proxy said ***" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


# -- every transport failure is mapped (aioresponses scripts the exact exception) ---------------


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientConnectionError("refused"),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
        asyncio.TimeoutError(),
        ConnectionResetError(104, "reset"),
        OSError(113, "No route to host"),
    ],
)
async def test_transport_errors_are_mapped_and_chained(exc: BaseException) -> None:
    url = "http://127.0.0.1:9/ai/openapi/v2/instance-service/abc/detail"
    with aioresponses() as mocked:
        mocked.get(url, exception=exc, repeat=True)
        async with ContainerClient(
            "http://127.0.0.1:9", token=TOKEN, max_attempts=2, **FAST
        ) as client:
            with pytest.raises(TransportError) as caught:
                await client.get_instance("abc")
            assert client.stats.requests == 2
    assert caught.value.__cause__ is exc
    assert caught.value.__context__ is None
    assert caught.value.instance_id == "abc"


# aioresponses 0.7.9 cannot build response bodies under aiohttp 3.14 (its ClientResponse gained
# a required argument), so it scripts exceptions only; bodies come from the scripted server.


# -- redirects, size ---------------------------------------------------------------------------


async def test_redirect_to_another_origin_is_not_followed(server: ScriptedServer) -> None:
    other = ScriptedServer()
    await other.start()
    try:
        target = other.base_url + "/ai/openapi/v2/instance-service/abc/detail"
        server.default = lambda _id: Reply(status=302, headers={"Location": target})
        async with client_for(server) as client:
            with pytest.raises(ResponseError, match="redirect not followed"):
                await client.get_instance("abc")
        assert other.count() == 0
        assert server.count() == 1
    finally:
        await other.close()


async def test_oversized_response_is_refused(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(body=b"x" * 5000)
    async with client_for(server, max_body_bytes=1000) as client:
        with pytest.raises(ResponseError, match="exceeds the 1000-byte limit"):
            await client.get_instance("abc")


# -- bulk --------------------------------------------------------------------------------------


async def test_bulk_2000_ids_with_a_quarter_failing_transiently(server: ScriptedServer) -> None:
    ids = [f"inst{n:04d}" for n in range(2000)]
    faults = [Reply(status=503), code_reply("10001"), Reply(reset=True)]
    flaky = ids[::4]
    for n, instance_id in enumerate(flaky):
        server.script(instance_id, *faults[: 1 + n % 3])
    async with client_for(server, concurrency=64, max_attempts=4) as client:
        results = await client.get_instances(ids)
        stats = client.stats
    assert list(results) == ids
    assert all(isinstance(r, InstanceDetail) and r.id == i for i, r in results.items())
    counts = server.per_id()
    for n, instance_id in enumerate(flaky):
        assert counts[instance_id] == 2 + n % 3
    assert stats.retries == sum(1 + n % 3 for n in range(len(flaky)))
    assert stats.requests == len(server.seen)


async def test_bulk_keeps_first_seen_order_and_fetches_duplicates_once(
    server: ScriptedServer,
) -> None:
    server.script("gone", code_reply("10004"))
    ids = ["c", "a", "c", "gone", "b", "a", "bad id"]
    async with client_for(server) as client:
        results = await client.get_instances(ids)
    assert list(results) == ["c", "a", "gone", "b", "bad id"]
    assert isinstance(results["gone"], InvalidParameterError)
    assert isinstance(results["bad id"], InvalidInstanceIdError)
    assert results["a"].id == "a"  # type: ignore[union-attr]
    assert server.per_id() == {"c": 1, "a": 1, "gone": 1, "b": 1}


async def test_iter_instances_yields_as_results_arrive(server: ScriptedServer) -> None:
    server.script("slow", Reply(**{**_fields(ok_reply("slow")), "delay": 0.5}))
    async with client_for(server) as client:
        order = [i async for i, _ in client.iter_instances(["slow", "f1", "f2", "f3"])]
    assert order[-1] == "slow"
    assert set(order) == {"slow", "f1", "f2", "f3"}


async def test_breaking_out_of_iter_instances_stops_the_rest(server: ScriptedServer) -> None:
    from contextlib import aclosing

    server.default = lambda i: Reply(**{**_fields(ok_reply(i)), "delay": 0.05})
    ids = [f"i{n}" for n in range(100)]
    before = asyncio.all_tasks()
    async with client_for(server, concurrency=4) as client:
        async with aclosing(client.iter_instances(ids)) as stream:
            async for _ in stream:
                break
        sent = server.count()
        await asyncio.sleep(0.2)
        assert server.count() <= sent + 4
    assert await leftover_tasks(before) == set()


async def test_concurrent_lookups_of_one_id_share_a_request(server: ScriptedServer) -> None:
    server.default = lambda i: Reply(**{**_fields(ok_reply(i)), "delay": 0.1})
    async with client_for(server) as client:
        results = await asyncio.gather(*(client.get_instance("same") for _ in range(10)))
    assert server.count("same") == 1
    assert all(r is results[0] for r in results)


async def test_shared_failure_reaches_every_waiter(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(delay=0.1, status=200, body=b"<html>")
    async with client_for(server) as client:
        results = await asyncio.gather(
            *(client.get_instance("same") for _ in range(5)), return_exceptions=True
        )
    assert all(isinstance(r, ResponseError) for r in results)
    assert server.count("same") == 1


async def test_cancelled_leader_does_not_fail_followers(server: ScriptedServer) -> None:
    # The answer takes long enough that the leader is surely still waiting when cancelled,
    # however slow the machine.
    server.default = lambda i: Reply(**{**_fields(ok_reply(i)), "delay": 1.0})
    async with client_for(server) as client:
        leader = asyncio.ensure_future(client.get_instance("same"))
        while server.count("same") == 0:
            await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(client.get_instance("same"))
        await asyncio.sleep(0.01)  # the follower joins the leader's lookup
        assert not leader.done()
        leader.cancel()
        detail = await follower
        with pytest.raises(asyncio.CancelledError):
            await leader
    assert detail.id == "same"
    assert server.count("same") == 2  # the follower had to ask again


async def test_rate_limit_spaces_requests(server: ScriptedServer) -> None:
    async with client_for(server, rate_limit=20) as client:
        await client.get_instances([f"i{n}" for n in range(11)])
    times = sorted(s.at for s in server.seen)
    assert times[-1] - times[0] >= 10 / 20 * 0.9  # 11 requests need 10 gaps of 1/20 s


async def test_get_instances_concurrency_bounds_in_flight(server: ScriptedServer) -> None:
    in_flight = 0
    peak = 0

    async def handler_delay(instance_id: str) -> Reply:
        return Reply(**{**_fields(ok_reply(instance_id)), "delay": 0.02})

    original = server._handle

    async def counting(request: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(request)
        finally:
            in_flight -= 1

    server._handle = counting  # type: ignore[method-assign]
    server.default = lambda i: Reply(**{**_fields(ok_reply(i)), "delay": 0.02})
    await server.close()
    await server.start()
    async with client_for(server, concurrency=32) as client:
        await client.get_instances([f"i{n}" for n in range(60)], concurrency=5)
    assert 1 <= peak <= 5


async def test_logging_per_request(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiocontainer")
    server.script("abc", Reply(status=502))
    async with client_for(server) as client:
        await client.get_instance("abc")
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert debug == [
        m for m in debug if m.startswith("GET /ai/openapi/v2/instance-service/abc/detail -> ")
    ]
    assert [m.split(" -> ")[1].split(" ")[0] for m in debug] == ["502", "200"]
    assert len(warn) == 1 and "attempt 1" in warn[0] and "HTTP 502" in warn[0]


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
async def tls_server() -> Any:
    import ssl

    import trustme
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def detail(request: web.Request) -> web.Response:
        return web.Response(body=ok_reply(request.match_info["id"]).body)

    app = web.Application()
    app.router.add_get("/ai/openapi/v2/instance-service/{id}/detail", detail)
    srv = TestServer(app, host="127.0.0.1", scheme="https")
    await srv.start_server(ssl=server_ctx)
    try:
        yield f"https://127.0.0.1:{srv.port}", client_ctx
    finally:
        await srv.close()


async def test_self_signed_server_is_refused_by_default(tls_server: Any) -> None:
    base_url, _ = tls_server
    async with ContainerClient(base_url, token=TOKEN, max_attempts=1) as client:
        with pytest.raises(TransportError) as caught:
            await client.get_instance("abc")
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorCertificateError)


async def test_local_ca_is_trusted_through_ssl(tls_server: Any) -> None:
    base_url, client_ctx = tls_server
    async with ContainerClient(base_url, token=TOKEN, ssl=client_ctx) as client:
        assert (await client.get_instance("abc")).id == "abc"
    async with aiohttp.ClientSession() as session:
        async with ContainerClient(base_url, token=TOKEN, ssl=client_ctx, session=session) as c:
            assert (await c.get_instance("abc")).id == "abc"


async def test_a_bug_in_a_lookup_propagates_from_bulk_calls(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import aclosing

    async with client_for(server) as client:
        original = client._get_valid  # what bulk calls run per id

        async def broken(instance_id: str) -> InstanceDetail:
            if instance_id == "b":
                raise RuntimeError("a bug, not a lookup failure")
            return await original(instance_id)

        monkeypatch.setattr(client, "_get_valid", broken)
        before = asyncio.all_tasks()
        with pytest.raises(RuntimeError, match="a bug"):
            await client.get_instances(["a", "b", "c"])
        with pytest.raises(RuntimeError, match="a bug"):  # noqa: PT012
            async with aclosing(client.iter_instances(["a", "b", "c"])) as stream:
                async for _ in stream:
                    pass
        assert await leftover_tasks(before) == set()


# -- aiohttp's silent resend ---------------------------------------------------------------------


class _DropSecondRequest:
    """A keep-alive server on 127.0.0.1: answers the first request, drops the connection on the
    next one on that same connection without answering; counts request lines."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head.split(b"\r\n", 1)[0])
                if served:
                    break  # a reused connection dropped mid-request
                served += 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.body), self.body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_aiohttp_silent_resend_is_switched_off() -> None:
    # The second lookup goes out on the reused connection, which the server drops: with the
    # switch off that is one request and a TransportError (max_attempts=1), not a second
    # request sent behind the retry policy's back.
    server = _DropSecondRequest(ok_reply("a").body)
    async with server as base_url:
        async with ContainerClient(base_url, token=TOKEN, max_attempts=1) as client:
            await client.get_instance("a")
            with pytest.raises(TransportError):
                await client.get_instance("a")
            assert client.stats.requests == 2
    assert len(server.requests) == 2


async def test_aiohttp_resends_when_the_switch_is_left_on() -> None:
    # The control: a borrowed session keeps aiohttp's behaviour, and the same exchange then
    # reaches the server three times. If aiohttp ever stops resending, or renames the switch,
    # one of these two tests fails.
    server = _DropSecondRequest(ok_reply("a").body)
    async with server as base_url, aiohttp.ClientSession() as session:
        assert session._retry_connection is True
        async with ContainerClient(
            base_url, token=TOKEN, max_attempts=1, session=session
        ) as client:
            await client.get_instance("a")
            with contextlib.suppress(TransportError):
                await client.get_instance("a")
    assert len(server.requests) == 3


# -- token renewal within the retry policy ------------------------------------------------------


async def test_a_renewal_resend_counts_against_max_attempts(server: ScriptedServer) -> None:
    server.default = lambda _id: code_reply("10008", "token expired")
    provider = CountingProvider()
    async with ContainerClient(server.base_url, token=provider, max_attempts=1, **FAST) as c:
        with pytest.raises(PermissionDeniedError):
            await c.get_instance("abc")
    assert server.count("abc") == 1  # no resend: it would be a second attempt
    async with ContainerClient(server.base_url, token=provider, max_attempts=2, **FAST) as c:
        with pytest.raises(PermissionDeniedError):
            await c.get_instance("abc")
        assert (c.stats.requests, c.stats.retries) == (2, 1)
    assert server.count("abc") == 3


async def test_a_renewal_resend_starts_only_within_max_retry_time(server: ScriptedServer) -> None:
    server.script("abc", code_reply("10008", "token expired"))
    fake = FakeTime()
    calls = 0

    async def slow_provider() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            fake.now += 3.5  # the renewal itself takes longer than the budget
        return f"t{calls}"

    async with ContainerClient(
        server.base_url, token=slow_provider, max_retry_time=3.0, **FAST, **fake.options()
    ) as client:
        with pytest.raises(PermissionDeniedError):
            await client.get_instance("abc")
    assert calls == 2
    assert server.count("abc") == 1


async def test_a_provider_that_never_answers_ends_the_lookup(server: ScriptedServer) -> None:
    async def stuck() -> str:
        await asyncio.Event().wait()
        return "never"

    async with ContainerClient(
        server.base_url, token=stuck, timeout=0.2, max_retry_time=0.1
    ) as client:
        started = time.monotonic()
        with pytest.raises(TokenError, match="did not answer"):
            await client.get_instance("abc")
    assert time.monotonic() - started < 5  # bounded by one timeout (0.2 s), not forever
    assert server.count() == 0


@pytest.mark.parametrize("bad", ["a\x00b", "a\x1b[2Jb", "a\tb", "a\x7fb", "tök"])
async def test_a_token_with_a_control_character_is_refused_up_front(
    server: ScriptedServer, bad: str
) -> None:
    with pytest.raises(TokenError):
        ContainerClient(server.base_url, token=bad)
    assert server.count() == 0


# -- several base URLs ------------------------------------------------------------------------


async def test_a_refused_first_url_fails_over_to_the_next(server: ScriptedServer) -> None:
    refused = f"http://127.0.0.1:{closed_port()}"
    async with ContainerClient([refused, server.base_url], token=TOKEN, **FAST) as client:
        assert client.base_url == refused
        detail = await client.get_instance("abc")
        assert client.base_url == server.base_url
        assert client.stats.requests == 2  # the refused attempt, then the answer
        await client.get_instance("def")  # sticks: no new try of the refused URL
        assert client.stats.requests == 3
    assert detail.id == "abc"
    assert server.count() == 2


async def test_an_http_or_api_answer_never_fails_over(server: ScriptedServer) -> None:
    other = ScriptedServer()
    await other.start()
    try:
        server.default = lambda _id: Reply(status=503)
        server.script("api", *[code_reply("10001")] * 3)
        async with ContainerClient(
            [server.base_url, other.base_url], token=TOKEN, max_attempts=3, **FAST
        ) as client:
            with pytest.raises(HTTPStatusError):
                await client.get_instance("abc")
            with pytest.raises(InternalApiError):
                await client.get_instance("api")
            assert client.base_url == server.base_url
        assert server.count("abc") == 3 and server.count("api") == 3
        assert other.count() == 0
    finally:
        await other.close()


async def test_the_client_sticks_to_the_last_url_that_worked(server: ScriptedServer) -> None:
    second, third = ScriptedServer(), ScriptedServer()
    await second.start()
    await third.start()
    try:
        urls = [f"http://127.0.0.1:{closed_port()}", second.base_url, third.base_url]
        async with ContainerClient(urls, token=TOKEN, **FAST) as client:
            await client.get_instance("a")
            await client.get_instance("b")
            assert client.base_url == second.base_url
            await second.close()  # the second goes away: on to the third, and stay there
            await client.get_instance("c")
            await client.get_instance("d")
            assert client.base_url == third.base_url
        assert second.count() == 2 and third.count() == 2
    finally:
        await third.close()


async def test_a_base_url_ending_in_ai_is_joined_once(server: ScriptedServer) -> None:
    async with ContainerClient(server.base_url + "/ai/", token=TOKEN) as client:
        assert client.base_url == server.base_url
        await client.get_instance("abc")
    assert server.seen[0].raw_path == "/ai/openapi/v2/instance-service/abc/detail"


@pytest.mark.parametrize("bad", [[], (), ["ftp://x"], [b"http://x"], b"http://x", 42])
def test_bad_base_url_sequences_are_refused(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        ContainerClient(bad, token=TOKEN)
