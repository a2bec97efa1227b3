"""The command line's parser, help, configuration and token hygiene (``aiocontainer.cli``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aiocontainer.simulator import Simulator
from tests.cli_inprocess import InProcessCli
from tests.conftest import (
    CHANGE_LINE,
    EXIT_CODES,
    SEED_ID,
    Cli,
    assert_one_line_hint,
    base_env,
    requests,
    without_rich,
)


@pytest.fixture
def cli(sim: Simulator) -> InProcessCli:
    """Runs ``main`` in this process; ``cli.process`` and ``cli.start`` run the real command."""
    return InProcessCli(sim)


def exit_codes_in(help_text: str) -> set[int]:
    _, found, section = help_text.partition("exit codes:\n")
    assert found, "no 'exit codes:' section"
    return {int(m.group(1)) for m in re.finditer(r"^\s+(\d+)\s+\S", section, re.MULTILINE)}


@pytest.mark.parametrize(
    ("command", "codes"),
    [
        ([], EXIT_CODES),
        (["get"], {0, 2, 4, 130}),
        (["watch"], {0, 2, 4, 130}),
        (["wait"], EXIT_CODES),
        (["demo"], {0, 2, 130}),
        (["simulate"], {0, 1, 2}),
    ],
)
async def test_help_shows_the_exit_codes_that_apply(
    cli: Cli, command: list[str], codes: set[int]
) -> None:
    result = await cli.run(*command, "--help")
    assert result.code == 0
    assert exit_codes_in(result.out) == codes
    if 130 in codes:
        assert re.search(r"^\s+130\s+interrupted", result.out, re.MULTILINE)
    if 3 in codes:
        assert re.search(r"^\s+3\s+.*timed out", result.out, re.MULTILINE)


@pytest.mark.parametrize(
    ("command", "option", "default"),
    [
        (["simulate"], "--port PORT", "8765"),
        (["simulate"], "--speed SPEED", "1.0"),
        (["watch"], "--interval S", "5"),
        (["demo"], "--speed F", "20"),
    ],
)
async def test_help_shows_defaults(cli: Cli, command: list[str], option: str, default: str) -> None:
    result = await cli.run(*command, "--help")
    entry = re.search(rf"^  {re.escape(option)}(.*?)^  -", result.out, re.MULTILINE | re.DOTALL)
    assert entry, result.out
    assert re.search(rf"\(default:? {re.escape(default)}\)", " ".join(entry[1].split()))


@pytest.mark.parametrize(
    "args",
    [
        ["-v", "simulate", "-h"],
        ["-vv", "demo", "--help"],
        ["--timeout", "3", "wait", "--help"],
        ["--concurrency", "4", "get", "--help"],
    ],
)
async def test_global_options_stand_before_every_command(cli: Cli, args: list[str]) -> None:
    result = await cli.run(*args)
    assert result.code == 0, result
    assert result.out.startswith("usage: aiocontainer ")


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


async def test_no_command_prints_usage_and_exits_2(cli: InProcessCli) -> None:
    result = await cli.process.run()  # the real command, end to end
    assert result.code == 2
    assert "usage: aiocontainer" in result.err
    assert result.out == ""


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


@pytest.mark.parametrize("args", [["get", SEED_ID], ["get", SEED_ID, "-o", "table"], ["demo"]])
async def test_without_rich_tables_say_how_to_install_it(
    cli: Cli, sim: Simulator, args: list[str]
) -> None:
    result = await cli.run(*args, python=without_rich())
    assert_one_line_hint(result)
    assert "pip install 'aiocontainer[cli]'" in result.err
    assert requests(sim) == 0


@pytest.mark.parametrize(
    "args",
    [
        ["get", SEED_ID, "-o", "json"],
        ["get", SEED_ID, "-o", "jsonl"],
        ["watch", SEED_ID, "-o", "jsonl", "--until-terminal", "--interval", "0.1"],
        ["watch", SEED_ID, "--until-terminal", "--interval", "0.1"],
        ["wait", SEED_ID, "--for", "Completed", "--interval", "0.1"],
    ],
)
async def test_without_rich_json_and_plain_lines_still_work(
    cli: Cli, sim: Simulator, args: list[str]
) -> None:
    sim.set_status(SEED_ID, "Completed")
    result = await cli.run(*args, python=without_rich())
    assert result.code == 0, result
    assert SEED_ID in result.out or json.loads(result.lines()[0])["id"] == SEED_ID
    assert result.err == ""


async def test_a_token_file_that_is_not_utf8_is_a_one_line_hint(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    path = tmp_path / "token.der"
    path.write_bytes(b"\x30\x82\x01\xff\xfe binary")
    env = base_env(AIOCONTAINER_BASE_URL=sim.base_url)
    result = await cli.run("--token-file", str(path), "get", SEED_ID, env=env)
    assert_one_line_hint(result)
    assert "not UTF-8" in result.err and str(path) in result.err
    assert requests(sim) == 0


async def test_a_token_file_path_from_the_environment_expands_the_home_directory(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    (tmp_path / ".scnet-token").write_text(sim.token + "\n", encoding="utf-8")
    env = base_env(
        AIOCONTAINER_BASE_URL=sim.base_url,
        AIOCONTAINER_TOKEN_FILE="~/.scnet-token",
        HOME=str(tmp_path),
    )
    result = await cli.run("get", SEED_ID, "-o", "json", env=env)
    assert result.code == 0, result
    assert result.json()["id"] == SEED_ID
