"""``aiocontainer simulate`` (``aiocontainer.cli.simulate``)."""

from __future__ import annotations

import re
import signal

import pytest

from aiocontainer.simulator import Simulator
from tests.cli_inprocess import InProcessCli
from tests.conftest import SEED_ID, Cli, base_env, without_rich


@pytest.fixture
def cli(sim: Simulator) -> InProcessCli:
    """Runs ``main`` in this process; ``cli.process`` and ``cli.start`` run the real command."""
    return InProcessCli(sim)


async def test_simulate_help_comes_from_the_simulator(cli: Cli) -> None:
    result = await cli.run("simulate", "--help")
    assert result.code == 0
    assert "usage: aiocontainer simulate" in result.out
    assert "--port" in result.out


async def test_simulate_works_without_rich(cli: Cli) -> None:
    token = "simulate-test-token-0123456789"
    simulate = await cli.start(
        python=without_rich("simulate", "--port", "0", "--token", token, "--instances", "3"),
        env=base_env(),
    )
    try:
        lines = [await simulate.line() for _ in range(3)]
        base_url = lines[1].removeprefix("base_url: ")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        assert lines[2] == f"token: {token}"
        # The simulator prints its own token on purpose; the CLI talking to it must not.
        cli.secrets.append(token)
        env = base_env(AIOCONTAINER_BASE_URL=base_url, AIOCONTAINER_TOKEN=token)
        got = await cli.run("get", SEED_ID, "-o", "json", env=env)
        assert got.code == 0, got
        assert got.json()["id"] == SEED_ID
        simulate.proc.send_signal(signal.SIGINT)
        stopped = await simulate.finish()
    finally:
        await simulate.stop()
    assert stopped.code == 0
    assert "Traceback" not in stopped.err
