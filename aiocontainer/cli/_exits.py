"""Exit codes of the command line and the one exception that means "exit 2 with a hint"."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def exit_codes_epilog(codes: Iterable[int] | Mapping[int, str] = EXIT_CODES) -> str:
    """The ``exit codes:`` section of a ``--help`` text: the codes that apply, with their
    meaning (``codes`` as a mapping says what a code means for that command)."""
    meanings = codes if isinstance(codes, Mapping) else {code: EXIT_CODES[code] for code in codes}
    return "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in meanings.items())


class UsageError(Exception):
    """A problem with how the command was called or configured: a one-line hint and exit 2.

    ``exit_code`` says otherwise for a configuration the platform refused (a rejected token, an
    unreachable base URL: exit 4), still with a one-line hint and no traceback.
    """

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
