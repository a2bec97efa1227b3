"""``aiocontainer regions`` and ``--region``/``--profile`` against a scripted platform."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aiocontainer.cli._exits import UsageError
from aiocontainer.cli._parser import build_parser
from aiocontainer.cli.regions import credentials, uses_credentials
from tests.cli_inprocess import call_main
from tests.conftest import run_process
from tests.test_auth import write_like_scnet_cli
from tests.test_auth_scnet import AK, SEED_ID, SK, USER, FakePlatform, started

KEYS = {"SCNET_USER": USER, "SCNET_ACCESS_KEY": AK, "SCNET_SECRET_KEY": SK}


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


# -- which way a command connects ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["get", "x"], {}, False),
        (["get", "x"], KEYS, True),  # rule 5: keys alone
        (["get", "x"], {**KEYS, "AIOCONTAINER_TOKEN": "t"}, False),  # rule 4 before rule 5
        (["get", "x"], {"AIOCONTAINER_REGION": "East", "AIOCONTAINER_TOKEN": "t"}, True),  # 3
        (["--base-url", "http://h", "get", "x"], {"AIOCONTAINER_REGION": "East"}, False),  # 2
        (["--region", "East", "get", "x"], {"AIOCONTAINER_BASE_URL": "http://h"}, True),  # 1
        (["get", "x", "--profile", "work"], {"AIOCONTAINER_TOKEN": "t"}, True),  # 1
        (["regions"], {"AIOCONTAINER_TOKEN": "t"}, True),
    ],
)
def test_precedence_table(argv: list[str], env: dict[str, str], expected: bool) -> None:
    assert uses_credentials(parse(*argv), env) is expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--region", "East", "--token", "t", "get", "x"],
        ["get", "x", "--profile", "p", "--base-url", "http://h"],
        ["regions", "--token-file", "f"],
    ],
)
def test_credentials_and_a_url_or_token_on_one_command_line_is_a_usage_error(
    argv: list[str],
) -> None:
    with pytest.raises(UsageError, match="drop --"):
        uses_credentials(parse(*argv), {})


def test_no_secret_key_option_exists() -> None:
    help_text = build_parser().format_help()
    assert "--secret-key" not in help_text and "--access-key" not in help_text
    assert "how a command connects" in help_text and "AIOCONTAINER_REGION" in help_text


def test_credentials_from_profile_env_or_the_current_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCNET_HOME", str(tmp_path))
    path = write_like_scnet_cli(
        tmp_path,
        {
            "default": {"user": "d", "access_key": "AKD", "secret_key": SK},
            "work": {"user": "w", "access_key": "AKW", "secret_key": SK},
        },
        current="work",
    )
    path.chmod(0o644)
    assert credentials(parse("--profile", "default", "regions"), {}).user == "d"
    err = capsys.readouterr().err
    assert "warning:" in err and "chmod 600" in err and SK not in err  # printed, not raised
    path.chmod(0o600)
    assert credentials(parse("regions"), {}).user == "w"  # the file's current profile
    assert credentials(parse("regions"), KEYS).user == USER  # the environment first
    with pytest.raises(UsageError, match="SCNET_SECRET_KEY is not set"):
        credentials(parse("regions"), {"SCNET_USER": "u", "SCNET_ACCESS_KEY": "a"})
    with pytest.raises(UsageError, match="no profile 'nope'"):
        credentials(parse("--profile", "nope", "regions"), {})


def test_no_credentials_anywhere_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCNET_HOME", str(tmp_path / "absent"))
    with pytest.raises(UsageError, match=r"no scnet-cli config.*or set SCNET_USER"):
        credentials(parse("regions"), {})


# -- end to end ------------------------------------------------------------------------------


@pytest.fixture
async def live_platform() -> AsyncIterator[FakePlatform]:
    async for fake in started(time.time):
        yield fake


def cli_env(platform: FakePlatform, home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without AIOCONTAINER_*/SCNET_* settings, then ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIOCONTAINER_", "SCNET_")) and k not in ("COLUMNS", "FORCE_COLOR")
    }
    env.update(
        SCNET_HOME=str(home),
        AIOCONTAINER_AUTH_URL=platform.url,
        AIOCONTAINER_PLATFORM_URL=platform.url,
        **extra,
    )
    return env


async def aiocontainer(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process (the real command runs in the simulator tests below)."""
    code, out, err = await asyncio.wait_for(asyncio.to_thread(call_main, argv, env, b""), 60)
    for text in (out, err):
        assert SK not in text
        assert "Traceback" not in text
    return code, out, err


async def test_regions_json_and_table(live_platform: FakePlatform, tmp_path: Path) -> None:
    env = cli_env(live_platform, tmp_path, **KEYS)
    code, out, err = await aiocontainer("regions", "-o", "json", env=env)
    assert code == 0, err
    assert json.loads(out) == [
        {
            "name": "East",
            "cluster_id": "11112",
            "available": True,
            "ai_urls": [f"{live_platform.url}/ai"],
        },
        {"name": "Frozen", "cluster_id": "33334", "available": False, "ai_urls": []},
    ]
    code, out, err = await aiocontainer("regions", env=env)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "CLUSTER", "ID", "AVAILABLE", "AI", "URLS"]
    assert rows[0].split()[:3] == ["East", "11112", "yes"]
    assert rows[1].split()[:3] == ["Frozen", "33334", "no"]
    assert "available no: no token issued for the region (account disabled or in arrears)" in err
    assert not any(row.split()[0] == "ac" for row in rows)  # the platform token is no region


async def test_get_through_a_region_replaces_base_url_and_token(
    live_platform: FakePlatform, tmp_path: Path
) -> None:
    env = cli_env(live_platform, tmp_path, **KEYS)
    code, out, err = await aiocontainer("--region", "East", "get", SEED_ID, "-o", "json", env=env)
    assert code == 0, err
    assert json.loads(out)["id"] == SEED_ID
    assert live_platform.calls["login"] == 1 and live_platform.calls["detail"] == 1
    # By cluster id from the environment, and the only region with a token by default.
    for extra in ({"AIOCONTAINER_REGION": "11112"}, {}):
        code, out, err = await aiocontainer("get", SEED_ID, "-o", "json", env={**env, **extra})
        assert code == 0, err


async def test_a_profile_gives_keys_and_default_region(
    live_platform: FakePlatform, tmp_path: Path
) -> None:
    live_platform.regions.append(("West", "22223", True))
    path = write_like_scnet_cli(
        tmp_path,
        {"p": {"user": USER, "access_key": AK, "secret_key": SK, "default_cluster_id": "22223"}},
        current="p",
    )
    path.chmod(0o644)
    env = cli_env(live_platform, tmp_path)
    code, _, err = await aiocontainer("--profile", "p", "get", SEED_ID, "-o", "json", env=env)
    assert code == 0, err
    assert "warning:" in err and "other users may read it" in err
    assert live_platform.handed  # the detail was fetched with West's token
    cluster = live_platform.issued[live_platform.handed[-1][1]].cluster_id
    assert cluster == "22223"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--region", "Mars", "get", SEED_ID], "no region 'Mars'; known: East (11112)"),
        (["--region", "Frozen", "get", SEED_ID], "disabled or in arrears"),
        (["--region", "East", "--base-url", "http://127.0.0.1:1", "get", SEED_ID], "drop --"),
        (["--region", "East", "demo"], "own embedded simulator"),
    ],
)
async def test_bad_region_choices_are_one_line_usage_errors(
    live_platform: FakePlatform, tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = await aiocontainer(*argv, env=cli_env(live_platform, tmp_path, **KEYS))
    assert code == 2, err
    assert out == "" and message in err and len(err.strip().splitlines()) == 1
    assert live_platform.calls["detail"] == 0


async def test_wrong_keys_exit_4_after_one_call_with_advice(
    live_platform: FakePlatform, tmp_path: Path
) -> None:
    env = cli_env(live_platform, tmp_path, **{**KEYS, "SCNET_SECRET_KEY": "sk-wrong"})
    code, out, err = await aiocontainer("regions", env=env)
    assert code == 4 and out == ""
    assert "LoginError" in err and "clock" in err
    assert live_platform.calls["login"] == 1


def test_regions_help_tells_the_precedence(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("regions", "--help")
    text: Any = capsys.readouterr().out
    assert "how a command connects" in text and "--region NAME|ID" in text


# -- against the embedded simulator ----------------------------------------------------------


async def test_regions_and_region_lookup_against_the_simulator(tmp_path: Path) -> None:
    from aiocontainer.simulator import SEED_INSTANCE_ID, Simulator

    async with Simulator(instances=2) as sim:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIOCONTAINER_", "SCNET_")) and k != "COLUMNS"
        }
        env.update(
            SCNET_HOME=str(tmp_path),
            SCNET_USER=sim.user,
            SCNET_ACCESS_KEY=sim.access_key,
            SCNET_SECRET_KEY=sim.secret_key,
            AIOCONTAINER_AUTH_URL=sim.url,
            AIOCONTAINER_PLATFORM_URL=sim.url,
        )
        code, out, err = await run_process(
            sys.executable, "-m", "aiocontainer", "regions", "-o", "json", env=env, timeout=60
        )
        assert code == 0, err
        listed = [(r["name"], r["cluster_id"], r["available"]) for r in json.loads(out)]
        assert listed == [(r.name, r.cluster_id, r.available) for r in sim.regions]
        region = next(r for r in sim.regions if r.available)
        code, out, err = await run_process(
            sys.executable,
            "-m",
            "aiocontainer",
            "get",
            SEED_INSTANCE_ID,
            "-o",
            "json",
            "--region",
            region.name,
            env=env,
            timeout=60,
        )
        assert code == 0, err
        assert json.loads(out)["id"] == SEED_INSTANCE_ID
        assert sim.secret_key not in out + err


async def test_demo_goes_from_keys_to_regions_to_a_client() -> None:
    code, out, err = await run_process(
        sys.executable,
        "-m",
        "aiocontainer",
        "demo",
        "--instances",
        "2",
        "--speed",
        "200",
        "--fault-rate",
        "0",
        env={k: v for k, v in os.environ.items() if not k.startswith("AIOCONTAINER_")},
        timeout=120,
    )
    assert code == 0, err
    assert "signed in as magic2 with an access key; regions: " in out
    assert "(11245, unavailable)" in out
    assert "region 华东一区【昆山】: AI URL http://127.0.0.1:" in out
