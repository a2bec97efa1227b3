"""The package's shape: curated exports, pure modules, one boundary to aiohttp."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

import aiocontainer
from aiocontainer import errors

PACKAGE = Path(aiocontainer.__file__).parent
PURE = [
    "_protocol.py",
    "_convert.py",
    "_diff.py",
    "models.py",
    "errors.py",
    "_json.py",
    "_secret.py",
]
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


# -- the layout's limits -------------------------------------------------------------------------

MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 350


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_time_edges(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports when it is imported (not inside functions).

    ``from aiocontainer import _json`` names the submodule, not the package's ``__init__``.
    """
    edges: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            edges.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            edges.update(subs or {node.module})
    edges.discard(name)
    return edges


def test_no_module_over_600_lines_and_no_class_over_350() -> None:
    too_long = []
    for name, path in package_modules().items():
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(name)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                if node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                    too_long.append(f"{name}.{node.name}")
    assert too_long == []


def test_no_import_cycle_inside_the_package() -> None:
    modules = package_modules()
    graph = {name: import_time_edges(name, path, modules) for name, path in modules.items()}
    # A depth-first walk that keeps the path it is on: meeting a module on it again is a cycle.
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
