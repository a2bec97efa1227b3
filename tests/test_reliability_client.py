"""Client reliability: oversized answers, cancellation, and a clean interpreter exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aiocontainer import ContainerClient, ResponseError
from tests.conftest import TOKEN, Reply, ScriptedServer, leftover_tasks, ok_reply

CHUNK = b"x" * 65536


@pytest.fixture
async def streaming_server() -> object:
    """Serves 50 MiB, chunked or with a Content-Length, and counts what it managed to send."""
    sent = {"bytes": 0}

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if request.query.get("length"):
            response.content_length = 50 * 1024 * 1024
        await response.prepare(request)
        try:
            for _ in range(800):
                await response.write(CHUNK)
                sent["bytes"] += len(CHUNK)
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/ai/openapi/v2/instance-service/{id}/detail", endless)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", sent
    finally:
        await server.close()


async def test_oversized_chunked_answer_is_refused_early(streaming_server: object) -> None:
    base_url, sent = streaming_server  # type: ignore[misc]
    async with ContainerClient(base_url, token=TOKEN, max_attempts=1) as client:
        with pytest.raises(ResponseError, match="exceeds the 10485760-byte limit"):
            await client.get_instance("abc")
    await asyncio.sleep(0.1)
    assert sent["bytes"] < 50 * 1024 * 1024


async def test_declared_oversized_answer_is_refused_unread() -> None:
    srv = ScriptedServer()
    await srv.start()
    try:
        srv.default = lambda _id: Reply(body=b"y" * (2 * 1024 * 1024))
        async with ContainerClient(
            srv.base_url, token=TOKEN, max_body_bytes=1024 * 1024, max_attempts=1
        ) as client:
            with pytest.raises(ResponseError, match="2097152 bytes exceeds") as caught:
                await client.get_instance("abc")
        assert caught.value.http_status == 200
    finally:
        await srv.close()


# -- cancellation ------------------------------------------------------------------------------


async def _cancel_once_sent(
    server: ScriptedServer, make: Any, *, sent: int, concurrency: int = 32
) -> int:
    """Start ``make(client)``, cancel it once ``sent`` requests are out, check what follows.

    Cancelling must take effect at once, send nothing more, and leave no task behind. Returns
    the number of requests the server saw.
    """
    before = asyncio.all_tasks()
    async with ContainerClient(
        server.base_url,
        token=TOKEN,
        concurrency=concurrency,
        backoff_factor=20,
        backoff_max=20,
        max_retry_time=60,
    ) as client:
        task = asyncio.ensure_future(make(client))
        while server.count() < sent:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # mid-request, or sleeping in a backoff of up to 20 s
        loop = asyncio.get_running_loop()
        started = loop.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.time() - started < 1.0
        count = server.count()
        await asyncio.sleep(0.3)
        assert server.count() == count
    assert await leftover_tasks(before) == set()
    return count


def _get_many(client: ContainerClient) -> Any:
    return client.get_instances([f"i{n}" for n in range(50)])


def _get_two(client: ContainerClient) -> Any:
    return client.get_instances(["a", "b"])


def _wait_for(client: ContainerClient) -> Any:
    from aiocontainer import InstanceWatcher

    return InstanceWatcher(client, [], interval=0.1).wait_for("abc", "Running", timeout=60)


def _run_watcher(client: ContainerClient) -> Any:
    from aiocontainer import InstanceWatcher

    return InstanceWatcher(client, ["abc"], interval=0.1).run()


async def test_cancel_get_instances_mid_request(server: ScriptedServer) -> None:
    server.default = lambda i: Reply(body=ok_reply(i).body, delay=30)
    assert await _cancel_once_sent(server, _get_many, sent=8, concurrency=8) == 8


async def test_cancel_get_instances_during_backoff(server: ScriptedServer) -> None:
    server.default = lambda _id: Reply(status=503)
    # A jittered first wait may be near zero; a 20 s one never ends before the cancel.
    assert await _cancel_once_sent(server, _get_two, sent=2) in (2, 3, 4)


@pytest.mark.parametrize("make", [_wait_for, _run_watcher], ids=["wait_for", "watcher"])
async def test_cancel_mid_request(server: ScriptedServer, make: Any) -> None:
    server.default = lambda i: Reply(body=ok_reply(i).body, delay=30)
    assert await _cancel_once_sent(server, make, sent=1) == 1


@pytest.mark.parametrize("make", [_wait_for, _run_watcher], ids=["wait_for", "watcher"])
async def test_cancel_mid_backoff(server: ScriptedServer, make: Any) -> None:
    server.default = lambda _id: Reply(status=503)
    assert await _cancel_once_sent(server, make, sent=1) <= 2  # never a third


def test_asyncio_run_exits_cleanly_after_cancellation(tmp_path: object) -> None:
    """A whole program: start lookups, cancel them mid-flight, exit; no warning may be printed."""
    program = textwrap.dedent(
        """
        import asyncio
        from aiohttp import web
        from aiocontainer import ContainerClient

        async def slow(request):
            await asyncio.sleep(30)
            return web.Response(text="late")

        async def main():
            app = web.Application()
            app.router.add_get("/ai/openapi/v2/instance-service/{id}/detail", slow)
            runner = web.AppRunner(app, shutdown_timeout=0.1)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            async with ContainerClient(f"http://127.0.0.1:{port}", token="T") as client:
                task = asyncio.ensure_future(client.get_instances([f"i{n}" for n in range(20)]))
                await asyncio.sleep(0.3)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            await runner.cleanup()
            print("done")

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert result.stderr == ""
