"""The ``aiocontainer`` command line, run as a subprocess against the simulator on 127.0.0.1.

Every run goes through ``Cli.run``/``Cli.start``, which checks that the token never shows up on
stdout or stderr, whatever the command, its options or its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aiocontainer.simulator import Simulator
from tests.conftest import eventually

SEED_ID = "4c1f43ddb030483e89b55413bee6c004"
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"
SAMPLES = Path(__file__).parent / "samples"
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


class Cli:
    """Runs ``python -m aiocontainer`` with the simulator's base URL and token in the env."""

    def __init__(self, sim: Simulator) -> None:
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
        stdin: str | None = None,
        python: Sequence[str] = ("-m", "aiocontainer"),
        stderr: int = asyncio.subprocess.PIPE,
    ) -> Running:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "error",
            *python,
            *args,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=self.env() if env is None else env,
        )
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin.encode())
            await proc.stdin.drain()
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
    """A frozen simulator: statuses move only when a test sets them."""
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


# -- help ----------------------------------------------------------------------------------------


def exit_codes_in(help_text: str) -> set[int]:
    _, found, section = help_text.partition("exit codes:\n")
    assert found, "no 'exit codes:' section"
    return {int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+\S", section, re.MULTILINE)}


@pytest.mark.parametrize("command", [[], ["get"], ["watch"], ["wait"], ["demo"]])
async def test_help_documents_every_exit_code(cli: Cli, command: list[str]) -> None:
    result = await cli.run(*command, "--help")
    assert result.code == 0
    assert exit_codes_in(result.out) == EXIT_CODES
    assert re.search(r"^\s+130\s+interrupted", result.out, re.MULTILINE)
    assert re.search(r"^\s+3\s+.*timed out", result.out, re.MULTILINE)


@pytest.mark.parametrize("command", [[], ["get"], ["watch"], ["wait"]])
async def test_help_warns_that_a_token_argument_lands_in_shell_history(
    cli: Cli, command: list[str]
) -> None:
    result = await cli.run(*command, "--help")
    # The option's own entry: from its line to the next option's line.
    entry = re.search(r"^  --token TOKEN\s(.*?)^  -", result.out, re.MULTILINE | re.DOTALL)
    assert entry, result.out
    assert "shell history" in " ".join(entry[1].split())
    assert "--token-file" in entry[1]


async def test_top_level_help_lists_the_commands(cli: Cli) -> None:
    result = await cli.run("--help")
    for command in ("get", "watch", "wait", "simulate", "demo"):
        assert re.search(rf"^\s+{command}\s+\S", result.out, re.MULTILINE), command


async def test_demo_help_offers_no_connection_options(cli: Cli) -> None:
    result = await cli.run("demo", "--help")
    assert result.code == 0
    assert "--base-url" not in result.out
    assert "--token" not in result.out
    for option in ("--instances", "--speed", "--fault-rate", "--interval", "--seed"):
        assert re.search(rf"^\s+{option} \S+\s+\S", result.out, re.MULTILINE), option


@pytest.mark.parametrize(
    "given",
    [["--base-url", "http://127.0.0.1:9"], ["--token", "t0k3n-value"], ["--concurrency", "3"]],
)
async def test_demo_refuses_connection_options_it_would_ignore(cli: Cli, given: list[str]) -> None:
    result = await cli.run(*given, "demo", env=base_env())
    assert_one_line_hint(result)
    assert "embedded simulator" in result.err and given[0] in result.err
    assert "t0k3n-value" not in result.err


async def test_no_command_prints_usage_and_exits_2(cli: Cli) -> None:
    result = await cli.run()
    assert result.code == 2
    assert "usage: aiocontainer" in result.err
    assert result.out == ""


async def test_simulate_help_comes_from_the_simulator(cli: Cli) -> None:
    result = await cli.run("simulate", "--help")
    assert result.code == 0
    assert "usage: aiocontainer simulate" in result.out
    assert "--port" in result.out


# -- get -----------------------------------------------------------------------------------------


async def test_get_json_of_the_seed_instance_is_the_platform_data(cli: Cli) -> None:
    seed = json.loads((SAMPLES / "seed_detail.json").read_text(encoding="utf-8"))
    result = await cli.run("get", SEED_ID, "--output", "json")
    assert result.code == 0, result
    assert result.json() == seed["data"]
    assert result.err == ""


async def test_get_json_of_several_ids_is_keyed_by_id(cli: Cli, sim: Simulator) -> None:
    ids = sim.instance_ids[:3]
    result = await cli.run("get", *ids, "-o", "json")
    assert result.code == 0, result
    document = result.json()
    assert list(document) == ids
    for instance_id in ids:
        assert document[instance_id] == sim.instance(instance_id)
    assert result.err == "", "no progress bar or chatter when stderr is not a terminal"


async def test_get_jsonl_prints_one_data_object_per_line_in_order(cli: Cli, sim: Simulator) -> None:
    ids = sim.instance_ids[1:5]
    result = await cli.run("get", *ids, "-o", "jsonl")
    assert result.code == 0, result
    objects = [json.loads(line) for line in result.lines()]
    assert [o["id"] for o in objects] == ids
    assert objects == [sim.instance(i) for i in ids]


async def test_get_reads_ids_from_stdin(cli: Cli, sim: Simulator) -> None:
    first, second, third = sim.instance_ids[:3]
    stdin = f"{first}\n\n# a comment\n  {second}  \n"
    result = await cli.run("get", "-", third, "-o", "jsonl", stdin=stdin)
    assert result.code == 0, result
    assert [json.loads(line)["id"] for line in result.lines()] == [first, second, third]


async def test_get_table_has_one_row_per_instance_with_its_status(cli: Cli, sim: Simulator) -> None:
    running, failed = sim.instance_ids[1:3]
    sim.set_status(running, "Running")
    sim.set_status(failed, "Failed")
    result = await cli.run("get", SEED_ID, running, failed)
    assert result.code == 0, result
    header, *rows = result.lines()
    assert header.split() == [
        "ID",
        "NAME",
        "STATUS",
        "TYPE",
        "ACCEL",
        "RESOURCES",
        "CREATED",
        "DURATION",
    ]
    # Piped output keeps each row on one line, so `| grep Running` finds the whole row.
    assert len(rows) == 3
    assert rows[0].split()[:3] == [SEED_ID, "Instances_2205113837", "Waiting"]
    assert "2022-05-11 19:30:34" in rows[0]
    assert rows[1].split()[0] == running and " Running " in rows[1]
    assert rows[2].split()[0] == failed and " Failed " in rows[2]
    assert "\x1b[" not in result.out, "no colour codes when stdout is not a terminal"


async def test_get_table_colours_statuses_on_a_colour_terminal(cli: Cli, sim: Simulator) -> None:
    running, failed = sim.instance_ids[1:3]
    sim.set_status(running, "Running")
    sim.set_status(failed, "Failed")
    result = await cli.run(
        "get",
        SEED_ID,
        running,
        failed,
        env=cli.env(FORCE_COLOR="1", COLUMNS="200", TERM="xterm-256color"),
    )
    assert result.code == 0, result
    assert "\x1b[33mWaiting\x1b[0m" in result.out  # yellow
    assert "\x1b[32mRunning\x1b[0m" in result.out  # green
    assert "\x1b[1;31mFailed\x1b[0m" in result.out  # bold red


async def test_get_json_stays_plain_even_when_colours_are_forced(cli: Cli) -> None:
    result = await cli.run("get", SEED_ID, "-o", "json", env=cli.env(FORCE_COLOR="1"))
    assert result.code == 0, result
    assert "\x1b" not in result.out
    assert result.json()["id"] == SEED_ID


async def test_bulk_get_shows_a_progress_bar_on_a_terminal_stderr(cli: Cli, sim: Simulator) -> None:
    ids = sim.instance_ids
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    seen = bytearray()

    def drain() -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(master, 65536):
                seen.extend(chunk)

    loop = asyncio.get_running_loop()
    loop.add_reader(master, drain)
    try:
        env = cli.env(TERM="xterm-256color")
        running = await cli.start(
            "get", "-", "-o", "jsonl", stdin="\n".join(ids), env=env, stderr=slave
        )
        os.close(slave)
        slave = -1
        result = await running.finish()
        drain()
    finally:
        loop.remove_reader(master)
        os.close(master)
        if slave != -1:
            os.close(slave)
    terminal = seen.decode(errors="replace")
    assert result.code == 0, terminal
    assert "looking up" in terminal
    assert [json.loads(line)["id"] for line in result.lines()] == ids
    assert "\x1b" not in result.out, "the bar stays on stderr; stdout is clean JSON lines"
    assert not any(part in terminal for part in secret_parts(sim.token))


async def test_get_lists_failures_on_stderr_after_the_results_and_exits_4(
    cli: Cli, sim: Simulator
) -> None:
    good = sim.instance_ids[1]
    result = await cli.run("get", good, UNKNOWN_ID, "-o", "json")
    assert result.code == 4
    assert result.json() == {good: sim.instance(good)}, "failures are not mixed into results"
    failure_lines = result.err.strip().splitlines()
    assert failure_lines[0].startswith(f"{UNKNOWN_ID}: ")
    assert "10004" in failure_lines[0]
    assert failure_lines[-1] == "1 of 2 lookups failed"
    assert "Traceback" not in result.err


async def test_get_failures_come_after_the_table(cli: Cli, sim: Simulator) -> None:
    good = sim.instance_ids[1]
    # One pipe for both streams: the order is what a user sees on a terminal.
    result = await cli.run("get", UNKNOWN_ID, good, stderr=asyncio.subprocess.STDOUT)
    assert result.code == 4
    lines = result.lines()
    row = next(i for i, line in enumerate(lines) if line.split()[:1] == [good])
    failure = next(i for i, line in enumerate(lines) if line.startswith(f"{UNKNOWN_ID}: "))
    assert row < failure
    assert lines[-1] == "1 of 2 lookups failed"


async def test_get_unknown_id_alone_exits_4_with_nothing_on_stdout(cli: Cli) -> None:
    result = await cli.run("get", UNKNOWN_ID, "-o", "json")
    assert result.code == 4
    assert result.out == ""
    assert "InvalidParameterError" in result.err and "10004" in result.err


async def test_transport_error_to_a_closed_port_exits_4(cli: Cli) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = await cli.run("get", "--base-url", url, "--timeout", "2", SEED_ID)
    assert result.code == 4
    assert result.out == ""
    assert "TransportError" in result.err
    assert "Traceback" not in result.err


# -- usage and configuration errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["get", SEED_ID, "a/b"], None),
        (["get", "-"], f"{SEED_ID}\na/b\n"),
        (["watch", "--interval", "0.2", SEED_ID, "a/b"], None),
        (["wait", "a/b", "--for", "Running"], None),
        (["get", "../" + SEED_ID], None),
    ],
)
async def test_an_invalid_id_is_a_usage_error_and_nothing_is_sent(
    cli: Cli, sim: Simulator, args: list[str], stdin: str | None
) -> None:
    result = await cli.run(*args, stdin=stdin)
    assert_one_line_hint(result)
    assert "invalid instance id" in result.err
    assert requests(sim) == 0


async def test_missing_base_url_is_a_one_line_hint(cli: Cli, sim: Simulator) -> None:
    env = base_env(AIOCONTAINER_TOKEN=sim.token)
    result = await cli.run("get", SEED_ID, env=env)
    assert_one_line_hint(result)
    assert "--base-url" in result.err and "AIOCONTAINER_BASE_URL" in result.err
    assert requests(sim) == 0


async def test_missing_token_is_a_one_line_hint(cli: Cli, sim: Simulator) -> None:
    env = base_env(AIOCONTAINER_BASE_URL=sim.base_url)
    result = await cli.run("get", SEED_ID, env=env)
    assert_one_line_hint(result)
    assert "--token-file" in result.err
    assert requests(sim) == 0


@pytest.mark.parametrize("kind", ["missing", "directory", "empty"])
async def test_unreadable_token_file_is_a_one_line_hint(
    cli: Cli, sim: Simulator, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "token"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_text("\n", encoding="utf-8")
    env = base_env(AIOCONTAINER_BASE_URL=sim.base_url)
    result = await cli.run("--token-file", str(path), "get", SEED_ID, env=env)
    assert_one_line_hint(result)
    assert str(path) in result.err
    assert requests(sim) == 0


async def test_token_file_and_base_url_options_work_without_env(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(sim.token + "\n", encoding="utf-8")
    result = await cli.run(
        "--base-url",
        sim.base_url,
        "--token-file",
        str(token_file),
        "get",
        SEED_ID,
        "-o",
        "json",
        env=base_env(),
    )
    assert result.code == 0, result
    assert result.json()["id"] == SEED_ID


async def test_token_file_wins_over_token(cli: Cli, sim: Simulator, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(sim.token, encoding="utf-8")
    wrong = "not-the-token-" + "x" * 24
    cli.secrets.append(wrong)
    env = base_env(AIOCONTAINER_BASE_URL=sim.base_url)
    args = ("get", SEED_ID, "-o", "json", "--token", wrong, "--token-file", str(token_file))
    result = await cli.run(*args, env=env)
    assert result.code == 0, result


async def test_command_line_token_wins_over_the_environment(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    stale = tmp_path / "stale-token"
    stale.write_text("stale-" + "y" * 30, encoding="utf-8")
    cli.secrets.append("stale-" + "y" * 30)
    env = base_env(AIOCONTAINER_BASE_URL=sim.base_url, AIOCONTAINER_TOKEN_FILE=str(stale))
    result = await cli.run("get", SEED_ID, "-o", "json", "--token", sim.token, env=env)
    assert result.code == 0, result
    without_flag = await cli.run("get", SEED_ID, "-o", "json", env=env)
    assert without_flag.code == 4  # the stale file from the environment is used, and refused


@pytest.mark.parametrize(
    "args",
    [
        ["watch", SEED_ID, "--interval", "0"],
        ["wait", SEED_ID],
        ["get", SEED_ID, "-o", "yaml"],
        ["--concurrency", "0", "get", SEED_ID],
        ["bogus"],
    ],
)
async def test_bad_options_are_usage_errors(cli: Cli, sim: Simulator, args: list[str]) -> None:
    result = await cli.run(*args)
    assert result.code == 2
    assert "Traceback" not in result.err
    assert "error:" in result.err and "--help" in result.err
    assert requests(sim) == 0


# -- the token never shows -----------------------------------------------------------------------


async def test_verbose_logs_with_faults_never_show_the_token(cli: Cli, sim: Simulator) -> None:
    sim.script_faults(SEED_ID, ["http_503", "code_10001", "reset"])
    # The worst case: the token on the command line, every request logged.
    env = base_env(AIOCONTAINER_BASE_URL=sim.base_url)
    result = await cli.run("-vv", "--token", sim.token, "get", SEED_ID, "-o", "json", env=env)
    assert result.code == 0, result
    assert result.json()["id"] == SEED_ID
    assert result.err.count("retrying") == 3, "one retry per scripted fault, each logged"
    assert "GET /ai/openapi/v2/instance-service/" in result.err
    assert requests(sim) == 4


async def test_verbose_with_a_rejected_token_never_shows_it(cli: Cli, sim: Simulator) -> None:
    rejected = sim.issue_token(ttl=-60)
    cli.secrets.append(rejected)
    env = base_env(AIOCONTAINER_BASE_URL=sim.base_url, AIOCONTAINER_TOKEN=rejected)
    result = await cli.run("-vv", "get", SEED_ID, env=env)
    assert result.code == 4
    assert "DEBUG" in result.err
    assert requests(sim) >= 1


async def test_verbose_watch_with_faults_never_shows_the_token(cli: Cli, sim: Simulator) -> None:
    sim.set_status(SEED_ID, "Completed")
    sim.script_faults(SEED_ID, ["http_502", "truncated", "html"])
    result = await cli.run("-v", "watch", "--interval", "0.2", "--until-terminal", SEED_ID)
    assert result.code == 0, result
    assert "retrying instance" in result.err
    assert CHANGE_LINE.match(result.lines()[0])


# -- wait ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "args", "code", "says"),
    [
        ("Running", ["--for", "Running"], 0, "Running"),
        ("Completed", ["--for", "Running,Completed"], 0, "Completed"),
        ("Failed", ["--for", "Running"], 1, "Failed  (failed: wanted Running)"),
        (
            "Deploying",
            ["--for", "Running", "--fail-on", "Deploying,Failed"],
            1,
            "Deploying  (failed: wanted Running)",
        ),
        ("Waiting", ["--for", "Running", "--timeout", "1"], 3, "Waiting  (timed out after 1 s)"),
    ],
)
async def test_wait_exit_codes(
    cli: Cli, sim: Simulator, status: str, args: list[str], code: int, says: str
) -> None:
    instance_id = sim.instance_ids[2]
    sim.set_status(instance_id, status, hold=True)
    result = await cli.run("wait", instance_id, *args, "--interval", "0.2")
    assert result.code == code, result
    assert result.lines() == [f"{instance_id}  {says}"]
    assert "Traceback" not in result.err


async def test_wait_returns_once_the_status_is_reached(cli: Cli, sim: Simulator) -> None:
    instance_id = sim.instance_ids[3]
    sim.set_status(instance_id, "Waiting")
    running = await cli.start("wait", instance_id, "--for", "Running", "--interval", "0.2")
    try:
        await eventually(
            lambda: sim.stats["instances"].get(instance_id, 0) >= 2, within=LINE_TIMEOUT
        )
        assert running.proc.returncode is None, "wait must not end while the instance waits"
        sim.set_status(instance_id, "Running")
        result = await running.finish()
    finally:
        await running.stop()
    assert result.code == 0, result
    assert result.lines() == [f"{instance_id}  Running"]


async def test_wait_for_an_unknown_instance_exits_4(cli: Cli) -> None:
    result = await cli.run("wait", UNKNOWN_ID, "--for", "Running", "--interval", "0.1")
    assert result.code == 4
    assert "10004" in result.err


async def test_watch_ends_with_4_once_every_instance_is_gone(cli: Cli) -> None:
    result = await cli.run("watch", UNKNOWN_ID, "--interval", "0.1")
    assert result.code == 4
    assert "InstanceGoneError" in result.err
    assert "no instance left to watch" in result.err


# -- watch ---------------------------------------------------------------------------------------


async def test_watch_jsonl_until_terminal(cli: Cli, sim: Simulator) -> None:
    first, second = sim.instance_ids[1:3]
    sim.set_status(first, "Waiting")
    sim.set_status(second, "Deploying")
    running = await cli.start(
        "watch", first, second, "--interval", "0.2", "--until-terminal", "-o", "jsonl"
    )
    try:
        initial = [json.loads(await running.line()) for _ in range(2)]
        initial.sort(key=lambda c: str(c["instance_id"]))
        sim.set_status(first, "Running")
        to_running = json.loads(await running.line())
        sim.set_status(second, "Failed")
        to_failed = json.loads(await running.line())
        sim.set_status(first, "Completed")
        to_completed = json.loads(await running.line())
        result = await running.finish()
    finally:
        await running.stop()
    assert result.code == 0, result

    fields = {"instance_id", "previous", "current", "observed_at", "seq", "skipped"}
    for change in [*initial, to_running, to_failed, to_completed]:
        assert set(change) == fields
        assert datetime.fromisoformat(change["observed_at"]).utcoffset() is not None
    expected_initial = sorted(
        [
            {"instance_id": first, "previous": None, "current": "Waiting"},
            {"instance_id": second, "previous": None, "current": "Deploying"},
        ],
        key=lambda c: str(c["instance_id"]),
    )
    for change, expected in zip(initial, expected_initial, strict=True):
        assert change.items() >= {**expected, "seq": 1, "skipped": []}.items()
    assert (
        to_running.items()
        >= {
            "instance_id": first,
            "previous": "Waiting",
            "current": "Running",
            "seq": 2,
            "skipped": ["Deploying"],
        }.items()
    )
    assert (
        to_failed.items()
        >= {
            "instance_id": second,
            "previous": "Deploying",
            "current": "Failed",
            "seq": 2,
            "skipped": ["Running"],
        }.items()
    )
    assert (
        to_completed.items()
        >= {
            "instance_id": first,
            "previous": "Running",
            "current": "Completed",
            "seq": 3,
            "skipped": [],
        }.items()
    )
    assert len(result.lines()) == 5, "nothing printed for polls that saw no change"


async def test_watch_text_prints_one_line_per_change(cli: Cli, sim: Simulator) -> None:
    instance_id = sim.instance_ids[4]
    sim.set_status(instance_id, "Waiting")
    running = await cli.start("watch", instance_id, "--interval", "0.2", "--until-terminal")
    try:
        first = await running.line()
        sim.set_status(instance_id, "Completed")
        result = await running.finish()
    finally:
        await running.stop()
    assert result.code == 0, result
    assert result.lines()[0] == first
    matches = [CHANGE_LINE.match(line) for line in result.lines()]
    assert all(matches), result.lines()
    assert [(m[2], m[3], m[4]) for m in matches if m] == [
        (instance_id, "·", "Waiting"),
        (instance_id, "Waiting", "Completed"),
    ]
    assert result.lines()[1].endswith("  (passed Deploying, Running)")


async def test_watch_reads_ids_from_stdin(cli: Cli, sim: Simulator) -> None:
    ids = sim.instance_ids[1:4]
    for instance_id in ids:
        sim.set_status(instance_id, "Terminated")
    result = await cli.run(
        "watch", "-", "--interval", "0.2", "--until-terminal", "-o", "jsonl", stdin="\n".join(ids)
    )
    assert result.code == 0, result
    changes = [json.loads(line) for line in result.lines()]
    assert sorted(c["instance_id"] for c in changes) == sorted(ids)
    assert {c["current"] for c in changes} == {"Terminated"}


async def test_watch_until_terminal_follows_a_moving_simulator() -> None:
    async with Simulator(instances=3, seed=5, speed=200.0) as sim:
        cli = Cli(sim)
        args = ("watch", *sim.instance_ids, "--interval", "0.2", "--until-terminal", "-o", "jsonl")
        result = await cli.run(*args)
        assert result.code == 0, result
        changes = [json.loads(line) for line in result.lines()]
        last: dict[str, dict[str, Any]] = {}
        for change in changes:
            before = last.get(change["instance_id"])
            assert change["previous"] == (before["current"] if before else None)
            assert change["seq"] == (before["seq"] + 1 if before else 1)
            last[change["instance_id"]] = change
        assert set(last) == set(sim.instance_ids)
        assert {c["current"] for c in last.values()} <= TERMINAL
        assert all(sim.status(i) == last[i]["current"] for i in sim.instance_ids)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_interrupted_watch_exits_130_and_leaves_a_checkpoint(
    cli: Cli, sim: Simulator, tmp_path: Path, signum: signal.Signals
) -> None:
    instance_id = sim.instance_ids[1]
    sim.set_status(instance_id, "Waiting")
    checkpoint = tmp_path / "watch.json"
    running = await cli.start(
        "watch", instance_id, "--interval", "0.2", "--checkpoint", str(checkpoint)
    )
    try:
        first = await running.line()
        running.proc.send_signal(signum)
        result = await running.finish()
    finally:
        await running.stop()
    assert result.code == 130
    assert result.err == "", "a clean stop: no traceback, no complaint"
    assert first.endswith(f"{instance_id}  · → Waiting")
    state = json.loads(checkpoint.read_text(encoding="utf-8"))
    assert state["instances"][instance_id]["status"] == "Waiting"

    # What happened while nothing watched is reported by the next watch on the same file.
    sim.set_status(instance_id, "Completed")
    again = await cli.run(
        "watch",
        instance_id,
        "--interval",
        "0.2",
        "--checkpoint",
        str(checkpoint),
        "--until-terminal",
        "-o",
        "jsonl",
    )
    assert again.code == 0, again
    (change,) = (json.loads(line) for line in again.lines())
    assert change.items() >= {"previous": "Waiting", "current": "Completed", "seq": 2}.items()


# -- demo and the optional rich ------------------------------------------------------------------


async def test_demo_runs_to_the_end_with_a_summary(cli: Cli) -> None:
    # Settings in the environment are for the other commands: they do not stop the demo.
    env = base_env(AIOCONTAINER_BASE_URL="http://127.0.0.1:9", AIOCONTAINER_TOKEN="x")
    result = await cli.run("demo", "--instances", "4", "--speed", "60", env=env)
    assert result.code == 0, result
    lines = result.lines()
    assert lines[0].startswith("aiocontainer demo: simulator at http://127.0.0.1:")
    transitions = [line for line in lines if " → " in line]
    assert transitions, "every transition is printed live"
    table_at = next(i for i, line in enumerate(lines) if line.strip() == "final status")
    assert lines[table_at + 1].split()[:3] == ["ID", "NAME", "STATUS"]
    rows = [line.split() for line in lines[table_at + 2 : table_at + 6]]
    assert len({row[0] for row in rows}) == 4
    assert all(re.fullmatch(r"[0-9a-f]{32}", row[0]) and row[2] in TERMINAL for row in rows)
    assert re.match(r"^outcome: ", lines[table_at + 6])
    assert re.match(r"^requests \d+, retries \d+, failed lookups \d+", lines[-1])


def without_rich(*argv: str) -> tuple[str, ...]:
    code = (
        "import sys; sys.modules['rich'] = None; "
        "from aiocontainer.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return ("-c", code, *argv)


@pytest.mark.parametrize(
    "args",
    [["get", SEED_ID], ["watch", SEED_ID], ["wait", SEED_ID, "--for", "Running"], ["demo"]],
)
async def test_without_rich_the_cli_says_how_to_install_it(
    cli: Cli, sim: Simulator, args: list[str]
) -> None:
    result = await cli.run(*args, python=without_rich())
    assert_one_line_hint(result)
    assert "pip install 'aiocontainer[cli]'" in result.err
    assert requests(sim) == 0


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
