"""The package's shape: curated exports, pure modules, one boundary to aiohttp."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aiocontainer
from aiocontainer import errors

PACKAGE = Path(aiocontainer.__file__).parent
PURE = ["_protocol.py", "_convert.py", "_diff.py", "models.py", "errors.py", "_json.py"]
PURE += ["_sim_world.py", "_sim_lifecycle.py", "_sim_faults.py", "_sim_auth.py"]
PURE += ["_schedule.py", "_lifecycle.py", "_checkpoint.py"]
PURE += ["_options.py", "_version.py", "_paging.py"]
PURE += ["_signing.py", "_regions.py", "_credentials.py"]
PURE += ["_health.py", "_telemetry.py"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_all_is_sorted_and_exported() -> None:
    assert aiocontainer.__all__ == sorted(aiocontainer.__all__)
    for name in aiocontainer.__all__:
        assert hasattr(aiocontainer, name), name


def test_every_error_is_exported_and_derives_from_the_base() -> None:
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, errors.AiocontainerError)
            assert name in aiocontainer.__all__


def test_design_names_are_importable() -> None:
    from aiocontainer import (  # noqa: F401
        ContainerClient,
        InstanceDetail,
        InstanceStatus,
        InstanceWatcher,
        StatusChange,
    )


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_neither_aiohttp_nor_asyncio(module: str) -> None:
    path = PACKAGE / module
    if not path.exists():
        pytest.fail(f"{module} is missing")
    roots = {name.split(".")[0] for name in imported_modules(path)}
    assert "aiohttp" not in roots and "asyncio" not in roots


def test_only_client_and_simulator_import_aiohttp() -> None:
    users = {
        path.name
        for path in PACKAGE.glob("*.py")
        if any(name.split(".")[0] == "aiohttp" for name in imported_modules(path))
    }
    assert users <= {"client.py", "_transport.py", "simulator.py", "_sim_http.py", "auth.py"}
    assert "client.py" in users


def test_simulator_is_an_independent_oracle() -> None:
    allowed = {"aiocontainer.cli.simulate"}  # main(), the command line
    for path in [PACKAGE / "simulator.py", *PACKAGE.glob("_sim_*.py")]:
        own = {n for n in imported_modules(path) if n.startswith("aiocontainer")} - allowed
        assert all(n.startswith("aiocontainer._sim_") for n in own), (path.name, own)


def test_errors_uses_only_the_standard_library() -> None:
    import sys

    roots = {n.split(".")[0] for n in imported_modules(PACKAGE / "errors.py")}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}
