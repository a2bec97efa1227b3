"""``aiocontainer demo`` (``aiocontainer.cli.demo``)."""

from __future__ import annotations

import re

import pytest

from aiocontainer.cli.demo import closing_line
from aiocontainer.errors import (
    ChangesDroppedError,
    HTTPStatusError,
    InstanceGoneError,
    InstanceRecoveredNotice,
    InstanceStaleError,
    ResponseError,
    TransportError,
)
from tests.conftest import TERMINAL, Cli, assert_one_line_hint, base_env


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
    # Staleness, when there is any, is counted as notices, never named among the failures.
    assert "InstanceStaleError" not in lines[-1] and "InstanceRecoveredNotice" not in lines[-1]


def test_closing_line_keeps_staleness_notices_apart_from_failed_lookups() -> None:
    errors: dict[type[Exception], int] = {
        InstanceRecoveredNotice: 1,
        InstanceStaleError: 2,
        ResponseError: 1,
        HTTPStatusError: 2,
        TransportError: 3,
        InstanceGoneError: 1,
    }
    line = closing_line(120, 7, errors, 12.34)
    assert line == (
        "requests 120, retries 7, "
        "failed lookups 7 (HTTPStatusError 2, InstanceGoneError 1, ResponseError 1, "
        "TransportError 3), "
        "staleness notices 3 (stale 2, recovered 1), 12.3 s"
    )


def test_closing_line_counts_what_is_neither_a_lookup_nor_a_notice_on_its_own() -> None:
    line = closing_line(5, 0, {ChangesDroppedError: 2, ValueError: 1, InstanceStaleError: 1}, 1.0)
    assert line == (
        "requests 5, retries 0, failed lookups 0, staleness notices 1 (stale 1), "
        "other errors 3 (ChangesDroppedError 2, ValueError 1), 1.0 s"
    )


def test_closing_line_without_errors_says_no_lookup_failed() -> None:
    assert closing_line(3, 0, {}, 0.5) == "requests 3, retries 0, failed lookups 0, 0.5 s"
