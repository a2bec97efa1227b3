"""The ``aiocontainer`` argument parser: global options and the list of command modules.

Each command module has a ``register(commands)`` function that adds its sub-parser(s) through
:meth:`Commands.add`, naming the function that runs it. Adding a command is one line in
``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

import attrs

from aiocontainer import __version__
from aiocontainer.cli import completion, demo, get, listing, regions, simulate, watch
from aiocontainer.cli._exits import EXIT_CODES, EXIT_USAGE, exit_codes_epilog
from aiocontainer.cli._options import connection_options, local_options

# One line per command module, in the order of the help text.
COMMAND_MODULES: tuple[Any, ...] = (
    get,
    listing,
    watch,
    simulate,
    demo,
    regions,
    completion,
)


@attrs.frozen
class Command:
    """How ``main`` runs a parsed command."""

    name: str
    run: Callable[[argparse.Namespace], int]
    connection: bool = True  # talks to the API: base URL and token are resolved first
    # Prints through rich (tables, colours): True, False, or a function of the parsed options.
    needs_rich: bool | Callable[[argparse.Namespace], bool] = True

    def wants_rich(self, args: argparse.Namespace) -> bool:
        """Whether this run prints something only rich can print."""
        return self.needs_rich(args) if callable(self.needs_rich) else self.needs_rich


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and each option's default after its help, when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is False
            or default == argparse.SUPPRESS
            or "default" in text
            or not action.option_strings
        ):
            return text
        if isinstance(default, (tuple, list)):
            default = ",".join(str(item) for item in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse whose errors are a one-line hint and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")


class Commands:
    """The sub-parsers of ``aiocontainer``; command modules add themselves here."""

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers

    def add(
        self,
        name: str,
        help_text: str,
        description: str,
        *,
        run: Callable[[argparse.Namespace], int],
        connection: bool = True,
        request_timeout: bool = True,
        needs_rich: bool | Callable[[argparse.Namespace], bool] = True,
        exit_codes: Iterable[int] | Mapping[int, str] = EXIT_CODES,
    ) -> argparse.ArgumentParser:
        """Add a command; ``connection=False`` for one that brings its own simulator."""
        parents = [connection_options(request_timeout=request_timeout)] if connection else []
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name,
            help=help_text,
            description=textwrap.fill(description, 78),
            epilog=exit_codes_epilog(exit_codes),
            formatter_class=HelpFormatter,
            parents=parents or [local_options()],
        )
        parser.set_defaults(
            command=Command(name, run, connection=connection, needs_rich=needs_rich)
        )
        return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``aiocontainer`` command."""
    parser = Parser(
        prog="aiocontainer",
        description="Look up and watch SCNet container instances.",
        epilog=f"{regions.PRECEDENCE_HELP}\n\n{exit_codes_epilog()}",
        formatter_class=HelpFormatter,
        parents=[connection_options()],
    )
    parser.add_argument("--version", action="version", version=f"aiocontainer {__version__}")
    subparsers = parser.add_subparsers(metavar="COMMAND", parser_class=Parser)
    commands = Commands(subparsers)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser
