"""Everything the command line prints: tables, JSON, JSON lines, change lines, error lines.

Every command prints through this module, so one rule holds everywhere: stdout carries results
only; progress, failures and logs go to stderr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiocontainer import InstanceDetail, InstanceStatus, StatusChange

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

STATUS_STYLES = {
    InstanceStatus.WAITING: "yellow",
    InstanceStatus.DEPLOYING: "cyan",
    InstanceStatus.RUNNING: "green",
    InstanceStatus.COMPLETED: "blue",
    InstanceStatus.FAILED: "bold red",
    InstanceStatus.TERMINATED: "magenta",
}

PIPE_WIDTH = 1000


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


def styled(status: str) -> str:
    """A status as rich markup in its colour."""
    style = STATUS_STYLES.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def when(value: datetime | None) -> str:
    """A timestamp as the tables show it."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def dumps(obj: Any) -> str:
    """One JSON document on one line, non-ASCII kept readable."""
    return json.dumps(obj, ensure_ascii=False)


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
    previous = change.previous or "·"
    skipped = f"  (passed {', '.join(change.skipped)})" if change.skipped else ""
    return f"{stamp}  {change.instance_id}  {previous} → {change.current}{skipped}"


def error_line(instance_id: str | None, exc: BaseException) -> str:
    """One failure as one line: ``id: ErrorType: message``."""
    where = f"{instance_id}: " if instance_id else ""
    return f"{where}{type(exc).__name__}: {exc}"


def print_error(err: Console, instance_id: str | None, exc: BaseException) -> None:
    """Print a failure on the stderr console, never interpreted as markup."""
    err.print(error_line(instance_id, exc), markup=False, highlight=False)


def detail_table(details: Iterable[InstanceDetail]) -> Table:
    """The table ``get`` prints: one row per instance."""
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=32)
    for column in ("NAME", "STATUS", "TYPE", "ACCEL", "RESOURCES", "CREATED", "DURATION"):
        table.add_column(column, overflow="fold")
    for d in details:
        table.add_row(
            d.id,
            d.instance_service_name or "-",
            styled(d.status),
            d.task_type or "-",
            d.accelerator_type or "-",
            d.resource_spec or "-",
            when(d.create_time),
            d.duration or "-",
        )
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
            instance_id,
            detail.instance_service_name or "-",
            styled(detail.status),
            detail.task_type or "-",
            detail.duration or "-",
        )
    return table
