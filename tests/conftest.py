"""Shared fixtures: the seed example and a scripted detail server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

SAMPLES = Path(__file__).parent / "samples"
DETAIL_PREFIX = "/ai/openapi/v2/instance-service/"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRlc3QtdG9rZW4.U0VDUkVULVNJR05BVFVSRQ"


def seed_envelope() -> dict[str, Any]:
    """The documented example response, freshly loaded."""
    return json.loads((SAMPLES / "seed_detail.json").read_text(encoding="utf-8"))


@pytest.fixture
def seed() -> dict[str, Any]:
    """The documented example response (envelope with code, msg, data)."""
    return seed_envelope()


@attrs.frozen
class Reply:
    """One scripted answer of the test server."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    reset: bool = False


def ok_reply(instance_id: str, **fields: Any) -> Reply:
    """A success envelope whose data is the seed example for ``instance_id``."""
    data = copy.deepcopy(seed_envelope()["data"])
    data.update(id=instance_id, **fields)
    return json_reply({"code": "0", "msg": "SUCCESS", "data": data})


def json_reply(payload: Any, status: int = 200, **headers: str) -> Reply:
    """A JSON reply with the given payload."""
    return Reply(
        status=status,
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **headers},
    )


def code_reply(code: str, msg: str = "failed") -> Reply:
    """An error envelope on HTTP 200, the way the platform reports errors."""
    return json_reply({"code": code, "msg": msg, "data": None})


@attrs.define
class Seen:
    """One request as the server received it."""

    raw_path: str
    token: str | None
    at: float


class ScriptedServer:
    """A detail endpoint whose answers are scripted per id; it records every request."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.default: Callable[[str], Reply] = ok_reply
        self.seen: list[Seen] = []
        self._server: TestServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    def script(self, instance_id: str, *replies: Reply) -> None:
        """Answer the next requests for ``instance_id`` with ``replies``, then the default."""
        self.scripts.setdefault(instance_id, []).extend(replies)

    def count(self, instance_id: str | None = None) -> int:
        """Requests received in total, or for one id."""
        if instance_id is None:
            return len(self.seen)
        return sum(1 for s in self.seen if s.raw_path == f"{DETAIL_PREFIX}{instance_id}/detail")

    def per_id(self) -> Counter[str]:
        return Counter(s.raw_path.removeprefix(DETAIL_PREFIX).split("/")[0] for s in self.seen)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.raw_path, request.headers.get("token"), time.monotonic()))
        path = request.raw_path
        if not (path.startswith(DETAIL_PREFIX) and path.endswith("/detail")):
            return web.Response(status=404, text="not found")
        instance_id = path[len(DETAIL_PREFIX) : -len("/detail")]
        queue = self.scripts.get(instance_id)
        reply = queue.pop(0) if queue else self.default(instance_id)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.reset:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    """A started scripted server on 127.0.0.1."""
    srv = ScriptedServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def eventually(
    condition: Callable[[], bool], *, within: float = 10.0, what: str = "the condition"
) -> None:
    """Wait for ``condition()`` to hold, checking every 20 ms; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def leftover_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Tasks started since ``before`` that are still pending, the test servers' own excluded."""
    for _ in range(10):
        await asyncio.sleep(0)
    return {
        task
        for task in asyncio.all_tasks() - before
        if not task.done() and "RequestHandler" not in repr(task.get_coro())
    }


async def run_process(*command: str, env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Run a command with no stdin while the event loop keeps serving; exit code, out, err.

    A process still running at the timeout is killed, so no test leaves one behind.
    """
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
