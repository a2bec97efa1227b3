"""Every example runs as a script: on its own embedded simulator, and against a given platform."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aiocontainer import ContainerClient
from aiocontainer.simulator import Simulator
from tests.conftest import run_process

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEED_ID = "4c1f43ddb030483e89b55413bee6c004"
# Generous: the machine is shared; nothing here asserts a duration.
TIMEOUT = 240.0

# A line each example prints once it has done its job.
PROOF = {
    "bulk_lookup.py": r"^2000 instances in \d+\.\d+ s, 0 failed: \{.+\}$",
    "checkpointed_watch.py": (
        r"^second watcher, same checkpoint:\n(  [0-9a-f]{32}: \w+ -> \w+ \(#\d+\)\n)+"
    ),
    "lookup_one.py": rf"^{SEED_ID}  Instances_2205113837  \w+$",
    "wait_until_running.py": r"^[0-9a-f]{32} is Running since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$",
    "watch_callbacks.py": r"^all instances are terminal$",
    # The instance created while watching is reported, and the run ends with it counted.
    "watch_account.py": (
        r"^the account lists 4 instances: 4 Waiting\n(?s:.*)^created ([0-9a-f]{32}) while "
        r"watching\n(?s:.*)^\1: first seen -> \w+\n(?s:.*)^all 5 instances have ended$"
    ),
}


def example_names() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def clean_env() -> dict[str, str]:
    """No platform in the environment: an example left alone starts its own simulator."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIOCONTAINER_")}


def command(name: str, *args: str) -> list[str]:
    return [sys.executable, "-W", "error", str(EXAMPLES / name), *args]


@pytest.fixture(scope="module")
def started() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """All examples, started at once so that the slow ones overlap."""
    procs = {
        name: subprocess.Popen(
            command(name),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for name in example_names()
    }
    try:
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_every_example_has_a_proof_of_work(started: dict[str, subprocess.Popen[str]]) -> None:
    # Asking for ``started`` here sets every example going while the tests below run.
    assert set(started) == set(PROOF)


async def run_example(name: str, *args: str) -> tuple[int, str, str]:
    return await run_process(*command(name, *args), env=clean_env(), timeout=TIMEOUT)


@pytest.fixture
async def platform() -> AsyncIterator[Simulator]:
    """A platform the examples are pointed at; frozen, so statuses are what a test sets."""
    async with Simulator(instances=5, seed=21, frozen=True) as sim:
        yield sim


@pytest.mark.parametrize(
    ("name", "statuses", "proof"),
    [
        ("lookup_one.py", ["Deploying"], r"^{0}  \S+  Deploying$"),
        ("bulk_lookup.py", ["Waiting", "Running"], r"^2 instances in .*, 0 failed: "),
        ("wait_until_running.py", ["Running"], r"^{0} is Running since "),
        ("watch_callbacks.py", ["Completed", "Failed"], r"  {1} ended badly \(Failed\)\n"),
    ],
)
async def test_example_takes_base_url_token_and_ids(
    platform: Simulator, name: str, statuses: list[str], proof: str
) -> None:
    ids = platform.instance_ids[2 : 2 + len(statuses)]
    for instance_id, status in zip(ids, statuses, strict=True):
        platform.set_status(instance_id, status)
    code, out, err = await run_example(
        name, "--base-url", platform.base_url, "--token", platform.token, *ids
    )
    assert code == 0, err
    assert err == ""
    assert re.search(proof.format(*ids), out, re.MULTILINE), out
    # The lookups reached this simulator, for exactly the ids given.
    assert set(platform.stats["instances"]) == set(ids)


async def test_checkpointed_watch_reports_what_changed_while_down(platform: Simulator) -> None:
    instance_id = platform.instance_ids[1]
    platform.set_status(instance_id, "Running")
    proc = await asyncio.create_subprocess_exec(
        *command(
            "checkpointed_watch.py",
            "--base-url",
            platform.base_url,
            "--token",
            platform.token,
            instance_id,
        ),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while not seen or not seen[-1].startswith("stopped;"):
            line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
            assert line, f"output ended early: {seen}"
            seen.append(line)
        platform.set_status(instance_id, "Completed")  # while nothing watches
        rest, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert seen[:2] == ["first watcher:\n", f"  {instance_id}: first seen -> Running (#1)\n"]
    assert rest.decode().splitlines() == [
        "second watcher, same checkpoint:",
        f"  {instance_id}: Running -> Completed (#2)",
    ]


async def test_watch_account_lists_and_watches_a_given_platform_until_all_have_ended(
    platform: Simulator,
) -> None:
    ids = platform.instance_ids
    ended = ["Completed", "Failed", "Terminated"]
    for n, instance_id in enumerate(ids):
        platform.set_status(instance_id, ended[n % len(ended)])
    code, out, err = await run_example(
        "watch_account.py", "--base-url", platform.base_url, "--token", platform.token
    )
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert (
        lines[0] == f"the account lists {len(ids)} instances: 2 Completed, 2 Failed, 1 Terminated"
    )
    assert sorted(lines[1:-2]) == sorted(f"{i}: first seen -> {platform.status(i)}" for i in ids)
    assert lines[-2:] == [
        f"watching all {len(ids)} instances",
        f"all {len(ids)} instances have ended",
    ]
    endpoints = platform.stats["endpoints"]
    assert endpoints["list"] >= 2 and "detail" not in endpoints, "the list alone showed them"


async def test_watch_account_takes_no_ids(platform: Simulator) -> None:
    code, _, err = await run_example(
        "watch_account.py", "--base-url", platform.base_url, "--token", platform.token, "x"
    )
    assert code == 2
    assert "name no instance ids" in err and "Traceback" not in err
    assert platform.stats["total"] == 0


LISTS = hasattr(ContainerClient, "list_instances")


@pytest.mark.skipif(LISTS, reason="the client lists instances: the examples need no ids")
async def test_lookup_one_against_a_platform_needs_an_id(platform: Simulator) -> None:
    code, _, err = await run_example(
        "lookup_one.py", "--base-url", platform.base_url, "--token", platform.token
    )
    assert code == 1
    assert "name the instance ids" in err
    assert "Traceback" not in err
    assert platform.stats["total"] == 0


@pytest.mark.skipif(not LISTS, reason="needs ContainerClient.list_instances")
async def test_examples_use_the_platform_in_the_environment_and_list_its_ids(
    platform: Simulator,
) -> None:
    # What 'aiocontainer simulate' tells the user to export.
    env = dict(
        clean_env(), AIOCONTAINER_BASE_URL=platform.base_url, AIOCONTAINER_TOKEN=platform.token
    )
    for instance_id in platform.instance_ids:
        platform.set_status(instance_id, "Deploying")
    code, out, err = await run_process(*command("lookup_one.py"), env=env, timeout=TIMEOUT)
    assert code == 0, err
    found = re.search(r"^([0-9a-f]{32})  \S+  Deploying$", out, re.MULTILINE)
    assert found and found[1] in platform.instance_ids, out
    assert found[1] in platform.stats["instances"], "the lookup went to the exported platform"


# Collected last: the examples started by the first test ran meanwhile.
@pytest.mark.parametrize("name", sorted(PROOF))
def test_example_runs_on_its_own_simulator(
    started: dict[str, subprocess.Popen[str]], name: str
) -> None:
    out, err = started[name].communicate(timeout=TIMEOUT)
    assert started[name].returncode == 0, err
    assert err == "", "no warnings, no tracebacks"
    assert re.search(PROOF[name], out, re.MULTILINE), out
