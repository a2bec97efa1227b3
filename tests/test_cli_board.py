"""``watch``'s view of its own health: the status line, health records, the board."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from aiocontainer import StatusChange
from aiocontainer._health import ObservationBook, build_report
from aiocontainer._schedule import Entry
from aiocontainer.cli.board import (
    Board,
    StatusLine,
    age_text,
    board_view,
    health_record,
    status_text,
)
from aiocontainer.models import InstanceDetail
from aiocontainer.simulator import Simulator
from tests.cli_inprocess import InProcessCli
from tests.conftest import Cli, assert_one_line_hint
from tests.watcher_fakes import FakeClient, FakeTime, make

A, B, C = "a" * 32, "b" * 32, "c" * 32
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def cli(sim: Simulator) -> InProcessCli:
    """Runs ``main`` in this process; ``cli.process`` and ``cli.start`` run the real command."""
    return InProcessCli(sim)


def report_of(statuses: dict[str, str | None], *, stale: tuple[str, ...] = (), now: float = 100.0):  # type: ignore[no-untyped-def]
    book = ObservationBook(stale_after=30.0)
    book.watch(statuses, now=0.0)
    seen = [(i, s) for i, s in statuses.items() if s is not None]
    for instance_id, status in sorted(seen, key=lambda item: item[0] not in stale):  # in time order
        at = 1.0 if instance_id in stale else now - 4
        book.observed(instance_id, now=at, at=T0, status=status, at_rest=False)
    book.due_stale(now=now)
    return build_report(
        [Entry(i, None) for i in statuses],
        book,
        now=now,
        interval=10.0,
        changes_emitted=5,
        changes_dropped=1,
        queue_depths={"callback show": 0},
    )


def change(instance_id: str, previous: str | None, current: str, at: datetime) -> StatusChange:
    detail = InstanceDetail(id=instance_id, status=current)
    return StatusChange(
        instance_id=instance_id,
        previous=previous,
        current=current,
        detail=detail,
        observed_at=at,
        seq=1,
        skipped=(),
    )


def test_ages_are_short() -> None:
    assert [age_text(x) for x in (None, 4.9, 65, 7300)] == ["-", "4s", "1m05s", "2h01m"]


def test_status_text_says_what_a_person_needs() -> None:
    report = report_of({A: "Running", B: None, C: "Waiting"}, stale=(C,))
    text = status_text(report, errors_last_minute=3, requests_per_s=2.44)
    assert text == "watching 3 · synced 2/3 · stalest 1m40s · 2 stale · 3 errors/min · 2.4 req/s"
    synced = report_of({A: "Running"})
    assert status_text(synced, errors_last_minute=0, requests_per_s=0) == (
        "watching 1 · synced · stalest 4s · 0 errors/min · 0.0 req/s"
    )


def test_health_record_is_json_with_a_type() -> None:
    report = report_of({A: "Running", C: "Waiting"}, stale=(C,))
    watcher = make(FakeClient(FakeTime(), {}), [A])
    record = health_record(report, watcher.stats, at=T0)
    assert json.loads(json.dumps(record)) == record
    assert record["type"] == "health" and record["at"] == T0.isoformat()
    assert (record["watched"], record["synced"], record["stale"]) == (2, True, [C])
    assert (record["changes_emitted"], record["changes_dropped"], record["requests"]) == (5, 1, 0)


def test_status_line_draws_in_place_and_counts_the_last_minute() -> None:
    now = [0.0]
    requests = [0]
    out = io.StringIO()
    line = StatusLine(out, requests=lambda: requests[0], clock=lambda: now[0])
    line.clear()
    assert out.getvalue() == ""  # nothing shown, nothing erased
    line.error()
    now[0], requests[0] = 30.0, 0
    assert line.requests_per_s() == 0.0
    line.error()
    now[0], requests[0] = 40.0, 50
    assert line.requests_per_s() == 5.0
    assert line.errors_last_minute() == 2
    now[0] = 61.0
    assert line.errors_last_minute() == 1
    line.draw("watching 1")
    line.clear()
    assert out.getvalue() == "\r\x1b[2Kwatching 1\r\x1b[2K"


def render(group: object, *, width: int = 110) -> str:
    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor")
    console.print(group)
    return console.export_text()


def test_board_shows_most_recent_changes_first_and_marks_stale() -> None:
    report = report_of({A: "Running", B: "Failed", C: "Waiting"}, stale=(C,))
    board = Board()
    board.changed(change(B, "Running", "Failed", T0))
    board.changed(change(A, "Waiting", "Running", T0 + timedelta(seconds=30)))
    board.changed(change(B, "Deploying", "Running", T0 + timedelta(seconds=10)))  # B again
    board.changed(change(B, "Running", "Failed", T0 + timedelta(seconds=50)))
    now = T0 + timedelta(seconds=125)
    text = render(board_view(report, board.last, now=now, height=40))
    rows = [line for line in text.splitlines() if A in line or B in line or C in line]
    assert [r.split()[0] for r in rows] == [B, A, C]  # latest change first, never-changed last
    assert "1m15s" in rows[0] and "Running → Failed" in rows[0]
    assert "1m35s" in rows[1] and "Waiting → Running" in rows[1]
    assert "STALE" in rows[2] and "STALE" not in rows[0] + rows[1]
    assert "total 3" in text and "Failed 1" in text and "Running 1" in text
    assert "1 stale" in text


def test_board_fits_the_terminal() -> None:
    ids = [f"{n:032x}" for n in range(40)]
    report = report_of(dict.fromkeys(ids, "Running"))
    text = render(board_view(report, {}, now=T0, height=20))
    shown = [line for line in text.splitlines() if any(i in line for i in ids)]
    assert len(shown) == 12
    assert "… 28 more" in text
    assert len(text.splitlines()) <= 20


def test_server_text_on_the_board_is_shown_not_obeyed() -> None:
    report = report_of({A: "Run\x1b]0;pwned\x07ning"})
    text = render(board_view(report, {}, now=T0, height=20))
    assert "\x1b]0;" not in text and "\\x1b" in text


async def test_board_refuses_a_pipe(cli: Cli, sim: Simulator) -> None:
    result = await cli.run("watch", sim.instance_ids[0], "--board")
    assert_one_line_hint(result)
    assert "--board needs a terminal" in result.err


async def test_health_every_needs_jsonl(cli: Cli, sim: Simulator) -> None:
    result = await cli.run("watch", sim.instance_ids[0], "--health-every", "1")
    assert_one_line_hint(result)
    assert "-o jsonl" in result.err


async def test_watch_jsonl_writes_health_records(cli: Cli, sim: Simulator) -> None:
    first = sim.instance_ids[0]
    running = await cli.start(
        "watch", first, "--interval", "0.2", "-o", "jsonl", "--health-every", "0.3"
    )
    try:
        records = [json.loads(await running.line()) for _ in range(4)]
    finally:
        await running.stop()
    health = [r for r in records if r.get("type") == "health"]
    changes = [r for r in records if "type" not in r]
    assert len(health) >= 2 and changes[0]["instance_id"] == first
    assert health[-1]["watched"] == 1 and health[-1]["synced"] is True
    assert health[-1]["requests"] >= 1


async def test_piped_watch_has_no_status_line(cli: Cli, sim: Simulator) -> None:
    running = await cli.start("watch", sim.instance_ids[0], "--interval", "0.2")
    try:
        await running.line()
        await asyncio.sleep(1.5)  # more than one redraw period
    finally:
        running.proc.send_signal(2)
        result = await running.finish()
    assert "\x1b" not in result.out and "watching" not in result.out


def on_a_terminal(*args: str, until: str) -> tuple[str, int, list[str]]:
    """Run ``aiocontainer watch`` on a pseudo-terminal (120x30) against a simulator until its
    output shows ``until``, then press Ctrl-C: the output, the exit code, the ids."""

    async def start() -> Simulator:
        sim = Simulator(instances=2, seed=11, frozen=True, include_seed_instance=False)
        await sim.start()
        return sim

    loop = asyncio.new_event_loop()
    sim = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    seen = b""
    try:
        ids = list(sim.instance_ids)
        main, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        proc = subprocess.Popen(
            [sys.executable, "-m", "aiocontainer", "watch", *ids, *args],
            stdin=subprocess.DEVNULL,
            stdout=child,
            stderr=subprocess.DEVNULL,
            env=Cli(sim).env(),
        )
        os.close(child)
        deadline = time.monotonic() + 20
        while until.encode() not in seen:
            assert time.monotonic() < deadline, seen
            seen += os.read(main, 4096)
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(OSError):  # the pty ends with the process
            while chunk := os.read(main, 4096):
                seen += chunk
        code = proc.wait(timeout=20)
        os.close(main)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(sim.close())
        loop.close()
    return seen.decode(), code, ids


def test_watch_on_a_terminal_keeps_a_status_line_under_the_changes() -> None:
    text, code, ids = on_a_terminal("--interval", "0.3", until="watching 2 · synced ·")
    assert code == 130
    assert "\r\x1b[2Kwatching 2 · synced" in text
    for instance_id in ids:
        # Each change line starts on an erased line, so the status line never lingers in it.
        assert "\r\x1b[2K" in text.split(instance_id)[0]
    assert text.rstrip("\r\n").endswith("\x1b[2K")  # erased at the end


def test_board_on_a_terminal_fills_the_screen_and_leaves_it_on_ctrl_c() -> None:
    text, code, ids = on_a_terminal("--board", "--interval", "0.3", until="total 2")
    assert code == 130
    assert "\x1b[?1049h" in text and text.rfind("\x1b[?1049l") > text.rfind("total 2")
    assert all(instance_id in text for instance_id in ids)
    assert "no errors in the last minute" in text
