"""Hostile servers on 127.0.0.1 against the client: bombs, echoed tokens, deep nesting.

Each test feeds one class of hostile answer and asserts the typed error, and where it matters
the bounded memory: the answer never becomes a foreign exception, a half-filled model, or a
leak of the token.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from aiocontainer import (
    ContainerClient,
    InstanceDetail,
    InternalApiError,
    ResponseError,
    TransportError,
    _json,
    _protocol,
)
from aiocontainer._tokens import FRAGMENT
from tests.conftest import TOKEN, Reply, ScriptedServer, json_reply

MiB = 1024 * 1024
BOMB_SIZE = 128 * MiB  # inflated; far above the 10 MiB cap and the 50 MiB memory bound


@functools.cache
def bomb(wbits: int) -> bytes:
    """``BOMB_SIZE`` zero bytes compressed (gzip for wbits 31, zlib/deflate for 15)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(MiB)
    parts = [packer.compress(zeros) for _ in range(BOMB_SIZE // MiB)]
    return b"".join(parts) + packer.flush()


class RawServer:
    """An HTTP/1.1 server written by hand: each request gets ``answer`` (head and body bytes)."""

    def __init__(self, answer: Callable[[], list[bytes]]) -> None:
        self.answer = answer
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            for part in self.answer():
                writer.write(part)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def compressed_answer(encoding: str, body: bytes, *, with_length: bool) -> list[bytes]:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {encoding}\r\n"
    if with_length:
        return [f"{head}Content-Length: {len(body)}\r\n\r\n".encode(), body]
    parts = [f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()]
    for at in range(0, len(body), 16384):
        piece = body[at : at + 16384]
        parts.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    parts.append(b"0\r\n\r\n")
    return parts


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 31), ("deflate", 15)])
async def test_a_decompression_bomb_is_refused_within_bounded_memory(
    encoding: str, wbits: int, with_length: bool
) -> None:
    payload = bomb(wbits)
    assert len(payload) < MiB  # small on the wire, 128 MiB once inflated
    server = RawServer(lambda: compressed_answer(encoding, payload, with_length=with_length))
    async with server as base_url:
        async with ContainerClient(base_url, token=TOKEN, max_attempts=1) as client:
            tracemalloc.start()
            try:
                before, _ = tracemalloc.get_traced_memory()
                with pytest.raises(ResponseError, match="once decoded") as caught:
                    await client.get_instance("abc")
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert caught.value.instance_id == "abc"
    assert peak - before < 50 * MiB, f"peak growth {(peak - before) / MiB:.1f} MiB"


async def test_an_honest_compressed_answer_is_read(seed: dict[str, Any]) -> None:
    # gzip rather than zlib.compress(wbits=31): that keyword is new in Python 3.11.
    body = gzip.compress(json.dumps(seed).encode(), compresslevel=9)
    seed_id = seed["data"]["id"]
    server = RawServer(lambda: compressed_answer("gzip", body, with_length=True))
    async with server as base_url:
        async with ContainerClient(base_url, token=TOKEN) as client:
            detail = await client.get_instance(seed_id)
    assert detail.to_api() == seed["data"]


# -- the token in the server's words -----------------------------------------------------------


def fragments(text: str) -> set[str]:
    """The pieces of the token, ``FRAGMENT`` characters long, that ``text`` holds."""
    pieces = {TOKEN[i : i + FRAGMENT] for i in range(len(TOKEN) - FRAGMENT + 1)}
    return {piece for piece in pieces if piece in text}


def every_text(exc: BaseException) -> str:
    """str and repr of an exception, its attributes, and everything it chains to."""
    texts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


async def test_an_over_long_header_echoing_the_token_leaves_no_piece_of_it() -> None:
    echo = (TOKEN * 200)[:9000]  # longer than aiohttp's header line limit; it keeps an excerpt
    head = f"HTTP/1.1 200 OK\r\nX-Echo: {echo}\r\nContent-Length: 2\r\n\r\n{{}}"
    async with RawServer(lambda: [head.encode()]) as base_url:
        async with ContainerClient(base_url, token=TOKEN, max_attempts=1) as client:
            with pytest.raises(TransportError) as caught:
                await client.get_instance("abc")
    assert fragments(every_text(caught.value)) == set()
    assert "(instance abc)" in str(caught.value)


async def test_an_error_the_caller_raises_next_chains_no_piece_of_the_token() -> None:
    # On Python 3.10, aiohttp's parser error can stay the exception "being handled" in the
    # caller's coroutine after the client's error was caught, and is then chained to whatever
    # the caller raises next: the client blanks the token out of it.
    echo = (TOKEN * 200)[:9000]
    head = f"HTTP/1.1 200 OK\r\nX-Echo: {echo}\r\nContent-Length: 2\r\n\r\n{{}}"
    async with RawServer(lambda: [head.encode()]) as base_url:
        async with ContainerClient(base_url, token=TOKEN, max_attempts=1) as client:
            try:  # noqa: SIM105 - the caller's own except block, as written in an application
                await client.get_instance("abc")
            except TransportError:
                pass
            with pytest.raises(KeyError) as mine:
                raise KeyError("the caller's own error")
    assert fragments(every_text(mine.value)) == set()


async def test_an_error_message_repeating_the_token_is_blanked_everywhere(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"code": "10001", "msg": f"internal error for token {TOKEN}", "data": None}
    server.default = lambda _id: json_reply(echo)
    async with ContainerClient(
        server.base_url, token=TOKEN, max_attempts=2, backoff_factor=0.001
    ) as client:
        with caplog.at_level(logging.WARNING, logger="aiocontainer"):
            with pytest.raises(InternalApiError) as caught:
                await client.get_instance("abc")
    exc = caught.value
    assert TOKEN not in exc.msg and "***" in exc.msg
    assert TOKEN not in every_text(exc)
    assert "retrying instance abc" in caplog.text and "***" in caplog.text
    assert TOKEN not in caplog.text


# -- nesting and numbers, without orjson ----------------------------------------------------------


@pytest.fixture
def stdlib_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode bodies as an install without the ``speedups`` extra would."""
    monkeypatch.setattr(_protocol, "_loads", functools.partial(_json.loads, use_orjson=False))


@pytest.mark.usefixtures("stdlib_json")
async def test_one_deeply_nested_body_costs_no_other_id_its_result(server: ScriptedServer) -> None:
    deep = b'{"code": "0", "data": {"id": "bad", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    server.script("bad", _raw(deep))
    server.script("huge", _raw(b'{"code": "0", "data": {"id": "huge", "cpuNumber": 1e400}}'))
    async with ContainerClient(server.base_url, token=TOKEN) as client:
        results = await client.get_instances(["good1", "bad", "huge", "good2"])
    assert isinstance(results["good1"], InstanceDetail)
    assert isinstance(results["good2"], InstanceDetail)
    for bad in ("bad", "huge"):
        assert isinstance(results[bad], ResponseError), results[bad]
        assert results[bad].instance_id == bad


def _raw(body: bytes) -> Reply:
    return Reply(body=body, headers={"Content-Type": "application/json"})
