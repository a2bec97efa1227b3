"""Shared fixtures: the seed example, a scripted detail server on 127.0.0.1, and the harness that
runs the ``aiocontainer`` command line as a subprocess against the simulator."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aiocontainer.simulator import Simulator

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


# -- the command line, run as a subprocess ------------------------------------------------------

SEED_ID = "4c1f43ddb030483e89b55413bee6c004"
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
TERMINAL = {"Completed", "Failed", "Terminated"}
EXIT_CODES = {0, 1, 2, 3, 4, 130}
# Generous: the machine is shared and slow at times; nothing here asserts a duration.
RUN_TIMEOUT = 60.0
LINE_TIMEOUT = 30.0
CHANGE_LINE = re.compile(r"^(\d\d:\d\d:\d\d)  ([0-9a-f]{32})  (\S+) → (\S+)(  \(passed .+\))?$")


def base_env(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would steer the CLI or its colours."""
    steering = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIOCONTAINER_") and key not in steering
    }
    env.update(extra)
    return env


def secret_parts(token: str) -> list[str]:
    """The token and its payload and signature (a JWT's header is the same for every token)."""
    return [token, *(part for part in token.split(".")[1:] if len(part) >= 16)]


@dataclass
class Result:
    """How a CLI run ended."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[str]:
        return self.out.splitlines()


@dataclass
class Running:
    """A CLI process still running: read its stdout line by line, signal it, collect the rest."""

    proc: asyncio.subprocess.Process
    secrets: list[str]
    seen: list[str] = field(default_factory=list)

    async def line(self, timeout: float = LINE_TIMEOUT) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, f"stdout ended early; lines so far: {self.seen}"
        text = raw.decode().rstrip("\n")
        self.seen.append(text)
        return text

    async def finish(self, timeout: float = RUN_TIMEOUT) -> Result:
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
        assert self.proc.returncode is not None
        lines = "".join(line + "\n" for line in self.seen)
        result = Result(self.proc.returncode, lines + out.decode(), (err or b"").decode())
        assert_secret_free(result, self.secrets)
        return result

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def assert_secret_free(result: Result, secrets: Sequence[str]) -> None:
    for secret in secrets:
        for part in secret_parts(secret):
            assert part not in result.out, "the token appeared on stdout"
            assert part not in result.err, "the token appeared on stderr"


def assert_one_line_hint(result: Result) -> None:
    assert result.code == 2, result
    assert result.out == ""
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert result.err.startswith("aiocontainer: ")


@dataclass
class Endpoint:
    """Where a CLI run points: any server on 127.0.0.1 and the token it accepts."""

    base_url: str
    token: str


class Cli:
    """Runs ``python -m aiocontainer`` with the simulator's base URL and token in the env."""

    def __init__(self, sim: Simulator | Endpoint) -> None:
        self.sim = sim
        self.secrets = [sim.token]

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(
            AIOCONTAINER_BASE_URL=self.sim.base_url, AIOCONTAINER_TOKEN=self.sim.token, **extra
        )

    async def start(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: str | bytes | None = None,
        python: Sequence[str] = ("-m", "aiocontainer"),
        stderr: int = asyncio.subprocess.PIPE,
        keep_stdin: bool = False,
    ) -> Running:
        """Start the CLI; ``stdin`` is written and closed, unless ``keep_stdin`` keeps it open."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "error",
            *python,
            *args,
            stdin=asyncio.subprocess.DEVNULL
            if stdin is None and not keep_stdin
            else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=self.env() if env is None else env,
        )
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin.encode() if isinstance(stdin, str) else stdin)
            await proc.stdin.drain()
        if stdin is not None and not keep_stdin:
            assert proc.stdin is not None
            proc.stdin.close()
        return Running(proc, list(self.secrets))

    async def run(self, *args: str, **options: Any) -> Result:
        running = await self.start(*args, **options)
        try:
            return await running.finish()
        finally:
            await running.stop()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A frozen simulator: statuses move only when a test sets them (a test module may define
    its own ``sim``)."""
    async with Simulator(instances=6, seed=11, frozen=True) as simulator:
        yield simulator


@pytest.fixture
def cli(sim: Simulator) -> Cli:
    return Cli(sim)


def requests(sim: Simulator) -> int:
    return int(sim.stats["total"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def without_rich(*argv: str) -> tuple[str, ...]:
    code = (
        "import sys; sys.modules['rich'] = None; "
        "from aiocontainer.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return ("-c", code, *argv)


@dataclass
class Piped:
    """How ``aiocontainer ... | head -n N`` ended: the CLI's own exit code and stderr."""

    code: int
    err: str


async def start_into_head(cli: Cli, tmp: Path, *args: str, lines: int = 1) -> Running:
    """Start ``aiocontainer ARGS | head -n LINES`` in a shell; stdout is what head printed."""
    script = (
        '( "$PIPED_PYTHON" -W error -m aiocontainer "$@" 2>"$PIPED_ERR"; echo $? >"$PIPED_CODE" )'
        f" | head -n {lines}"
    )
    env = cli.env(
        PIPED_PYTHON=sys.executable, PIPED_ERR=str(tmp / "err"), PIPED_CODE=str(tmp / "code")
    )
    proc = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        script,
        "sh",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    return Running(proc, list(cli.secrets))


def piped_outcome(tmp: Path) -> Piped:
    """The exit code and stderr of the CLI side of ``start_into_head``'s pipeline."""
    return Piped(
        int((tmp / "code").read_text(encoding="utf-8")), (tmp / "err").read_text(encoding="utf-8")
    )
