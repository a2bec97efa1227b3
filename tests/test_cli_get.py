"""``aiocontainer get`` (``aiocontainer.cli.get``), run against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
from pathlib import Path

import attrs
import pytest

from aiocontainer.simulator import Simulator
from tests.cli_inprocess import InProcessCli
from tests.conftest import (
    SAMPLES,
    SEED_ID,
    TOKEN,
    UNKNOWN_ID,
    Cli,
    Endpoint,
    ScriptedServer,
    assert_one_line_hint,
    closed_port,
    code_reply,
    ok_reply,
    piped_outcome,
    requests,
    secret_parts,
    start_into_head,
)


@pytest.fixture
def cli(sim: Simulator) -> InProcessCli:
    """Runs ``main`` in this process; ``cli.process`` and ``cli.start`` run the real command."""
    return InProcessCli(sim)


async def test_get_json_of_the_seed_instance_is_the_platform_data(cli: InProcessCli) -> None:
    seed = json.loads((SAMPLES / "seed_detail.json").read_text(encoding="utf-8"))
    # The real command, end to end: the other plain runs call main in this process.
    result = await cli.process.run("get", SEED_ID, "--output", "json")
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


# -- hostile input on the terminal ---------------------------------------------------------------

HOSTILE_NAME = "[/bold] [link=https://evil.example]click[/link] \x1b]0;pwned\x07\x1b[2J\u202eok"
SGR = re.compile("\x1b\\[[0-9;]*m")


@pytest.mark.parametrize("terminal", [False, True])
async def test_get_table_shows_server_text_literally(
    cli: Cli, sim: Simulator, terminal: bool
) -> None:
    data = sim.instance(SEED_ID)
    data.update(id="feedfacefeedfacefeedfacefeedface", instanceServiceName=HOSTILE_NAME)
    data.update(status="Runn\x9b2Jing")
    hostile = sim.add_instance(data)
    env = cli.env(FORCE_COLOR="1", COLUMNS="300", TERM="xterm-256color") if terminal else None
    result = await cli.run("get", hostile, SEED_ID, env=env)
    assert result.code == 0, result
    assert "Traceback" not in result.err
    row = next(line for line in result.lines() if hostile in line)
    assert "[/bold] [link=https://evil.example]click[/link]" in row
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202eok" in row and "Runn\\x9b2Jing" in row
    assert "\x1b" not in SGR.sub("", result.out), "only colours reach the terminal"
    assert "\x9b" not in result.out and "\u202e" not in result.out


async def test_get_error_lines_show_a_hostile_message_visibly(server: ScriptedServer) -> None:
    server.script(UNKNOWN_ID, code_reply("10004", "[/bold]\x1b]8;;https://evil.example\x07x"))
    cli = Cli(Endpoint(server.base_url, TOKEN))
    result = await cli.run("get", UNKNOWN_ID, env=cli.env(FORCE_COLOR="1"))
    assert result.code == 4
    assert "Traceback" not in result.err
    assert "[/bold]\\x1b]8;;https://evil.example\\x07x" in result.err
    assert "\x1b]" not in result.err


async def test_get_prints_a_value_nested_1000_deep(server: ScriptedServer) -> None:
    shallow = ok_reply(SEED_ID, extraDeep="PLACEHOLDER")
    deep = '{"k": ' * 1000 + '"bottom"' + "}" * 1000
    body = shallow.body.replace(b'"PLACEHOLDER"', deep.encode())
    server.script(SEED_ID, attrs.evolve(shallow, body=body))
    cli = Cli(Endpoint(server.base_url, TOKEN))
    result = await cli.run("get", SEED_ID, "-o", "json")
    assert "Traceback" not in result.err and "RecursionError" not in result.err
    if result.code == 0:
        assert result.out.rstrip().endswith('"bottom"' + "}" * 1001)
        assert result.out.count('{"k": ') == 1000
    else:
        # A parser that bounds nesting refuses the body instead: a typed error, one line.
        assert result.code == 4 and "ResponseError" in result.err, result


# -- stdin and stdout as pipes ------------------------------------------------------------------


async def test_get_jsonl_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # Enough output to overflow the pipe's buffer once head has gone.
    async with Simulator(instances=200, seed=3, frozen=True) as sim:
        cli = Cli(sim)
        running = await start_into_head(cli, tmp_path, "get", *sim.instance_ids, "-o", "jsonl")
        result = await running.finish()
    assert result.code == 0
    assert len(result.lines()) == 1 and json.loads(result.out)["id"] == sim.instance_ids[0]
    piped = piped_outcome(tmp_path)
    assert piped.err == "", "no traceback, no 'Exception ignored'"
    assert piped.code == 0


async def test_get_reads_stdin_ids_as_they_arrive(cli: Cli, sim: Simulator) -> None:
    first, second = sim.instance_ids[1:3]
    running = await cli.start("get", "-", "-o", "jsonl", stdin=f"{first}\n", keep_stdin=True)
    try:
        # The first result comes while stdin is still open.
        assert json.loads(await running.line())["id"] == first
        assert running.proc.stdin is not None
        running.proc.stdin.write(f"# more\n{second}\n".encode())
        await running.proc.stdin.drain()
        assert json.loads(await running.line())["id"] == second
        running.proc.stdin.close()
        result = await running.finish()
    finally:
        await running.stop()
    assert result.code == 0, result
    assert len(result.lines()) == 2


@pytest.mark.parametrize(
    ("stdin", "says"),
    [
        (f"{SEED_ID}\n# fine\n{'a' * 5000}\n{SEED_ID}\n", "stdin line 3 is longer than 4096"),
        (f"{SEED_ID}\n{'b' * 200_000}", "stdin line 2 is longer than 4096"),
        (f"{SEED_ID}\n".encode() + b"\xff\xfe\n", "stdin line 2 is not UTF-8"),
    ],
)
async def test_get_rejects_a_bad_stdin_line_by_its_number(
    cli: Cli, sim: Simulator, stdin: str | bytes, says: str
) -> None:
    running = await cli.start("get", "-", stdin=b"", keep_stdin=True)
    assert running.proc.stdin is not None
    running.proc.stdin.write(stdin.encode() if isinstance(stdin, str) else stdin)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await running.proc.stdin.drain()
        running.proc.stdin.close()
    try:
        result = await running.finish()
    finally:
        await running.stop()
    assert_one_line_hint(result)
    assert says in result.err
    assert requests(sim) == 0, "the batch with the bad line is never sent"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
async def test_get_from_stdin_holds_little_of_it_in_memory(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    def program(report: Path) -> tuple[str, ...]:
        # VmHWM, not ru_maxrss: the latter carries the parent's peak over across exec.
        code = (
            "import sys\n"
            "from aiocontainer.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
            f"open({str(report)!r}, 'w').write(peak.split()[1])\n"
            "sys.exit(code)\n"
        )
        return ("-c", code)

    one = f"{SEED_ID}\n"
    small = await cli.run("get", "-", "-o", "jsonl", stdin=one, python=program(tmp_path / "small"))
    assert small.code == 0, small
    # 32 MiB of ids: one id a million times, which a reader holding stdin keeps as a million
    # strings (about 80 MiB).
    big = await cli.run(
        "get", "-", "-o", "jsonl", stdin=one * 1_000_000, python=program(tmp_path / "big")
    )
    assert big.code == 0, big
    assert big.lines() == small.lines(), "a repeated id is looked up and printed once"
    assert requests(sim) == 2
    grown_kib = int((tmp_path / "big").read_text()) - int((tmp_path / "small").read_text())
    assert grown_kib < 16 * 1024, f"peak memory grew by {grown_kib} KiB"


async def test_get_json_from_stdin_is_keyed_by_id_even_for_one_id(cli: Cli, sim: Simulator) -> None:
    one = sim.instance_ids[1]
    result = await cli.run("get", "-", "-o", "json", stdin=f"{one}\n")
    assert result.code == 0, result
    assert result.json() == {one: sim.instance(one)}
    keyed = await cli.run("get", one, "--keyed", "-o", "json")
    assert keyed.json() == {one: sim.instance(one)}
    several = await cli.run("get", "-", "-o", "json", stdin="\n".join(sim.instance_ids))
    assert list(several.json()) == sim.instance_ids


# -- answers that say what happened --------------------------------------------------------------


async def test_get_of_an_unknown_id_reads_no_such_instance(cli: Cli) -> None:
    result = await cli.run("get", UNKNOWN_ID)
    assert result.code == 4
    assert result.err.splitlines()[0] == (
        f"{UNKNOWN_ID}: InvalidParameterError: no such instance (or not yours) "
        "(code 10004, the platform said '参数无效')"
    )


async def test_get_of_a_truncated_answer_reads_truncated_or_invalid_json(
    cli: Cli, sim: Simulator
) -> None:
    sim.script_faults(SEED_ID, ["truncated"] * 10)
    result = await cli.run("--timeout", "2", "get", SEED_ID)
    assert result.code == 4
    assert f"{SEED_ID}: ResponseError: truncated or invalid JSON" in result.err


async def test_get_to_an_unreachable_base_url_says_cannot_reach_it(cli: Cli) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = await cli.run("get", "--base-url", url, "--timeout", "1", SEED_ID, UNKNOWN_ID)
    assert result.code == 4
    assert f"{SEED_ID}: TransportError: cannot reach {url} (connection refused)" in result.err
    assert "ssl:default" not in result.err
    assert f"aiocontainer: cannot reach {url}: check --base-url" in result.err


@pytest.mark.parametrize("columns", [80, 100])
async def test_get_table_fits_the_terminal_and_never_wraps_id_or_status(
    cli: Cli, sim: Simulator, columns: int
) -> None:
    ids = sim.instance_ids
    sim.set_status(ids[1], "Terminated")
    result = await cli.run("get", *ids, env=cli.env(COLUMNS=str(columns)))
    assert result.code == 0, result
    header, *rows = result.lines()
    assert all(len(line) <= columns for line in result.lines()), result.out
    assert header.split()[:3] == ["ID", "NAME", "STATUS"]
    assert len(rows) == len(ids), "one line per instance: nothing wraps"
    for instance_id, row in zip(ids, rows, strict=True):
        assert row.split()[0] == instance_id
        assert sim.status(instance_id) in row.split()
