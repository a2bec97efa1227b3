"""What ``watch`` shows of its own health: a status line, health records, and a live board.

- On a terminal, ``watch`` keeps one status line under the changes (watched, synced, stalest
  age, errors in the last minute, requests per second), redrawn in place and erased before each
  change line; when stdout is not a terminal there is no status line at all.
- ``watch -o jsonl --health-every S`` adds a health record every S seconds (``"type": "health"``;
  change records have no ``type``).
- ``watch --board`` replaces the change lines with a full-screen board of every watched instance
  (status coloured, time in that status, last change, stale marked), most recent changes on top,
  and a summary row of counts per status. It fits the terminal and needs one.

Server text is shown through ``_output`` (control characters visible, never markup).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from aiocontainer import HealthReport, InstanceWatcher, StatusChange, WatcherStats
from aiocontainer.cli import _output
from aiocontainer.cli._exits import UsageError

if TYPE_CHECKING:
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

__all__ = [
    "Board",
    "Display",
    "StatusLine",
    "age_text",
    "board_view",
    "health_record",
    "status_text",
]

#: Seconds between two redraws of the status line or the board.
REFRESH = 1.0
#: Rows of the board that are not instances: title, header, rules, summary, margin.
BOARD_CHROME = 8


def age_text(seconds: float | None) -> str:
    """A short age: ``42s``, ``3m05s``, ``2h04m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def status_text(report: HealthReport, *, errors_last_minute: int, requests_per_s: float) -> str:
    """The status line: ``watching 12 · synced · stalest 4s · 0 errors/min · 2.4 req/s``."""
    synced = "synced" if report.synced else f"synced {report.watched - report.unsynced}/"
    if not report.synced:
        synced += str(report.watched)
    parts = [f"watching {report.watched}", synced]
    if report.stalest_age is not None:
        parts.append(f"stalest {age_text(report.stalest_age)}")
    if report.stale:
        parts.append(f"{len(report.stale)} stale")
    parts.append(f"{errors_last_minute} errors/min")
    parts.append(f"{requests_per_s:.1f} req/s")
    return " · ".join(parts)


def health_record(
    report: HealthReport, stats: WatcherStats, *, at: datetime | None = None
) -> dict[str, Any]:
    """The JSON form of a health record for ``watch -o jsonl --health-every``."""
    moment = at or datetime.now(timezone.utc)
    return {
        "type": "health",
        "at": moment.isoformat(),
        "watched": report.watched,
        "synced": report.synced,
        "unsynced": report.unsynced,
        "stale": list(report.stale),
        "stalest": report.stalest,
        "stalest_age": report.stalest_age,
        "stale_after": report.stale_after,
        "changes_emitted": report.changes_emitted,
        "changes_dropped": report.changes_dropped,
        "queue_depths": dict(report.queue_depths),
        "requests": stats.requests,
        "errors": dict(stats.errors),
    }


class StatusLine:
    """The status line under the change lines, on a terminal only.

    ``clear()`` before writing a change line, ``draw()`` after; errors are counted as they come
    and the request rate is taken between two draws, on ``clock``.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        requests: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._requests = requests
        self._clock = clock
        self._errors: deque[float] = deque()
        self._last: tuple[float, int] | None = None
        self._rate = 0.0
        self._shown = False

    def error(self) -> None:
        """Count one error now."""
        self._errors.append(self._clock())

    def errors_last_minute(self) -> int:
        """Errors counted in the last 60 s."""
        now = self._clock()
        while self._errors and self._errors[0] <= now - 60:
            self._errors.popleft()
        return len(self._errors)

    def requests_per_s(self) -> float:
        """Requests per second since the previous call (0 the first time)."""
        now, count = self._clock(), self._requests()
        if self._last is not None and now > self._last[0]:
            self._rate = (count - self._last[1]) / (now - self._last[0])
        self._last = (now, count)
        return self._rate

    def text(self, report: HealthReport) -> str:
        """The line for ``report`` now."""
        return status_text(
            report,
            errors_last_minute=self.errors_last_minute(),
            requests_per_s=self.requests_per_s(),
        )

    def draw(self, text: str) -> None:
        """Show ``text`` as the status line, replacing the one shown."""
        self._stream.write("\r\x1b[2K" + text)
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the status line (before a change line, and at the end)."""
        if self._shown:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()
            self._shown = False


class Board:
    """What the board knows beyond the watcher's report: each instance's last change."""

    def __init__(self) -> None:
        self.last: dict[str, StatusChange] = {}

    def changed(self, change: StatusChange) -> None:
        """Remember ``change`` as its instance's latest."""
        self.last.pop(change.instance_id, None)
        self.last[change.instance_id] = change  # the dict keeps the most recent last


def board_view(
    report: HealthReport,
    last: Mapping[str, StatusChange],
    *,
    now: datetime,
    height: int,
    title: str = "aiocontainer watch",
) -> Group:
    """The board: one row per instance, most recent change first, then a summary of counts."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, expand=True, show_edge=False, pad_edge=False)
    table.add_column("instance", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("for", justify="right", no_wrap=True)
    table.add_column("last change", no_wrap=True)
    table.add_column("seen", justify="right", no_wrap=True)
    order = [i for i in reversed(list(last)) if i in report.instances]
    order += [i for i in report.instances if i not in last]
    room = max(height - BOARD_CHROME, 1)
    counts: Counter[str] = Counter()
    for health in report.instances.values():
        counts[health.status or "unknown"] += 1
    for instance_id in order[:room]:
        health = report.instances[instance_id]
        change = last.get(instance_id)
        since = None if change is None else (now - change.observed_at).total_seconds()
        moved = "-"
        if change is not None:
            before = _output.visible(change.previous) if change.previous else "·"
            stamp = change.observed_at.astimezone().strftime("%H:%M:%S")
            moved = f"{stamp} {before} → {_output.visible(change.current)}"
        seen = age_text(health.age) + " ago" if health.age is not None else "never"
        table.add_row(
            _output.cell(instance_id),
            _output.status_cell(health.status) if health.status else _output.cell(None),
            age_text(since),
            _output.cell(moved),
            Text(f"STALE {seen}", style="bold red") if health.stale else Text(seen),
        )
    parts: list[Table | Text] = [table]
    if len(order) > room:
        parts.append(Text(f"… {len(order) - room} more (a taller terminal shows them)"))
    summary = Text("  ").join(
        Text.assemble(
            (f"{_output.visible(status)} ", _output.STATUS_STYLES.get(status, "")), str(n)
        )
        for status, n in sorted(counts.items())
    )
    parts.append(Text.assemble("total ", str(report.watched), "  ", summary))
    if report.stale:
        parts.append(Text(f"{len(report.stale)} stale", style="bold red"))
    return Group(*parts)


class Display:
    """How ``watch`` shows what it sees: change lines (with a status line on a terminal), or
    the board; and health records every ``health_every`` seconds for ``-o jsonl``."""

    def __init__(
        self,
        watcher: InstanceWatcher,
        *,
        requests: Callable[[], int],
        board: bool = False,
        status_line: bool = False,
        health_every: float | None = None,
    ) -> None:
        self._watcher = watcher
        self._board = Board() if board else None
        self._status = StatusLine(sys.stdout, requests=requests) if status_line else None
        self._health_every = health_every
        self._errors: deque[float] = deque()
        self._last_error: str | None = None

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, watcher: InstanceWatcher, *, requests: Callable[[], int]
    ) -> Display:
        """The display the options ask for; ``UsageError`` for options that cannot go together."""
        board = bool(getattr(args, "board", False))
        every = getattr(args, "health_every", None)
        if every is not None and args.output != "jsonl":
            raise UsageError("--health-every writes JSON lines: add -o jsonl")
        if board and args.output != "text":
            raise UsageError("--board is a screen for people: drop -o jsonl")
        if board and not sys.stdout.isatty():
            raise UsageError(
                "--board needs a terminal, and stdout is not one; for a pipe or a file use "
                "-o jsonl (with --health-every S for health records)"
            )
        on_terminal = args.output == "text" and not board and sys.stdout.isatty()
        return cls(
            watcher, requests=requests, board=board, status_line=on_terminal, health_every=every
        )

    def changed(self, change: StatusChange, line: Callable[[], str]) -> None:
        """Show one change: on the board, or as a line (under which the status line moves)."""
        if self._board is not None:
            self._board.changed(change)
            return
        if self._status is not None:
            self._status.clear()
        _output.emit(line())
        if self._status is not None:
            self._status.draw(self._status.text(self._watcher.health()))

    def error(self, instance_id: str | None, exc: BaseException) -> None:
        """Count an error; the status line makes way for the error line printed on stderr."""
        self._errors.append(time.monotonic())
        self._last_error = _output.error_line(instance_id, exc)
        if self._status is not None:
            self._status.error()
            self._status.clear()  # redrawn at the next refresh, under the error line

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Redraw the status line or the board every second while the block runs."""
        live = None
        if self._board is not None:
            from rich.live import Live

            live = Live(console=_output.console(stderr=False), screen=True, auto_refresh=False)
            live.start()
        task = asyncio.ensure_future(self._refresh(live))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if live is not None:
                live.stop()
            if self._status is not None:
                self._status.clear()

    def _error_text(self) -> Text:
        from rich.text import Text

        now = time.monotonic()
        while self._errors and self._errors[0] <= now - 60:
            self._errors.popleft()
        if not self._errors:
            return Text("no errors in the last minute")
        text = Text(f"{len(self._errors)} errors in the last minute", style="red")
        if self._last_error is not None:
            text.append(f"; last: {self._last_error}")  # already made visible, never markup
        return text

    async def _refresh(self, live: Live | None) -> None:
        next_health = time.monotonic() + (self._health_every or 0)
        while True:
            report = self._watcher.health()
            if self._status is not None:
                self._status.draw(self._status.text(report))
            if live is not None and self._board is not None:
                from rich.console import Group

                height = live.console.size.height
                now = datetime.now(timezone.utc)
                view = board_view(report, self._board.last, now=now, height=height - 1)
                live.update(Group(view, self._error_text()), refresh=True)
            if self._health_every is not None and time.monotonic() >= next_health:
                record = health_record(report, self._watcher.stats)
                _output.emit(_output.dumps(record))
                next_health += self._health_every
            wait = REFRESH if self._health_every is None else min(REFRESH, self._health_every)
            await asyncio.sleep(wait)
