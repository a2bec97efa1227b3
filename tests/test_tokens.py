"""The token module: checks, the JWT expiry hint, redaction and renewal, without sockets."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from aiocontainer._tokens import (
    BLANKED,
    FRAGMENT,
    TokenKeeper,
    check_token,
    mentions,
    raise_unchained,
    redact,
    scrub,
    token_expiry,
    unchained,
)
from aiocontainer.errors import TokenError, TransportError


def jwt(payload: Any) -> str:
    def part(obj: Any) -> str:
        raw = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part(payload)}.{part(b'sig')}"


def test_token_expiry_from_documented_token() -> None:
    # The payload of the token in the seed's cURL example: expireTime is a string of milliseconds.
    token = jwt({"expireTime": "1686123346568", "user": "slurmtest", "clusterId": "11112"})
    assert token_expiry(token) == pytest.approx(1686123346.568)


@pytest.mark.parametrize(
    "token",
    [
        "plain-token",
        "a.b",
        "a.!!!.c",
        jwt({"user": "x"}),
        jwt({"expireTime": "soon"}),
        jwt({"expireTime": True}),
        jwt({"expireTime": -5}),
        jwt(["not", "an", "object"]),
        "x." + base64.urlsafe_b64encode(b"\xff\xfe").decode() + ".y",
    ],
)
def test_token_expiry_absent_or_unreadable(token: str) -> None:
    assert token_expiry(token) is None


def test_redact() -> None:
    assert redact("token=abc; again abc", "abc") == "token=***; again ***"
    assert redact("nothing", None) == "nothing"
    assert redact("nothing", "") == "nothing"


# -- checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["", "a\nb", "a\rb", "a\x00b", "a\x1bb", "a\x7fb", "a\tb", "a b", "tok\u00e9n", "a\x85b"],
)
def test_a_token_with_a_control_space_or_foreign_character_is_refused(bad: str) -> None:
    with pytest.raises(TokenError) as caught:
        check_token(bad)
    assert bad not in str(caught.value) or bad == ""


@pytest.mark.parametrize("bad", [None, 5, b"bytes"])
def test_a_token_that_is_not_a_string_is_refused(bad: object) -> None:
    with pytest.raises(TokenError, match="must be a string"):
        check_token(bad)


def test_a_good_token_is_kept_secret() -> None:
    secret = check_token("eyJ.abc-_=.xyz")
    assert secret.reveal() == "eyJ.abc-_=.xyz"
    assert "abc" not in repr(secret) and "abc" not in str(secret)


def test_mentions_follows_the_chain() -> None:
    inner = ValueError("the token is s3cret")
    outer = RuntimeError("wrapper")
    outer.__cause__ = inner
    assert mentions(outer, "s3cret")
    assert not mentions(outer, "other")
    assert not mentions(outer, None)


# -- errors raised where a foreign one may still be "being handled" ----------------------------

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRlc3Q.U0lHTkFUVVJF"


def foreign_error() -> ValueError:
    return ValueError("got more than 8190 bytes when reading " + SECRET[3:40])


def test_unchained_raises_with_no_context_where_a_plain_raise_keeps_one() -> None:
    ours = TransportError("ours")
    try:
        raise foreign_error()
    except ValueError:
        with pytest.raises(TransportError) as plain:
            raise ours  # noqa: B904 - what the context would be
        assert isinstance(plain.value.__context__, ValueError)
        with pytest.raises(TransportError) as caught:
            with unchained:
                raise ours  # noqa: B904 - no context is the point
        assert caught.value is ours and ours.__context__ is None
        with pytest.raises(TransportError):
            raise_unchained(ours)
        assert ours.__context__ is None


def test_unchained_changes_nothing_else_and_swallows_nothing() -> None:
    with unchained:
        pass
    with pytest.raises(KeyError):
        with unchained:
            raise KeyError("k")


class Quoting(Exception):
    """An exception keeping a server's excerpt, as aiohttp's parser errors do."""

    def __init__(self, line: bytes, note: str) -> None:
        super().__init__(line, "8190")
        self.message = f"Got more than 8190 bytes when reading {line!r}."
        self.note = note
        self.code = 400


def test_scrub_blanks_every_text_that_shows_a_piece_of_the_token() -> None:
    inner = Quoting(SECRET[10:30].encode(), note="no secret here")
    outer = RuntimeError("wrapper of " + SECRET[-FRAGMENT:], 7, f"proxy said {SECRET}")
    outer.__cause__ = inner
    inner.__context__ = foreign_error()
    scrub(outer, SECRET)
    assert not mentions(outer, SECRET)
    assert outer.args == (BLANKED, 7, "proxy said ***")  # the whole token: only it is blanked
    assert inner.args == (BLANKED, "8190") and inner.message == BLANKED
    assert (inner.note, inner.code) == ("no secret here", 400)  # what showed nothing is kept
    assert inner.__context__ is not None and inner.__context__.args == (BLANKED,)


def test_scrub_without_a_secret_or_a_piece_of_it_changes_nothing() -> None:
    error = Quoting(b"harmless", note="n")
    scrub(error, None)
    scrub(error, SECRET)
    assert error.args == (b"harmless", "8190") and error.message.endswith("b'harmless'.")


# -- renewal -----------------------------------------------------------------------------------


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 0.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def keeper(provider: Any, clocks: Clocks, margin: float = 60.0) -> TokenKeeper:
    return TokenKeeper(
        provider,
        refresh_margin=margin,
        wall_clock=lambda: clocks.wall,
        clock=lambda: clocks.mono,
    )


async def test_a_fixed_token_is_never_renewed() -> None:
    tokens = keeper("fixed", Clocks())
    token = await tokens.current(1.0)
    assert token.reveal() == "fixed"
    with pytest.raises(TokenError, match="without a provider"):
        await tokens.renew(stale=token, bound=1.0)
    assert tokens.refreshes == 0


def short_lived(clocks: Clocks, lifetime: float) -> Any:
    calls: list[str] = []

    async def provider() -> str:
        token = jwt({"expireTime": str(int((clocks.wall + lifetime) * 1000)), "n": len(calls)})
        calls.append(token)
        return token

    provider.calls = calls  # type: ignore[attr-defined]
    return provider


async def test_tokens_shorter_than_the_margin_are_not_renewed_per_request() -> None:
    clocks = Clocks()
    provider = short_lived(clocks, lifetime=10.0)  # the margin is 60 s
    tokens = keeper(provider, clocks)
    first = await tokens.current(1.0)
    for _ in range(100):
        assert await tokens.current(1.0) is first
    assert tokens.refreshes == 1
    clocks.advance(4.9)
    assert await tokens.current(1.0) is first  # before half its life
    clocks.advance(0.2)
    second = await tokens.current(1.0)  # past half its life: renewed
    assert second is not first
    assert tokens.refreshes == 2


async def test_early_renewals_are_at_least_a_second_apart() -> None:
    clocks = Clocks()
    provider = short_lived(clocks, lifetime=0.0)  # already at its expiry when it arrives
    tokens = keeper(provider, clocks)
    await tokens.current(1.0)
    for _ in range(50):
        await tokens.current(1.0)
    assert tokens.refreshes == 1
    clocks.advance(0.999)
    await tokens.current(1.0)
    assert tokens.refreshes == 1
    clocks.advance(0.001)
    await tokens.current(1.0)
    assert tokens.refreshes == 2


async def test_a_renewal_asked_for_after_a_10008_is_not_rate_limited() -> None:
    clocks = Clocks()
    tokens = keeper(short_lived(clocks, lifetime=3600.0), clocks)
    first = await tokens.current(1.0)
    second = await tokens.renew(stale=first, bound=1.0)
    assert second is not first and tokens.refreshes == 2
    # A caller still holding the first token gets the renewed one, without another call.
    assert await tokens.renew(stale=first, bound=1.0) is second
    assert tokens.refreshes == 2


async def test_a_provider_that_never_answers_is_bounded() -> None:
    async def stuck() -> str:
        await asyncio.Event().wait()
        return "never"

    tokens = keeper(stuck, Clocks())
    with pytest.raises(TokenError, match=r"did not answer within 0\.05s"):
        await tokens.current(0.05)


@pytest.mark.parametrize("value", [None, 42, "", "bad\ntoken", "bad\x1btoken"])
async def test_a_provider_returning_a_bad_token_is_a_token_error(value: object) -> None:
    tokens = keeper(lambda: value, Clocks())
    with pytest.raises(TokenError):
        await tokens.current(1.0)


async def test_a_provider_error_that_shows_the_old_token_is_not_chained() -> None:
    state = {"n": 0}

    def provider() -> str:
        state["n"] += 1
        if state["n"] == 1:
            return "first-token"
        raise RuntimeError("refused first-token")

    tokens = keeper(provider, Clocks())
    first = await tokens.current(1.0)
    with pytest.raises(TokenError) as caught:
        await tokens.renew(stale=first, bound=1.0)
    assert caught.value.__cause__ is None
    assert "first-token" not in str(caught.value)


def raw_jwt(payload: bytes) -> str:
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{encoded}.c2ln"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"expireTime": 1e400}',
        b'{"expireTime": "1e400"}',
        b'{"expireTime": -1e400}',
        b'{"expireTime": NaN}',
        b'{"expireTime": "nan"}',
        b'{"expireTime": "inf"}',
        b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b', "expireTime": "1686123346568"}',
        b'{"expireTime": "9' + b"9" * 5000 + b'"}',
        b'{"expireTime": "\\ud800"}',
        b"\xff\xfe{}",
    ],
)
def test_a_hostile_jwt_payload_is_no_hint_and_no_error(payload: bytes) -> None:
    assert token_expiry(raw_jwt(payload)) is None
