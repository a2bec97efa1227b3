"""``aiocontainer watch`` and ``aiocontainer wait`` (``aiocontainer.cli.watch``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from aiocontainer.simulator import Simulator
from tests.cli_inprocess import InProcessCli
from tests.conftest import (
    CHANGE_LINE,
    LINE_TIMEOUT,
    SEED_ID,
    TERMINAL,
    UNKNOWN_ID,
    Cli,
    assert_one_line_hint,
    base_env,
    closed_port,
    eventually,
    piped_outcome,
    requests,
    start_into_head,
)


@pytest.fixture
def cli(sim: Simulator) -> InProcessCli:
    """Runs ``main`` in this process; ``cli.process`` and ``cli.start`` run the real command."""
    return InProcessCli(sim)


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


@pytest.mark.parametrize(
    ("signum", "again_after"),
    [
        (signal.SIGINT, None),
        (signal.SIGTERM, None),
        # A second Ctrl-C while the first one's cleanup runs changes nothing.
        (signal.SIGINT, 0.005),
        (signal.SIGINT, 0.012),
        (signal.SIGINT, 0.02),
    ],
)
async def test_interrupted_watch_exits_130_and_leaves_a_checkpoint(
    cli: Cli, sim: Simulator, tmp_path: Path, signum: signal.Signals, again_after: float | None
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
        if again_after is not None:
            await asyncio.sleep(again_after)
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


# -- hostile input and hygiene -------------------------------------------------------------------


async def test_watch_lines_show_a_hostile_status_visibly(cli: Cli, sim: Simulator) -> None:
    instance_id = sim.instance_ids[1]
    sim.set_status(instance_id, "Run\x1b]0;pwned\x07[/bold]\u202e")
    text = await cli.start("watch", instance_id, "--interval", "0.2")
    jsonl = await cli.start("watch", instance_id, "--interval", "0.2", "-o", "jsonl")
    try:
        line = await text.line()
        record = await jsonl.line()
    finally:
        await text.stop()
        await jsonl.stop()
    assert line.endswith(f"{instance_id}  · → Run\\x1b]0;pwned\\x07[/bold]\\u202e")
    assert "\x1b" not in record and "\u202e" not in record
    assert json.loads(record)["current"] == "Run\x1b]0;pwned\x07[/bold]\u202e"


async def test_watch_into_a_closed_pipe_ends_quietly(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    first, second = sim.instance_ids[1:3]
    sim.set_status(first, "Waiting")
    sim.set_status(second, "Waiting")
    running = await start_into_head(cli, tmp_path, "watch", first, second, "--interval", "0.1")
    try:
        await running.line()
        # head goes after one line; the next change finds nobody to read it. Changes keep
        # coming until then, so the test does not depend on when head has exited.
        for status in ["Running", "Waiting"] * int(LINE_TIMEOUT / 0.6):
            if running.proc.returncode is not None:
                break
            sim.set_status(first, status)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(running.proc.wait()), 0.3)
        result = await running.finish()
    finally:
        await running.stop()
    assert result.code == 0
    piped = piped_outcome(tmp_path)
    assert piped.err == "", "no traceback, no BrokenPipeError, no 'Exception ignored'"
    assert piped.code == 0
    polls = requests(sim)
    await asyncio.sleep(0.5)
    assert requests(sim) == polls, "no polling on after the reader went away"


async def test_wait_with_several_ids_on_stdin_is_a_usage_error(cli: Cli, sim: Simulator) -> None:
    first, second = sim.instance_ids[1:3]
    result = await cli.run("wait", "-", "--for", "Running", stdin=f"{first}\n{second}\n")
    assert_one_line_hint(result)
    assert "exactly one instance id" in result.err
    assert requests(sim) == 0


# -- answers that say what happened --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["watch", SEED_ID, "--interval", "0.1"],
        ["wait", SEED_ID, "--for", "Running", "--interval", "0.1", "--timeout", "600"],
    ],
)
async def test_a_rejected_token_ends_watch_and_wait_at_once_with_exit_4(
    cli: Cli, sim: Simulator, args: list[str]
) -> None:
    rejected = sim.issue_token(ttl=-60)
    cli.secrets.append(rejected)
    env = base_env(AIOCONTAINER_BASE_URL=sim.base_url, AIOCONTAINER_TOKEN=rejected)
    result = await cli.run(*args, env=env)
    assert result.code == 4, result
    assert result.out == ""
    assert "permission denied" in result.err and "'权限不足'" in result.err
    assert (
        result.err.strip()
        .splitlines()[-1]
        .startswith("aiocontainer: the platform refused the token (code 10008): check --token-file")
    )
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    "args",
    [
        ["watch", SEED_ID, "--interval", "0.1"],
        ["wait", SEED_ID, "--for", "Running", "--interval", "0.1", "--timeout", "600"],
    ],
)
async def test_an_unreachable_base_url_ends_watch_and_wait_with_exit_4(
    cli: Cli, args: list[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    env = base_env(AIOCONTAINER_BASE_URL=url, AIOCONTAINER_TOKEN=cli.sim.token)
    result = await cli.run("--timeout", "1", *args, env=env)
    assert result.code == 4, result
    assert f"cannot reach {url} (connection refused)" in result.err
    assert "ssl:default" not in result.err
    assert result.err.strip().splitlines()[-1] == (
        f"aiocontainer: cannot reach {url}: check --base-url or AIOCONTAINER_BASE_URL"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--for", "running"], "unknown status 'running' in --for (did you mean Running?)"),
        (["--for", "Runing"], "unknown status 'Runing' in --for (did you mean Running?)"),
        (["--for", "Running", "--fail-on", "Failed,Kaput"], "unknown status 'Kaput' in --fail-on"),
    ],
)
async def test_an_unknown_status_to_wait_for_is_a_usage_error(
    cli: Cli, sim: Simulator, args: list[str], says: str
) -> None:
    result = await cli.run("wait", SEED_ID, *args)
    assert_one_line_hint(result)
    assert says in result.err and "--allow-unknown-status" in result.err
    assert requests(sim) == 0


async def test_allow_unknown_status_waits_for_a_status_beyond_the_six(
    cli: Cli, sim: Simulator
) -> None:
    sim.set_status(SEED_ID, "Suspended")
    args = ("wait", SEED_ID, "--for", "Suspended", "--interval", "0.1")
    result = await cli.run(*args, "--allow-unknown-status")
    assert result.code == 0, result
    assert result.lines() == [f"{SEED_ID}  Suspended"]


async def test_wait_reports_a_gone_instance_once(cli: Cli) -> None:
    result = await cli.run("wait", UNKNOWN_ID, "--for", "Running", "--interval", "0.1")
    assert result.code == 4
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"{UNKNOWN_ID}: InstanceGoneError: no such instance (or not yours)")


async def test_a_resumed_watch_says_what_it_resumed(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    first, second = sim.instance_ids[1:3]
    sim.set_status(first, "Completed")
    checkpoint = tmp_path / "watch.json"
    args = ("--interval", "0.1", "--until-terminal", "--checkpoint", str(checkpoint))
    fresh = await cli.run("watch", first, *args)
    assert fresh.code == 0 and fresh.err == "", fresh
    sim.set_status(second, "Failed")
    resumed = await cli.run("watch", first, second, *args)
    assert resumed.code == 0, resumed
    assert resumed.err.strip() == (
        f"aiocontainer: resuming from {checkpoint}: 1 of 2 ids have a saved status; "
        "what changed since is reported first"
    )


# -- the whole account, and the way of polling ---------------------------------------------------


async def test_watch_all_reports_every_instance_then_new_and_gone_ones(
    cli: Cli, sim: Simulator
) -> None:
    running = await cli.start("watch", "--all", "--interval", "0.2", "-o", "jsonl")
    try:
        first = [json.loads(await running.line()) for _ in sim.instance_ids]
        assert sorted(c["instance_id"] for c in first) == sorted(sim.instance_ids)
        assert all(c["previous"] is None and c["seq"] == 1 for c in first)
        (created,) = sim.add_instances(1)
        appeared = json.loads(await running.line())
        assert appeared.items() >= {"instance_id": created, "previous": None, "seq": 1}.items()
        gone = sim.instance_ids[1]
        sim.remove_instance(gone)
        polls = requests(sim)
        await eventually(lambda: requests(sim) > polls + 10, within=LINE_TIMEOUT)
        running.proc.send_signal(signal.SIGINT)
        result = await running.finish()
    finally:
        await running.stop()
    assert result.code == 130
    # Before it is confirmed gone, the watcher may report it stale once: it is missing from
    # the list and its detail answers 10004.
    errors = [
        line
        for line in result.err.strip().splitlines()
        if not line.startswith(f"{gone}: InstanceStaleError: ")
    ]
    assert errors == [
        f"{gone}: InstanceGoneError: no such instance (or not yours): instance {gone} is gone: "
        "3 lookups in a row answered code 10004"
    ]
    assert len(result.lines()) == len(sim.instance_ids) + 1, "nothing reported twice"


async def test_watch_all_until_terminal_ends_only_after_listing_the_whole_account(
    cli: Cli, sim: Simulator
) -> None:
    *ended, running = sim.instance_ids
    for n, instance_id in enumerate(ended):
        sim.set_status(instance_id, "Failed" if n % 2 else "Completed")
    sim.set_status(running, "Running")
    sim.set_listing(page_cap=1)  # a page of one: the first shows an ended instance, nothing more
    args = ("watch", "--all", "--interval", "0.2", "--until-terminal", "-o", "jsonl")
    watching = await cli.start(*args)
    try:
        first = [json.loads(await watching.line()) for _ in sim.instance_ids]
        assert {c["instance_id"]: c["current"] for c in first} == {
            i: sim.status(i) for i in sim.instance_ids
        }
        sim.set_status(running, "Completed")
        result = await watching.finish()
    finally:
        await watching.stop()
    assert result.code == 0, result
    (last,) = map(json.loads, result.lines()[len(first) :])
    assert last.items() >= {"instance_id": running, "previous": "Running", "seq": 2}.items()


@pytest.mark.parametrize(("sweep", "lists"), [("list", True), ("detail", False)])
async def test_watch_sweep_chooses_how_to_poll(
    cli: Cli, sim: Simulator, sweep: str, lists: bool
) -> None:
    first, second = sim.instance_ids[1:3]
    sim.set_status(first, "Completed")
    sim.set_status(second, "Failed")
    args = ("watch", first, second, "--sweep", sweep, "--interval", "0.1", "--until-terminal")
    result = await cli.run(*args, "-o", "jsonl")
    assert result.code == 0, result
    seen = {c["instance_id"]: c["current"] for c in map(json.loads, result.lines())}
    assert seen == {first: "Completed", second: "Failed"}
    assert (sim.stats["endpoints"].get("list", 0) > 0) is lists


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["watch", "--all", SEED_ID], "--all watches every instance: name no ids with it"),
        (["watch", "--all", "--sweep", "detail"], "it cannot use --sweep detail"),
        (["watch"], "name the instance ids to watch, - to read them from stdin, or --all"),
    ],
)
async def test_watch_all_and_sweep_misuse_is_a_usage_error(
    cli: Cli, sim: Simulator, args: list[str], says: str
) -> None:
    result = await cli.run(*args)
    assert_one_line_hint(result)
    assert says in result.err
    assert requests(sim) == 0
