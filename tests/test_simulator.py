"""The facade: starting, suspending, resuming and closing; and the simulator's command line."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest
import requests

from aiocontainer.simulator import SEED_INSTANCE_ID, Simulator, main
from tests.sim_support import (
    DETAIL,
    LIST,
    ROOT,
    SEED_SAMPLE,
    ManualClock,
    clock,
    detail,
    session,
    sim,
)

__all__ = ["clock", "session", "sim"]  # the fixtures, for the tests below


async def test_suspend_and_resume_on_the_same_port(
    sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    port = sim.port
    assert sim.base_url == f"http://127.0.0.1:{port}"
    sim.script_faults(SEED_INSTANCE_ID, ["hang"])
    hung = asyncio.ensure_future(detail(session, sim, SEED_INSTANCE_ID))
    while sim.stats["total"] < 1:
        await asyncio.sleep(0.01)
    await sim.suspend()
    with pytest.raises(aiohttp.ClientError):
        await hung
    with pytest.raises(aiohttp.ClientConnectionError):
        await detail(session, sim, SEED_INSTANCE_ID)
    clock.advance(1000)  # the clock runs on while the process is "down"
    await sim.resume()
    assert sim.port == port
    data = (await detail(session, sim, SEED_INSTANCE_ID))["data"]
    assert data["status"] == sim.status(SEED_INSTANCE_ID) != "Waiting"


async def test_start_twice_is_refused(sim: Simulator) -> None:
    with pytest.raises(RuntimeError, match="already"):
        await sim.start()
    with pytest.raises(RuntimeError, match="already"):
        await sim.resume()


# ----- command line -----------------------------------------------------------------------------


class Cli:
    """The simulator's command line in a child process, its stdout read line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))


@pytest.fixture
def cli() -> Iterator[Cli]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiocontainer.simulator",
            *("--port", "0", "--instances", "5", "--seed", "3", "--token", "T"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Cli(proc)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        running.pump.join(5)
        assert proc.stderr is not None
        proc.stderr.close()
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(cli: Cli, signum: int) -> None:
    lines = cli.lines
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 15
    while len(seen) < 3 and time.monotonic() < deadline:
        line = lines.get(timeout=15)
        for prefix in ("base_url: ", "token: ", "export "):
            if line.startswith(prefix):
                seen[prefix] = line.removeprefix(prefix)
    base_url, token = seen["base_url: "], seen["token: "]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
    assert not base_url.endswith(":0")
    assert token == "T"
    assert f"AIOCONTAINER_BASE_URL={base_url}" in seen["export "]
    assert "AIOCONTAINER_TOKEN=T" in seen["export "]
    response = requests.get(
        base_url + DETAIL.format(SEED_INSTANCE_ID), headers={"token": "T"}, timeout=5
    )
    assert response.json()["data"] == SEED_SAMPLE["data"]
    listing = requests.get(base_url + LIST, json={"limit": 10}, headers={"token": "T"}, timeout=5)
    assert len(listing.json()["data"]) == 5
    cli.proc.send_signal(signum)
    assert cli.proc.wait(10) == 0
    assert cli.proc.stderr is not None
    assert "Traceback" not in cli.proc.stderr.read()


def test_cli_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port), "--instances", "1"]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_cli_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--speed", "0"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        main(["--latency", "a,b,c"])
    assert "--latency" in capsys.readouterr().err
