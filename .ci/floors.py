"""Print pip constraints that pin every declared dependency to its lowest allowed version.

Reads pyproject.toml: the build requirements, the runtime dependencies, every extra and the
``dev`` dependency group. ``name>=X`` becomes ``name==X``; a requirement without a lower bound is
left free. ``make test-floor`` installs with these constraints and runs the test suite, so the
floors declared are floors that were tested.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip carries a copy of the same parser
    from pip._vendor import tomli as tomllib

_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def requirements(pyproject: dict) -> list[str]:
    project = pyproject["project"]
    found = list(pyproject["build-system"]["requires"]) + list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        found.extend(extra)
    for group in pyproject.get("dependency-groups", {}).values():
        found.extend(item for item in group if isinstance(item, str))
    return found


def floors(pyproject: dict) -> dict[str, str]:
    pins: dict[str, str] = {}
    for requirement in requirements(pyproject):
        match = _FLOOR.match(requirement)
        if match is None:
            continue
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        if name in pins and pins[name] != match[2]:
            raise SystemExit(f"{name} has two different floors: {pins[name]} and {match[2]}")
        pins[name] = match[2]
    return pins


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    with path.open("rb") as file:
        pins = floors(tomllib.load(file))
    for name, version in sorted(pins.items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
