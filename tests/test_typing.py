"""The package as a user's type checker sees it: found, typed, and the types exact.

The user program below is type-checked from a directory outside the repository, so the checkers
find aiocontainer only as it is installed in this environment (the Makefile's editable install is
in compat mode for this reason: an import hook would hide it from them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

USER_PROGRAM = '''
"""A small program of a user of aiocontainer; it is type-checked, never run."""

from __future__ import annotations

import asyncio
import contextlib

from typing_extensions import assert_type

from aiocontainer import (
    AiocontainerError,
    ApiError,
    ChangesDroppedError,
    ContainerClient,
    InstanceDetail,
    InstanceGoneError,
    InstanceWatcher,
    StatusChange,
    WaitError,
)


async def main() -> None:
    async with ContainerClient("http://127.0.0.1:1", token="t") as client:
        detail = await client.get_instance("4c1f43ddb030483e89b55413bee6c004")
        assert_type(detail, InstanceDetail)
        assert_type(detail.status, str)
        assert_type(detail.ram_size, int | None)

        results = await client.get_instances(["a", "b"])
        for instance_id, result in results.items():
            assert_type(instance_id, str)
            if isinstance(result, InstanceDetail):
                print(result.status)
            else:
                assert_type(result, AiocontainerError)

        # The README's way to leave a bulk iteration early: aclosing needs an AsyncGenerator.
        async with contextlib.aclosing(client.iter_instances(["a", "b"])) as stream:
            async for instance_id, result in stream:
                assert_type(instance_id, str)

        async with InstanceWatcher(client, ["a"], interval=5) as watcher:
            try:
                final = await watcher.wait_for("a", "Running", timeout=60)
                assert_type(final, InstanceDetail)
            except WaitError as exc:
                assert_type(exc.last_detail, InstanceDetail | None)
                assert_type(exc.history, tuple[str, ...])
                assert_type(exc.instance_id, str | None)
            except ChangesDroppedError as exc:
                assert_type(exc.change, StatusChange)
                assert_type(exc.limit, int)
            except InstanceGoneError as exc:
                assert_type(exc.attempts, int)
            except ApiError as exc:
                assert_type(exc.code, str | None)


asyncio.run(main())
'''


def venv_tool(name: str) -> str:
    """The tool installed next to this interpreter (the make venv), else skip with the reason."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable} (install the dev tools)")
    return str(path)


def run_checker(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # pyright asks the first `python` on PATH where the installed packages are.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONPATH", None)  # the repository must not be visible through the environment
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module: the second run re-checks only the user program, not the
    package it imports (which is the same in both runs)."""
    return tmp_path_factory.mktemp("mypy") / ".mypy_cache"


@pytest.fixture
def user_program(tmp_path: Path) -> Path:
    program = tmp_path / "user_program.py"
    program.write_text(USER_PROGRAM, encoding="utf-8")
    return program


def test_a_user_program_passes_mypy_strict(user_program: Path, mypy_cache: Path) -> None:
    mypy = venv_tool("mypy")
    done = run_checker(
        [mypy, "--strict", "--cache-dir", str(mypy_cache), user_program.name], user_program.parent
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout


def test_a_user_program_passes_pyright(user_program: Path) -> None:
    pyright = venv_tool("pyright")
    done = run_checker([pyright, "--outputjson", user_program.name], user_program.parent)
    report = json.loads(done.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert errors == [], errors
    assert report["summary"]["filesAnalyzed"] == 1


def test_a_wrong_type_in_the_user_program_is_caught(user_program: Path, mypy_cache: Path) -> None:
    """The check above can fail: an Any (the old ``last_detail``) would not satisfy assert_type."""
    mypy = venv_tool("mypy")
    broken = USER_PROGRAM.replace(
        "assert_type(exc.last_detail, InstanceDetail | None)",
        "assert_type(exc.last_detail, StatusChange)",
    )
    assert broken != USER_PROGRAM
    user_program.write_text(broken, encoding="utf-8")
    done = run_checker(
        [mypy, "--strict", "--cache-dir", str(mypy_cache), user_program.name], user_program.parent
    )
    assert done.returncode == 1
    assert "assert_type" in done.stdout or "Expression is of type" in done.stdout


def test_errors_needs_only_the_standard_library_at_run_time() -> None:
    """errors.py may name the models in annotations, but importing it loads no other package."""
    import aiocontainer

    errors_py = Path(aiocontainer.__file__).parent / "errors.py"
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('standalone_errors', {str(errors_py)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "before = set(sys.modules)\n"
        "spec.loader.exec_module(module)\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
