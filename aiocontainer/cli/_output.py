r"""Everything the command line prints: tables, JSON, JSON lines, change lines, error lines.

Every command prints through this module, so these rules hold everywhere:

- stdout carries results only; progress, failures and logs go to stderr;
- text that came from the server (names, statuses, error messages) is never read as rich markup
  (table cells are ``Text`` objects, error lines are printed with markup off), and its control
  characters are shown visibly: ``\x1b`` instead of an escape sequence that could retitle the
  window or clear the screen, ``\u202e`` instead of a reordering of the line;
- JSON output escapes the same characters as ``\uXXXX`` (the value read back is unchanged) and
  prints values nested any depth;
- a reader that goes away (``| head``) ends the command quietly: see :class:`StdoutClosed`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from aiocontainer import (
    ApiError,
    HTTPStatusError,
    InstanceDetail,
    InstanceGoneError,
    InstanceStatus,
    ResponseError,
    StatusChange,
    TransportError,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

STATUS_STYLES = {
    InstanceStatus.WAITING: "yellow",
    InstanceStatus.DEPLOYING: "cyan",
    InstanceStatus.RUNNING: "green",
    InstanceStatus.COMPLETED: "blue",
    InstanceStatus.FAILED: "bold red",
    InstanceStatus.TERMINATED: "magenta",
}

PIPE_WIDTH = 1000


class StdoutClosed(Exception):
    """The reader of stdout went away (``aiocontainer watch ... | head``): stop quietly."""


# C0 and C1 controls and DEL, then the characters that reorder or break a line without showing
# themselves: bidirectional marks, embeddings, overrides and isolates, and the Unicode line and
# paragraph separators.
_SUSPECTS = [
    *map(chr, range(0x00, 0x20)),
    *map(chr, range(0x7F, 0xA0)),
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x2028, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
]
_VISIBLE = {
    ord(c): (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in _SUSPECTS
}
_JSON_ESCAPED = {ord(c): f"\\u{ord(c):04x}" for c in _SUSPECTS if ord(c) >= 0x7F}


def visible(text: str) -> str:
    """``text`` with every control and bidi-formatting character written out as an escape."""
    return text.translate(_VISIBLE)


def cell(text: str | None, style: str = "") -> Text:
    """A table cell from server text: never read as markup, control characters visible."""
    from rich.text import Text

    # A styled span, not a styled Text: the colour stops at the word, not at the column's edge.
    return Text.assemble((visible(text) if text else "-", style))


def emit(line: str, stream: TextIO | None = None) -> None:
    """Write one line of results to stdout at once; raise StdoutClosed if nobody reads any more."""
    out = sys.stdout if stream is None else stream
    try:
        out.write(line + "\n")
        out.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush cannot fail on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def consoles() -> tuple[Console, Console]:
    """Rich consoles for stdout and stderr."""
    return console(stderr=False), console(stderr=True)


def console(*, stderr: bool) -> Console:
    """A rich console; piped output is not folded at 80 columns."""
    from rich.console import Console

    made = Console(stderr=stderr, highlight=False)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        # A table row or an error stays on one line, so grep and friends see it whole.
        made = Console(stderr=stderr, highlight=False, width=PIPE_WIDTH)
    return made


def status_cell(status: str) -> Text:
    """A status in its colour, as a table cell."""
    return cell(status, STATUS_STYLES.get(status, ""))


def when(value: datetime | None) -> str:
    """A timestamp as the tables show it."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def dumps(obj: Any) -> str:
    """One JSON document on one line: non-ASCII kept readable, control characters escaped.

    A value nested deeper than the standard encoder can recurse is written by an explicit stack.
    """
    try:
        text = json.dumps(obj, ensure_ascii=False)
    except RecursionError:
        text = "".join(_deep_json(obj))
    return text.translate(_JSON_ESCAPED)


def _deep_json(obj: Any) -> Iterator[str]:
    """The same text as ``json.dumps(obj, ensure_ascii=False)``, at any depth."""
    stack: list[tuple[bool, Any]] = [(False, obj)]  # (is literal text, item)
    while stack:
        literal, item = stack.pop()
        if literal:
            yield item
        elif isinstance(item, dict):
            yield "{"
            stack.append((True, "}"))
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, value = entries[index]
                stack.append((False, value))
                stack.append((True, json.dumps(str(key), ensure_ascii=False) + ": "))
                if index:
                    stack.append((True, ", "))
        elif isinstance(item, (list, tuple)):
            yield "["
            stack.append((True, "]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append((False, item[index]))
                if index:
                    stack.append((True, ", "))
        else:
            yield json.dumps(item, ensure_ascii=False)


def change_record(change: StatusChange) -> dict[str, Any]:
    """The JSON form of a change printed by ``watch --output jsonl``."""
    return {
        "instance_id": change.instance_id,
        "previous": change.previous,
        "current": change.current,
        "observed_at": change.observed_at.isoformat(),
        "seq": change.seq,
        "skipped": list(change.skipped),
    }


def change_line(change: StatusChange) -> str:
    """The text form: ``time  id  Waiting → Running``."""
    stamp = change.observed_at.astimezone().strftime("%H:%M:%S")
    previous = visible(change.previous) if change.previous else "·"
    skipped = f"  (passed {visible(', '.join(change.skipped))})" if change.skipped else ""
    current = visible(change.current)
    return f"{stamp}  {visible(change.instance_id)}  {previous} → {current}{skipped}"


# What the platform's codes mean, in English: its own ``msg`` is short and in Chinese.
CODE_MEANINGS = {
    "10001": "internal error on the platform",
    "10003": "a required parameter is missing",
    "10004": "no such instance (or not yours)",
    "10007": "the account is frozen",
    "10008": "permission denied: the token is wrong, expired, or not for this API",
    "10009": "access to this API is denied",
    "10010": "file check failed",
    "10011": "file too large",
    "10012": "the connection was interrupted on the platform",
}


def describe(exc: BaseException, *, base_url: str | None = None) -> str:
    """What went wrong, for a person: ``ErrorType: what it means (the details)``."""
    name = type(exc).__name__
    if isinstance(exc, InstanceGoneError):
        return f"{name}: no such instance (or not yours): {exc}"
    if isinstance(exc, ApiError) and exc.code is not None:
        meaning = CODE_MEANINGS.get(exc.code, "a code the API documentation does not list")
        said = f", the platform said {exc.msg!r}" if exc.msg else ""
        return f"{name}: {meaning} (code {exc.code}{said})"
    if isinstance(exc, TransportError) and base_url:
        return f"{name}: cannot reach {base_url} ({_transport_reason(exc)})"
    if (
        isinstance(exc, ResponseError)
        and not isinstance(exc, HTTPStatusError)
        and ("JSON" in str(exc) or "empty body" in str(exc))
    ):
        return f"{name}: truncated or invalid JSON in the answer: {exc}"
    return f"{name}: {exc}"


def _transport_reason(exc: TransportError) -> str:
    text = str(exc).lower()
    for needle, reason in (
        ("refused", "connection refused"),
        ("connect call failed", "connection refused"),
        ("no complete answer", "no answer in time"),
        ("timeout", "no answer in time"),
        ("name or service", "unknown host"),
        ("nodename", "unknown host"),
        ("getaddrinfo", "unknown host"),
        ("certificate", "TLS handshake failed"),
        ("sslerror", "TLS handshake failed"),
        ("[ssl", "TLS handshake failed"),
        ("reset", "connection reset"),
        ("disconnect", "the server closed the connection"),
    ):
        if needle in text:
            return reason
    return "connection failed"


def error_line(instance_id: str | None, exc: BaseException, *, base_url: str | None = None) -> str:
    """One failure as one line: ``id: ErrorType: meaning (details)``, control characters visible."""
    where = f"{instance_id}: " if instance_id else ""
    return visible(where + describe(exc, base_url=base_url))


def print_error(
    instance_id: str | None, exc: BaseException, *, base_url: str | None = None
) -> None:
    """Print a failure on stderr as plain text (no rich needed, nothing read as markup)."""
    print_err(error_line(instance_id, exc, base_url=base_url))


def print_err(line: str) -> None:
    """One line on stderr, at once."""
    print(line, file=sys.stderr, flush=True)


# get's columns, most wanted first; ID and STATUS never wrap, NAME shrinks with an ellipsis, and
# the others are dropped from the end of this list until the table fits the terminal.
_COLUMNS: tuple[tuple[str, Callable[[InstanceDetail], Text]], ...] = (
    ("ID", lambda d: cell(d.id)),
    ("STATUS", lambda d: status_cell(d.status)),
    ("NAME", lambda d: cell(d.instance_service_name)),
    ("CREATED", lambda d: cell(when(d.create_time))),
    ("DURATION", lambda d: cell(d.duration)),
    ("TYPE", lambda d: cell(d.task_type)),
    ("ACCEL", lambda d: cell(d.accelerator_type)),
    ("RESOURCES", lambda d: cell(d.resource_spec)),
)
_ORDER = ("ID", "NAME", "STATUS", "TYPE", "ACCEL", "RESOURCES", "CREATED", "DURATION")
_NAME_MIN = 12


def detail_table(
    details: Iterable[InstanceDetail], *, header: bool = True, width: int = PIPE_WIDTH
) -> Table:
    """The table ``get`` prints, one row per instance, fitted to ``width`` columns."""
    from rich.table import Table

    rows = list(details)
    cells = {title: [make(d) for d in rows] for title, make in _COLUMNS}
    natural = {
        title: max([len(title), *(column.cell_len for column in cells[title])]) for title in cells
    }
    kept = [title for title, _ in _COLUMNS]
    # Each column takes its text and one space either side.
    while (
        len(kept) > 3 and sum((_NAME_MIN if t == "NAME" else natural[t]) + 2 for t in kept) > width
    ):
        kept.pop()
    table = Table(box=None, header_style="bold", show_header=header)
    shown = [title for title in _ORDER if title in kept]
    for title in shown:
        if title == "NAME":
            table.add_column(title, no_wrap=True, overflow="ellipsis", min_width=_NAME_MIN)
        else:
            table.add_column(title, no_wrap=True, min_width=natural[title])
    for index in range(len(rows)):
        table.add_row(*(cells[title][index] for title in shown))
    return table


def summary_table(title: str, details: Iterable[tuple[str, InstanceDetail]]) -> Table:
    """A short table of final statuses: id, name, status, type, duration."""
    from rich.table import Table

    table = Table(title=title, box=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=32)
    for column in ("NAME", "STATUS", "TYPE", "DURATION"):
        table.add_column(column)
    for instance_id, detail in details:
        table.add_row(
            cell(instance_id),
            cell(detail.instance_service_name),
            status_cell(detail.status),
            cell(detail.task_type),
            cell(detail.duration),
        )
    return table
