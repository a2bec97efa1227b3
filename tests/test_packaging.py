"""What gets published: metadata, the wheel's files, and an sdist that carries the test tree."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

pytest.importorskip("setuptools", minversion="77", reason="building needs setuptools >= 77")


def build(kind: str, out: Path) -> Path:
    """Build a wheel or an sdist of this tree with the installed setuptools, as pip would."""
    code = (
        "import sys\n"
        "from setuptools import build_meta\n"
        f"print(build_meta.build_{kind}(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("wheel", tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_metadata_declares_the_license_versions_and_status(metadata: Message) -> None:
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    classifiers = metadata.get_all("Classifier")
    tested = ["3.10", "3.11", "3.12", "3.13"]
    assert [c.rsplit(" ", 1)[1] for c in classifiers if re.search(r":: 3\.\d+$", c)] == tested
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata.get_all("Project-URL")


def test_metadata_publishes_true_floors_and_no_dev_extra(metadata: Message) -> None:
    requires = metadata.get_all("Requires-Dist")
    assert "aiohttp>=3.14.2" in requires
    assert "cattrs>=24.1" in requires
    assert sorted(metadata.get_all("Provides-Extra")) == ["cli", "otel", "speedups"]
    assert not any(tool in r for r in requires for tool in ("pytest", "mypy", "ruff"))


def test_the_wheel_holds_every_module_the_license_and_the_type_marker(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "aiocontainer").rglob("*.py")}
    assert modules <= names, modules - names
    assert "aiocontainer/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "examples/")) for n in names)


def tracked(*paths: str) -> set[str]:
    done = subprocess.run(
        ["git", "ls-files", "--", *paths], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("not a git checkout (an unpacked sdist, say): nothing to compare with")
    return set(done.stdout.split())


def test_the_sdist_carries_the_whole_test_tree_and_the_examples(tmp_path: Path) -> None:
    expected = tracked("tests", "examples", "aiocontainer", "LICENSE", "README.md")
    sdist = build("sdist", tmp_path)
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert expected <= names, sorted(expected - names)
    assert "tests/conftest.py" in names and "tests/samples/seed_detail.json" in names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def test_the_version_is_read_without_importing_the_package() -> None:
    """The backend must find the version as a literal: importing the package needs aiohttp."""
    import ast

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = \{ attr = "([\w.]+)" \}', pyproject, re.MULTILINE)
    assert match is not None
    module, _, name = match[1].rpartition(".")
    source = ROOT / (module.replace(".", "/") + ".py")
    literals = {
        target.id: node.value.value
        for node in ast.parse(source.read_text(encoding="utf-8")).body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    import aiocontainer

    assert literals[name] == aiocontainer.__version__
