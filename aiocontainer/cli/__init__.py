"""The ``aiocontainer`` command line: get, watch, wait, simulate, demo.

Rule 1: it uses the public API only; whatever it can do, a program can do with the library.
Rule 2: stdout carries results only (tables, JSON, change lines); progress, failures and logs go to
        stderr, so ``aiocontainer get ... --output json | jq`` always sees clean JSON.
Rule 3: the token is never printed, not even with ``-v``.
Rule 4: every outcome has its exit code (see ``EXIT_CODES``); a usage problem is a one-line hint,
        never a traceback.

Layout: ``_parser`` (global options, the list of command modules), one module per command or
group (``get``, ``watch``, ``simulate``, ``demo``), ``_output`` (everything printed),
``_config`` (base URL, token, ids, logging), ``_options`` (argument types), ``_run`` (signals).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiocontainer.errors import AiocontainerError

from ._config import base_url_of, resolve_token, setup_logging
from ._exits import EXIT_API, EXIT_CODES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from ._options import CONNECTION_OPTIONS
from ._output import StdoutClosed, error_line, silence_stdout, visible
from ._parser import Command, build_parser

__all__ = ["EXIT_CODES", "main"]


def _require_rich() -> None:
    try:
        import rich  # noqa: F401
    except ImportError:
        raise UsageError(
            "this command needs the 'cli' extra: pip install 'aiocontainer[cli]' "
            "('aiocontainer simulate' works without it)"
        ) from None


def _refuse_connection_options(args: argparse.Namespace, command: Command) -> None:
    """A command that runs its own simulator: a URL or token given before it would be ignored."""
    given = [name for name in CONNECTION_OPTIONS if hasattr(args, name)]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(
            f"{command.name} runs against its own embedded simulator; {options} cannot apply to it"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if command.wants_rich(args):
            _require_rich()
        secret = None
        if command.connection:
            from .regions import uses_credentials

            secret = None if uses_credentials(args) else resolve_token(args)
        else:
            _refuse_connection_options(args, command)
        setup_logging(getattr(args, "verbose", 0) or 0, secret)
        return command.run(args)
    except (StdoutClosed, BrokenPipeError):
        # The reader went away (| head): what it wanted it has; end quietly.
        silence_stdout()
        return EXIT_OK
    except UsageError as exc:
        print(f"aiocontainer: {visible(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except AiocontainerError as exc:
        print(f"aiocontainer: {error_line(None, exc, base_url=base_url_of(args))}", file=sys.stderr)
        return EXIT_API
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
