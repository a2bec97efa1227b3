"""The token never leaves the request header: not in reprs, models, errors, logs or CLI output.

Each check looks for the whole token and for its long fragments (a JWT's payload and signature, or
the hex tail of a fixed token), so a token cut in half or split at a dot still counts as a leak.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from aiocontainer import (
    AiocontainerError,
    ChangesDroppedError,
    ContainerClient,
    InstanceDetail,
    InstanceGoneError,
    InstanceWatcher,
    ResponseError,
    StatusChange,
    WaitTimeoutError,
)
from aiocontainer.simulator import FAULT_KINDS, Simulator
from tests.conftest import Reply, ScriptedServer, json_reply, run_process

FIXED_TOKEN = "sekret-" + "3f9a0c" * 6 + "d2e1"
UNKNOWN_ID = "0" * 32
EVERY_FAULT = {kind: 1.0 for kind in FAULT_KINDS if kind != "http_429"} | {"http_429:0": 1.0}


# -- looking for the token ---------------------------------------------------------------------


def fragments(token: str) -> list[str]:
    """The token and every long piece of it that would still give it away."""
    pieces = [token, *(p for p in token.replace("-", ".").split(".") if len(p) >= 16)]
    return list(dict.fromkeys(pieces))


def shows(text: str, tokens: Sequence[str]) -> bool:
    return any(piece in text for token in tokens for piece in fragments(token))


_OPAQUE = (type, types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType)


def leaks(root: object, tokens: Sequence[str], *, depth: int = 4) -> list[str]:
    """Where under ``root`` a token shows in a repr or str.

    Exceptions are followed along ``__cause__`` and ``__context__`` (at no cost in depth) and into
    their ``args`` and ``vars()``; other objects into their attributes, slots and items.
    """
    found: list[str] = []
    seen: set[int] = set()

    def visit(obj: object, path: str, level: int) -> None:
        if obj is None or id(obj) in seen or isinstance(obj, _OPAQUE):
            return
        seen.add(id(obj))
        try:
            texts = (repr(obj), str(obj))
        except Exception as exc:  # a repr that raises is a finding of its own
            found.append(f"{path}: repr raised {exc!r}")
            return
        if any(shows(text, tokens) for text in texts):
            found.append(path)
        if isinstance(obj, BaseException):
            visit(obj.__cause__, f"{path}.__cause__", level)
            visit(obj.__context__, f"{path}.__context__", level)
        if level >= depth or isinstance(obj, (str, bytes, int, float, bool)):
            return
        if isinstance(obj, Mapping):
            for key, value in list(obj.items()):
                visit(value, f"{path}[{key!r}]", level + 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for n, value in enumerate(obj):
                visit(value, f"{path}[{n}]", level + 1)
        for name, value in list(getattr(obj, "__dict__", {}).items()):
            visit(value, f"{path}.{name}", level + 1)
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                visit(getattr(obj, name, None), f"{path}.{name}", level + 1)
        if isinstance(obj, BaseException):
            visit(obj.args, f"{path}.args", level + 1)

    visit(root, "value", 0)
    return found


def test_the_search_finds_a_token_wherever_it_hides() -> None:
    """The checks below mean something only if this one can see a token when there is one."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJleHBpcmVUaW1lIjoiMTcwMDAwMDAwMDAwMCJ9.c2lnbmF0dXJlLXBhcnQ"
    inner = OSError("refused")
    inner.request_info = types.SimpleNamespace(headers={"token": token})  # type: ignore[attr-defined]
    outer = AiocontainerError("failed")
    outer.__context__ = inner
    assert "value.__context__.request_info.headers['token']" in leaks(outer, [token])
    half = token.split(".")[1]
    assert leaks(ResponseError("bad", snippet=f"...{half}"), [token])
    assert leaks(AiocontainerError("fine"), [token]) == []
    assert shows(f"key {FIXED_TOKEN[7:]}", [FIXED_TOKEN])


def log_texts(records: Sequence[logging.LogRecord]) -> Iterator[str]:
    """Everything a handler could write for each record: the message, traceback, stack."""
    formatter = logging.Formatter()
    for record in records:
        yield record.getMessage()
        if record.exc_info:
            yield formatter.formatException(record.exc_info)
        if record.stack_info:
            yield record.stack_info


# -- a faulted run through the library -----------------------------------------------------------


class Provider:
    """Hands out the tokens it was given, one per call, and remembers how often it was asked."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        return self.tokens[min(self.calls, len(self.tokens)) - 1]


@pytest.mark.parametrize("kind", ["fixed", "renewed"])
async def test_a_long_faulted_run_shows_the_token_nowhere(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiocontainer")
    async with Simulator(
        instances=30,
        seed=9,
        speed=60,
        token=FIXED_TOKEN,
        fault_rate=0.4,
        fault_kinds=EVERY_FAULT,
        slow_latency=0.4,
    ) as sim:
        ids = sim.instance_ids
        if kind == "fixed":
            tokens: list[str] = [FIXED_TOKEN]
            token: Any = FIXED_TOKEN
        else:
            tokens = [sim.issue_token(ttl=3600), sim.issue_token(ttl=3600)]
            token = Provider(*tokens)
        failures: list[BaseException] = []
        models: list[object] = []
        async with ContainerClient(
            sim.base_url,
            token=token,
            timeout=0.3,
            max_attempts=2,
            backoff_factor=0.01,
            backoff_max=0.05,
        ) as client:
            for round_ in range(3):
                results = await client.get_instances([*ids, UNKNOWN_ID, "not/an/id"])
                failures += [r for r in results.values() if isinstance(r, BaseException)]
                models += [r for r in results.values() if isinstance(r, InstanceDetail)]
                if round_ == 0 and kind == "renewed":
                    sim.expire_token(tokens[0])  # the next lookups get 10008 and renew once

            watcher = InstanceWatcher(client, [*ids, UNKNOWN_ID], interval=0.1, gone_after=2)
            changes: list[StatusChange] = []
            watcher.on_change(changes.append)

            async def sluggish(change: StatusChange) -> None:
                await asyncio.sleep(1)

            watcher.on_change(sluggish, queue_size=1)  # falls behind: ChangesDroppedError
            watcher.on_error(lambda instance_id, exc: failures.append(exc))
            async with watcher:
                with pytest.raises(WaitTimeoutError) as waited:
                    await watcher.wait_for(ids[0], "NeverThere", timeout=1.0, fail_on=())
                failures.append(waited.value)
                # Under load the gone id and the overflow can take longer than the wait above.
                for _ in range(200):
                    if any(isinstance(f, InstanceGoneError) for f in failures) and any(
                        isinstance(f, ChangesDroppedError) for f in failures
                    ):
                        break
                    await asyncio.sleep(0.05)
                views = [repr(watcher), str(watcher), repr(watcher.changes())]
            models += [*changes, *watcher.snapshot().values()]
            views += [repr(client), str(client), repr(client.stats)]

    if kind == "renewed":
        # The first token was used, turned away with 10008, and replaced by the second.
        assert token.calls == 2 and client.stats.token_refreshes == 2
    kinds = {type(f).__name__ for f in failures}
    # The run did produce the errors whose texts and attributes are searched.
    assert {"TransportError", "ResponseError", "InvalidParameterError"} <= kinds, kinds
    assert {"InvalidInstanceIdError", "WaitTimeoutError"} <= kinds, kinds
    assert any(isinstance(f, InstanceGoneError) for f in failures)
    assert any(isinstance(f, ChangesDroppedError) for f in failures)
    assert any(f.__cause__ is not None for f in failures)  # chains were there to walk
    ports = [p for m in models if isinstance(m, InstanceDetail) for p in m.container_port_info_list]
    mounts = [p for m in models if isinstance(m, InstanceDetail) for p in m.mount_info_list]
    assert changes and ports and mounts

    assert [v for v in views if shows(v, tokens)] == []
    for model in [*models, *ports, *mounts]:
        assert leaks(model, tokens) == [], model
    for failure in failures:
        assert leaks(failure, tokens) == [], failure
    texts = list(log_texts(caplog.records))
    assert any("GET /ai/openapi/v2/instance-service/" in t for t in texts)  # DEBUG was on
    assert [t for t in texts if shows(t, tokens)] == []
    assert not shows(caplog.text, tokens)


# -- the command line --------------------------------------------------------------------------


async def run_cli(*args: str, token_file: Path) -> tuple[int, str, str]:
    """``python -m aiocontainer --token-file PATH ARGS``; exit code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOCONTAINER_")}
    env["COLUMNS"] = "200"
    command = (sys.executable, "-m", "aiocontainer", "--token-file", str(token_file), *args)
    return await run_process(*command, env=env, timeout=60)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(FIXED_TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("verbosity", ["-v", "-vv"])
async def test_cli_get_and_watch_with_faults_never_print_the_token(
    verbosity: str, token_file: Path
) -> None:
    async with Simulator(instances=8, seed=3, frozen=True, token=FIXED_TOKEN) as sim:
        ids = sim.instance_ids
        # Every kind but the hang; at most two per id, so the CLI's default backoff stays short.
        scripts = [
            ["http_503", "reset"],
            ["http_429:0", "code_10001"],
            ["truncated"],
            ["html"],
            ["http_500", "code_10012"],
            ["http_502", "slow"],
        ]
        for instance_id, faults in zip(ids, scripts, strict=False):
            sim.script_faults(instance_id, faults)
        base = ("--base-url", sim.base_url, "--timeout", "2")
        get = await run_cli(*base, verbosity, "get", *ids, UNKNOWN_ID, token_file=token_file)

        for instance_id, faults in zip(ids, scripts, strict=False):
            sim.script_faults(instance_id, faults)
            sim.set_status(instance_id, "Completed")
        watch = await run_cli(
            *base,
            verbosity,
            "watch",
            "--interval",
            "0.1",
            "--until-terminal",
            *ids[:6],
            token_file=token_file,
        )
    code, out, err = get
    assert code == 4  # the unknown id, the truncated body, the HTML page
    assert ids[4] in out and ids[5] in out and "retrying instance" in err and "10004" in err
    assert "(HTTP 200)" in err  # a body snippet made it to stderr
    code, out, err = watch
    assert code == 0, err
    assert all(f"{i}  · → Completed" in out for i in ids[:6]), out
    assert "retrying instance" in err
    if verbosity == "-vv":
        assert "GET /ai/openapi/v2/instance-service/" in get[2] + watch[2]
    for _code, out, err in (get, watch):
        assert not shows(out, [FIXED_TOKEN]) and not shows(err, [FIXED_TOKEN])


async def test_cli_blanks_a_token_the_server_echoes(token_file: Path) -> None:
    echo = FIXED_TOKEN.encode()
    server = ScriptedServer()
    await server.start()
    try:
        server.script("a", Reply(status=502, body=b"<p>bad gateway for token " + echo + b"</p>"))
        server.script("b", Reply(status=200, body=b"login expired: " + echo))
        server.script(
            "c", json_reply({"code": "10001", "msg": "internal", "data": None}, status=503)
        )
        code, out, err = await run_cli(
            "--base-url", server.base_url, "-vv", "get", "a", "b", "c", token_file=token_file
        )
    finally:
        await server.close()
    assert server.seen and all(s.token == FIXED_TOKEN for s in server.seen)
    assert code == 4
    assert "bad gateway for token ***" in err and "login expired: ***" in err
    assert not shows(out, [FIXED_TOKEN]) and not shows(err, [FIXED_TOKEN])


# -- redirects ---------------------------------------------------------------------------------


@pytest.fixture
async def two_origins() -> Any:
    """An origin that redirects every request to a second server (same host, other port)."""
    origin, other = ScriptedServer(), ScriptedServer()
    await origin.start()
    await other.start()
    try:
        yield origin, other
    finally:
        await origin.close()
        await other.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_watcher_never_follows_a_redirect_to_another_origin(
    two_origins: Any, status: int
) -> None:
    origin, other = two_origins
    target = other.base_url + "/ai/openapi/v2/instance-service/abc/detail"
    origin.default = lambda _id: Reply(status=status, headers={"Location": target})
    errors: list[Exception] = []
    async with ContainerClient(origin.base_url, token=FIXED_TOKEN, backoff_factor=0) as client:
        watcher = InstanceWatcher(client, ["abc"], interval=0.05, max_backoff=1, stale_after=60)
        watcher.on_error(lambda _id, exc: errors.append(exc))
        async with watcher:
            await asyncio.sleep(0.3)  # about six polls
        assert watcher.snapshot() == {}
    assert other.count() == 0
    assert origin.count() >= 3 and len(errors) == origin.count()
    assert all(isinstance(e, ResponseError) and e.http_status == status for e in errors)
    assert all("redirect not followed" in str(e) for e in errors)


async def test_the_cli_never_follows_a_redirect_to_another_origin(
    two_origins: Any, token_file: Path
) -> None:
    origin, other = two_origins
    target = other.base_url + "/ai/openapi/v2/instance-service/abc/detail"
    origin.default = lambda _id: Reply(status=302, headers={"Location": target})
    code, out, err = await run_cli(
        "--base-url", origin.base_url, "-vv", "get", "abc", token_file=token_file
    )
    assert code == 4
    assert "redirect not followed" in err
    assert origin.count() == 1 and other.count() == 0
    assert not shows(out + err, [FIXED_TOKEN])
