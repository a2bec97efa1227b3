"""``aiocontainer completion``: the generated script, run by bash the way bash runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from aiocontainer.cli._parser import build_parser
from aiocontainer.cli.completion import script

bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def complete(shell_script: str, *words: str) -> list[str]:
    """What bash offers after ``aiocontainer WORDS`` (the last word is the one being typed)."""
    quoted = " ".join(f"'{word}'" for word in ("aiocontainer", *words))
    program = (
        f"{shell_script}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _aiocontainer\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


@bash
@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (("--b",), {"--base-url"}),
        (("wa",), {"watch", "wait"}),
        (("get", "ID", "--ke"), {"--keyed"}),
        (("get", "ID", "-o", ""), {"table", "json", "jsonl"}),
        (("watch", "ID", "--output", ""), {"text", "jsonl"}),
        (("-v", "wait", "ID", "--allow"), {"--allow-unknown-status"}),
        (("simulate", "--po"), {"--port"}),
    ],
)
def test_bash_completes_commands_options_and_choices(
    words: tuple[str, ...], offered: set[str]
) -> None:
    assert set(complete(script(build_parser(), "bash"), *words)) == offered


@bash
def test_the_command_prints_a_script_bash_accepts() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "aiocontainer", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "complete -o default -F _aiocontainer aiocontainer" in printed
    assert set(complete(printed, "de")) == {"demo"}


@bash
def test_every_command_of_the_parser_is_offered_first() -> None:
    parser = build_parser()
    offered = set(complete(script(parser, "bash"), ""))
    assert {"get", "watch", "wait", "simulate", "demo", "completion"} <= offered
    assert {"--base-url", "--token-file", "--verbose"} <= offered


def test_the_zsh_script_loads_bash_completion_first() -> None:
    zsh = script(build_parser(), "zsh")
    assert zsh.splitlines()[1] == "autoload -U +X bashcompinit && bashcompinit"
    assert zsh.endswith("complete -o default -F _aiocontainer aiocontainer")
