"""``aiocontainer list`` (``aiocontainer.cli.listing``), run against the simulator."""

from __future__ import annotations

import json

import pytest

from aiocontainer.simulator import Simulator
from tests.cli_inprocess import InProcessCli
from tests.conftest import Cli, requests


@pytest.fixture
def cli(sim: Simulator) -> InProcessCli:
    """Runs ``main`` in this process; ``cli.process`` and ``cli.start`` run the real command."""
    return InProcessCli(sim)


async def test_list_json_is_every_instance_once_as_the_platform_sends_it(
    cli: Cli, sim: Simulator
) -> None:
    result = await cli.run("list", "-o", "json", "--page-size", "2")
    assert result.code == 0, result
    listed = result.json()
    assert sorted(item["id"] for item in listed) == sorted(sim.instance_ids)
    for item in listed:
        assert item == sim.instance(item["id"])
    assert result.err == ""


async def test_list_jsonl_prints_one_object_per_line(cli: Cli, sim: Simulator) -> None:
    result = await cli.run("list", "-o", "jsonl", "--page-size", "4")
    assert result.code == 0, result
    ids = [json.loads(line)["id"] for line in result.lines()]
    assert sorted(ids) == sorted(sim.instance_ids)


async def test_list_filters_by_status(cli: Cli, sim: Simulator) -> None:
    chosen = sim.instance_ids[:2]
    for instance_id in sim.instance_ids:
        sim.set_status(instance_id, "Running" if instance_id in chosen else "Completed")
    result = await cli.run("list", "--status", "Running", "-o", "jsonl")
    assert result.code == 0, result
    assert sorted(json.loads(line)["id"] for line in result.lines()) == sorted(chosen)


async def test_list_filters_by_name(cli: Cli, sim: Simulator) -> None:
    first, second = sim.instance_ids[1:3]
    names = [sim.instance(i)["instanceServiceName"] for i in (first, second)]
    result = await cli.run("list", "--name", names[0], "--name", names[1], "-o", "jsonl")
    assert result.code == 0, result
    assert sorted(json.loads(line)["id"] for line in result.lines()) == sorted([first, second])


async def test_list_table_has_a_row_per_instance(cli: InProcessCli, sim: Simulator) -> None:
    result = await cli.process.run("list")  # the real command, end to end
    assert result.code == 0, result
    header, *rows = result.lines()
    assert header.split()[:3] == ["ID", "NAME", "STATUS"]
    assert sorted(row.split()[0] for row in rows) == sorted(sim.instance_ids)


async def test_list_bad_entry_is_reported_after_the_good_ones_with_exit_4(
    cli: Cli, sim: Simulator
) -> None:
    bad = dict(sim.instance(sim.instance_ids[1]), id="b" * 32, cpuNumber="many")
    sim.add_instance(bad)  # it copies an old createTime, so it sorts last
    result = await cli.run("list", "-o", "jsonl", "--page-size", "100")
    assert result.code == 4, result
    printed = [json.loads(line)["id"] for line in result.lines()]
    assert sorted(printed) == sorted(i for i in sim.instance_ids if i != bad["id"])
    assert "ListEntryError" in result.err and "$.cpuNumber" in result.err
    assert f"offset 0, entry {len(printed)}" in result.err


async def test_list_bad_options_are_usage_errors(cli: Cli, sim: Simulator) -> None:
    bad = (
        ["--status", "Sleeping"],
        ["--task-type", "vnc"],
        ["--page-size", "0"],
        ["--name", ""],
        ["--name", "\udcff"],  # a byte that is not UTF-8 on the command line
    )
    for args in bad:
        result = await cli.run("list", *args)
        assert result.code == 2, result
        assert result.out == ""
        assert "error: argument" in result.err and "Traceback" not in result.err
    assert requests(sim) == 0
