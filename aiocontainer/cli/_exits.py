"""Exit codes of the command line and the one exception that means "exit 2 with a hint"."""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_FAILED_STATUS = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_API = 4
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED_STATUS: "a wait reached a --fail-on status",
    EXIT_USAGE: "usage or configuration error, including an invalid instance id",
    EXIT_TIMEOUT: "a wait timed out",
    EXIT_API: "API or transport error",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); stopped cleanly, any --checkpoint saved",
}


def exit_codes_epilog(codes: Iterable[int] = EXIT_CODES) -> str:
    """The ``exit codes:`` section of a ``--help`` text, for the codes that apply."""
    return "exit codes:\n" + "\n".join(f"  {code:<4} {EXIT_CODES[code]}" for code in codes)


class UsageError(Exception):
    """A problem with how the command was called: exit 2 with a one-line hint."""
