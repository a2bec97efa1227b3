"""``aiocontainer watch`` and ``aiocontainer wait``: status changes as they happen."""

from __future__ import annotations

import argparse
import asyncio
import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from aiocontainer import (
    ContainerClient,
    InstanceDetail,
    InstanceGoneError,
    InstanceRecoveredNotice,
    InstanceStaleError,
    InstanceWatcher,
    InvalidParameterError,
    StatusChange,
    WaitFailedError,
    WaitTimeoutError,
)
from aiocontainer._json import loads
from aiocontainer.cli import _output, board
from aiocontainer.cli._config import base_url_of, give_up_hint
from aiocontainer.cli._exits import (
    EXIT_API,
    EXIT_FAILED_STATUS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    UsageError,
)
from aiocontainer.cli._ids import check_ids, read_ids, read_stdin
from aiocontainer.cli._options import DOCUMENTED_STATUSES, positive_float, statuses
from aiocontainer.cli._run import run_with_client

if TYPE_CHECKING:
    from aiocontainer.cli._parser import Commands


def register(commands: Commands) -> None:
    """Add ``watch`` and ``wait`` to the command line."""
    watch = commands.add(
        "watch",
        "print status changes of instances as they happen",
        "Poll instances and print one line per status change. The first line of each instance "
        "shows the status it had when watching began. Ctrl-C stops cleanly (exit 130).",
        run=run_watch,
        needs_rich=lambda args: bool(args.board),
        exit_codes=(EXIT_OK, EXIT_USAGE, EXIT_API, EXIT_INTERRUPTED),
    )
    watch.add_argument(
        "ids", nargs="*", metavar="ID", help="instance ids, or - for stdin (none with --all)"
    )
    watch.add_argument(
        "--all",
        dest="watch_all",
        action="store_true",
        help="watch every instance of the account, new ones included (found through the list)",
    )
    watch.add_argument(
        "--sweep",
        choices=("auto", "list", "detail"),
        default="auto",
        help="how to poll: list pages (one pass per interval), one detail request per id, or "
        "auto: whichever costs fewer requests each interval",
    )
    _interval(watch)
    watch.add_argument(
        "--until-terminal",
        action="store_true",
        help="exit 0 once every instance is Completed, Failed or Terminated (with --all: as a "
        "whole pass of the list shows them)",
    )
    watch.add_argument(
        "-o",
        "--output",
        choices=("text", "jsonl"),
        default="text",
        help="text: 'time  id  Waiting → Running'; jsonl: one JSON object per change",
    )
    watch.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="remember statuses here; a later watch with the same file reports what changed "
        "while nothing was watching",
    )
    watch.add_argument(
        "--health-every",
        type=positive_float,
        metavar="S",
        help='with -o jsonl, also write a health record every S seconds ({"type": "health"})',
    )
    watch.add_argument(
        "--board",
        action="store_true",
        help="a live full-screen board of every instance instead of change lines (a terminal only)",
    )

    wait = commands.add(
        "wait",
        "wait until an instance reaches a status",
        "Poll one instance until it reaches one of the --for statuses (exit 0), reaches a "
        "--fail-on status (exit 1), or --timeout passes (exit 3).",
        run=run_wait,
        needs_rich=False,
        # Here --timeout is the wait's deadline; the per-request one goes before the command.
        request_timeout=False,
    )
    wait.add_argument("id", metavar="ID", help="the instance id")
    wait.add_argument(
        "--for",
        dest="targets",
        type=statuses,
        required=True,
        metavar="STATUS[,STATUS]",
        help="the status or statuses to wait for, e.g. Running",
    )
    wait.add_argument(
        "--fail-on",
        type=statuses,
        default=None,
        metavar="STATUS[,STATUS]",
        help="statuses that end the wait with exit 1 (default: the terminal statuses not "
        "waited for)",
    )
    wait.add_argument(
        "--allow-unknown-status",
        action="store_true",
        help="accept statuses in --for/--fail-on beyond the six documented ones (the server owns "
        "the vocabulary; without this, an unknown status is a usage error, so a typo such as "
        "'running' cannot wait forever)",
    )
    wait.add_argument(
        "--timeout",
        dest="wait_timeout",
        type=positive_float,
        metavar="S",
        help="give up after S seconds (exit 3; default: wait forever); here --timeout is the "
        "wait's deadline: put the per-request timeout before the command "
        "(aiocontainer --timeout 5 wait ...)",
    )
    _interval(wait)


def _interval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds between polls (default 5)",
    )


def check_statuses(option: str, statuses: Iterable[str]) -> None:
    """Refuse a status that is not one of the documented six (statuses are case-sensitive)."""
    for status in statuses:
        if status in DOCUMENTED_STATUSES:
            continue
        guess = difflib.get_close_matches(status.capitalize(), DOCUMENTED_STATUSES, n=1, cutoff=0.6)
        maybe = f" (did you mean {guess[0]}?)" if guess else ""
        raise UsageError(
            f"unknown status {status!r} in {option}{maybe}: the platform's statuses are "
            f"{', '.join(DOCUMENTED_STATUSES)}; --allow-unknown-status accepts any"
        )


def run_watch(args: argparse.Namespace) -> int:
    """Read and check the ids, then watch them."""
    if args.watch_all:
        if args.ids:
            raise UsageError("--all watches every instance: name no ids with it")
        if args.sweep == "detail":
            raise UsageError("--all finds instances through the list: it cannot use --sweep detail")
        ids: list[str] = []
    else:
        if not args.ids:
            raise UsageError("name the instance ids to watch, - to read them from stdin, or --all")
        ids = read_ids(args.ids, read_stdin)
    check_ids(ids)
    return run_with_client(args, lambda client: watch(args, client, ids))


def run_wait(args: argparse.Namespace) -> int:
    """Check the id, then wait for it."""
    ids = read_ids([args.id], read_stdin)
    if len(ids) != 1:
        raise UsageError(f"wait takes exactly one instance id; stdin gave {len(ids)}")
    check_ids(ids)
    if not args.allow_unknown_status:
        check_statuses("--for", args.targets)
        check_statuses("--fail-on", args.fail_on or ())
    return run_with_client(args, lambda client: wait(args, client, ids[0]))


class _Complaints:
    """``on_error`` of watch and wait: each failure on stderr once, and the ones that end it.

    A 10004 answer is not printed: the watcher counts them and reports the instance as gone,
    once. A failure that polling on cannot mend (see ``give_up_hint``) calls ``give_up``.
    """

    def __init__(
        self, watcher: InstanceWatcher, base_url: str | None, give_up: Callable[[], object]
    ) -> None:
        self.watcher = watcher
        self.base_url = base_url
        self.give_up = give_up
        self.fatal: str | None = None

    def __call__(self, instance_id: str | None, exc: Exception) -> None:
        if self.fatal is not None or isinstance(exc, InvalidParameterError):
            return
        reached = bool(self.watcher.snapshot())
        hint = give_up_hint(exc, reached=reached, base_url=self.base_url)
        _output.print_error(instance_id, exc, base_url=self.base_url)
        if hint is not None:
            self.fatal = hint
            self.give_up()


async def watch(args: argparse.Namespace, client: ContainerClient, ids: list[str]) -> int:
    """Print changes until interrupted or, with --until-terminal, until all are terminal."""
    _say_what_resumes(args.checkpoint, ids)
    watcher = InstanceWatcher(
        client,
        ids,
        interval=args.interval,
        stop_when_all_terminal=args.until_terminal,
        checkpoint=args.checkpoint,
        sweep=args.sweep,
        watch_all=args.watch_all,
    )
    closed = False
    display = board.Display.from_args(args, watcher, requests=lambda: client.stats.requests)

    @watcher.on_change
    def show(change: StatusChange) -> None:
        nonlocal closed
        if closed:
            return
        try:
            if args.output == "jsonl":
                _output.emit(_output.dumps(_output.change_record(change)))
            else:
                display.changed(change, lambda: _output.change_line(change))
        except _output.StdoutClosed:
            closed = True  # nobody reads any more (| head): stop polling, quietly
            watcher.stop()

    complaints = _Complaints(watcher, base_url_of(args), watcher.stop)

    @watcher.on_error
    def complain(instance_id: str | None, exc: Exception) -> None:
        if isinstance(exc, (InstanceStaleError, InstanceRecoveredNotice)):
            return  # shown by the status line, the board and health records, not as failures
        display.error(instance_id, exc)
        complaints(instance_id, exc)
        if isinstance(exc, InstanceGoneError) and not watcher.ids and not args.watch_all:
            watcher.stop()  # every id is gone: nothing is left to watch

    try:
        async with display.running():
            await watcher.run()
    except _output.StdoutClosed:
        closed = True
    if closed:
        raise _output.StdoutClosed
    if complaints.fatal is not None:
        raise UsageError(complaints.fatal, exit_code=EXIT_API)
    if not watcher.ids and not args.watch_all:
        _output.print_err("no instance left to watch: every id answered 10004")
        return EXIT_API
    return EXIT_OK


def _say_what_resumes(checkpoint: str | None, ids: list[str]) -> None:
    """With an existing checkpoint, say on stderr what the watch carries on from."""
    if checkpoint is None:
        return
    path = Path(checkpoint).expanduser()
    try:
        document = loads(path.read_bytes())
    except FileNotFoundError:
        return  # a first run: nothing to resume, nothing to say
    except (OSError, ValueError):
        _output.print_err(f"aiocontainer: checkpoint {checkpoint} is unreadable; starting fresh")
        return
    saved = document.get("instances") if isinstance(document, dict) else None
    # Ids are hex: the watcher treats case variants as one instance, and so does this count.
    saved_ids = {str(key).lower() for key in saved} if isinstance(saved, dict) else set()
    if ids:
        known = len({i.lower() for i in ids} & saved_ids)
        what = f"{known} of {len(ids)} ids have a saved status"
    else:
        what = f"{len(saved_ids)} instances have a saved status"
    _output.print_err(
        _output.visible(
            f"aiocontainer: resuming from {checkpoint}: {what}; what changed since is reported "
            "first"
        )
    )


async def wait(args: argparse.Namespace, client: ContainerClient, instance_id: str) -> int:
    """Wait for one instance; the exit code says how it ended."""
    watcher = InstanceWatcher(client, [instance_id], interval=args.interval, emit_initial=False)
    waiting = asyncio.ensure_future(
        watcher.wait_for(instance_id, args.targets, timeout=args.wait_timeout, fail_on=args.fail_on)
    )
    complaints = _Complaints(watcher, base_url_of(args), waiting.cancel)

    @watcher.on_error
    def complain(failed_id: str | None, exc: Exception) -> None:
        if not isinstance(exc, InstanceGoneError):  # the wait's own outcome reports it
            complaints(failed_id, exc)

    try:
        detail = await waiting
    except asyncio.CancelledError:
        if complaints.fatal is None:
            raise
        raise UsageError(complaints.fatal, exit_code=EXIT_API) from None
    except InstanceGoneError as exc:
        _output.print_error(instance_id, exc)
        return EXIT_API
    except WaitFailedError as exc:
        wanted = _output.visible(", ".join(args.targets))
        _output.emit(f"{instance_id}  {_last_status(exc)}  (failed: wanted {wanted})")
        return EXIT_FAILED_STATUS
    except WaitTimeoutError as exc:
        _output.emit(
            f"{instance_id}  {_last_status(exc)}  (timed out after {args.wait_timeout:g} s)"
        )
        return EXIT_TIMEOUT
    finally:
        waiting.cancel()
    _output.emit(f"{instance_id}  {_output.visible(detail.status)}")
    return EXIT_OK


def _last_status(exc: WaitFailedError | WaitTimeoutError) -> str:
    detail = exc.last_detail
    return _output.visible(detail.status) if isinstance(detail, InstanceDetail) else "unknown"
