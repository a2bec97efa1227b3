"""``aiocontainer get`` (``aiocontainer.cli.get``), run against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty

from aiocontainer.simulator import Simulator
from tests.conftest import SAMPLES, SEED_ID, UNKNOWN_ID, Cli, closed_port, secret_parts


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
