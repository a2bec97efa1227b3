"""``aiocontainer watch`` and ``aiocontainer wait``: status changes as they happen."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from aiocontainer import (
    ContainerClient,
    InstanceDetail,
    InstanceGoneError,
    InstanceWatcher,
    StatusChange,
    WaitFailedError,
    WaitTimeoutError,
)
from aiocontainer.cli import _output
from aiocontainer.cli._exits import (
    EXIT_API,
    EXIT_FAILED_STATUS,
    EXIT_OK,
    EXIT_TIMEOUT,
    UsageError,
)
from aiocontainer.cli._ids import check_ids, read_ids, read_stdin
from aiocontainer.cli._options import positive_float, statuses
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
    )
    watch.add_argument("ids", nargs="+", metavar="ID", help="instance ids, or - for stdin")
    _interval(watch)
    watch.add_argument(
        "--until-terminal",
        action="store_true",
        help="exit 0 once every instance is Completed, Failed or Terminated",
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

    wait = commands.add(
        "wait",
        "wait until an instance reaches a status",
        "Poll one instance until it reaches one of the --for statuses (exit 0), reaches a "
        "--fail-on status (exit 1), or --timeout passes (exit 3).",
        run=run_wait,
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


def run_watch(args: argparse.Namespace) -> int:
    """Read and check the ids, then watch them."""
    ids = read_ids(args.ids, read_stdin)
    check_ids(ids)
    return run_with_client(args, lambda client: watch(args, client, ids))


def run_wait(args: argparse.Namespace) -> int:
    """Check the id, then wait for it."""
    ids = read_ids([args.id], read_stdin)
    if len(ids) != 1:
        raise UsageError(f"wait takes exactly one instance id; stdin gave {len(ids)}")
    check_ids(ids)
    return run_with_client(args, lambda client: wait(args, client, ids[0]))


async def watch(args: argparse.Namespace, client: ContainerClient, ids: list[str]) -> int:
    """Print changes until interrupted or, with --until-terminal, until all are terminal."""
    err = _output.console(stderr=True)
    watcher = InstanceWatcher(
        client,
        ids,
        interval=args.interval,
        stop_when_all_terminal=args.until_terminal,
        checkpoint=args.checkpoint,
    )

    closed = False

    @watcher.on_change
    def show(change: StatusChange) -> None:
        nonlocal closed
        if closed:
            return
        try:
            if args.output == "jsonl":
                _output.emit(_output.dumps(_output.change_record(change)))
            else:
                _output.emit(_output.change_line(change))
        except _output.StdoutClosed:
            closed = True  # nobody reads any more (| head): stop polling, quietly
            watcher.stop()

    @watcher.on_error
    def complain(instance_id: str | None, exc: Exception) -> None:
        _output.print_error(err, instance_id, exc)
        if isinstance(exc, InstanceGoneError) and not watcher.ids:
            watcher.stop()  # every id is gone: nothing is left to watch

    await watcher.run()
    if closed:
        raise _output.StdoutClosed
    if not watcher.ids:
        err.print("no instance left to watch: every id answered 10004", markup=False)
        return EXIT_API
    return EXIT_OK


async def wait(args: argparse.Namespace, client: ContainerClient, instance_id: str) -> int:
    """Wait for one instance; the exit code says how it ended."""
    err = _output.console(stderr=True)
    watcher = InstanceWatcher(client, [instance_id], interval=args.interval, emit_initial=False)

    @watcher.on_error
    def complain(failed_id: str | None, exc: Exception) -> None:
        _output.print_error(err, failed_id, exc)

    try:
        detail = await watcher.wait_for(
            instance_id, args.targets, timeout=args.wait_timeout, fail_on=args.fail_on
        )
    except WaitFailedError as exc:
        wanted = _output.visible(", ".join(args.targets))
        _output.emit(f"{instance_id}  {_last_status(exc)}  (failed: wanted {wanted})")
        return EXIT_FAILED_STATUS
    except WaitTimeoutError as exc:
        _output.emit(
            f"{instance_id}  {_last_status(exc)}  (timed out after {args.wait_timeout:g} s)"
        )
        return EXIT_TIMEOUT
    _output.emit(f"{instance_id}  {_output.visible(detail.status)}")
    return EXIT_OK


def _last_status(exc: WaitFailedError | WaitTimeoutError) -> str:
    detail = exc.last_detail
    return _output.visible(detail.status) if isinstance(detail, InstanceDetail) else "unknown"
