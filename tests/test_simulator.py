"""The facade: starting, suspending, resuming and closing; and the simulator's command line."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator

import aiohttp
import pytest
import requests

from aiocontainer._sim_auth import signature
from aiocontainer.simulator import SEED_INSTANCE_ID, Simulator, main
from tests.sim_support import (
    AKSK_TOKENS,
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


async def test_suspending_while_connections_pour_in_leaks_no_socket() -> None:
    """asyncio attaches an accepted connection to its listener one loop iteration later; one
    accepted just before the listener closes must be dropped with the rest, not leaked."""

    async def knock(port: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async with Simulator(instances=1, seed=3) as sim:
        stop = asyncio.Event()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            knockers = [asyncio.ensure_future(knock(sim.port, stop)) for _ in range(8)]
            for _ in range(40):
                await asyncio.sleep(0.003)
                await sim.suspend()
                await sim.resume()
            stop.set()
            await asyncio.gather(*knockers)
            gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


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
            *("--access-key", "AKFIXED", "--secret-key", "SKFIXED", "--token-ttl", "120"),
            *("--page-cap", "4", "--churn", "0", "--list-total"),
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
    assert len(listing.json()["data"]) == 4  # --page-cap 4, though 5 were asked for
    assert listing.json()["total"] == 5  # --list-total: the whole account of --instances 5
    cli.proc.send_signal(signum)
    assert cli.proc.wait(10) == 0
    assert cli.proc.stderr is not None
    assert "Traceback" not in cli.proc.stderr.read()


def read_until(cli: Cli, prefixes: tuple[str, ...]) -> dict[str, str]:
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 15
    while len(seen) < len(prefixes) and time.monotonic() < deadline:
        line = cli.lines.get(timeout=15)
        for prefix in prefixes:
            if line.startswith(prefix) and prefix not in seen:
                seen[prefix] = line.removeprefix(prefix)
    return seen


def test_cli_prints_the_key_pair_it_accepts(cli: Cli) -> None:
    prefixes = (
        "base_url: ",
        "user: ",
        "access_key: ",
        "secret_key: ",
        "export SCNET_",
        "list its instances: ",
        "ids and statuses (no token): ",
    )
    seen = read_until(cli, prefixes)
    assert (seen["user: "], seen["access_key: "], seen["secret_key: "]) == (
        "magic2",
        "AKFIXED",
        "SKFIXED",
    )
    assert "SCNET_ACCESS_KEY=AKFIXED" in seen["export SCNET_"]
    assert seen["list its instances: "].startswith("aiocontainer list")
    assert "pages of at most 4" in seen["list its instances: "]
    assert "with a total" in seen["list its instances: "]
    ids_url = seen["ids and statuses (no token): "].removeprefix("curl ")
    assert len(requests.get(ids_url, timeout=5).json()["ids"]) == 5
    stamp = str(int(time.time()))
    headers = {"user": "magic2", "accessKey": "AKFIXED", "timestamp": stamp}
    headers["signature"] = signature(
        "SKFIXED", access_key="AKFIXED", timestamp=stamp, user="magic2"
    )
    answer = requests.post(seen["base_url: "] + AKSK_TOKENS, headers=headers, timeout=5).json()
    assert answer["code"] == "0"
    token = answer["data"][1]["token"]
    expire_ms = int(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["expireTime"])
    assert abs(expire_ms / 1000 - (int(stamp) + 120)) < 30  # --token-ttl 120
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(10) == 0


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
