"""The ``aiocontainer`` command line: get, watch, wait, simulate, demo.

Rule 1: it uses the public API only; whatever it can do, a program can do with the library.
Rule 2: stdout carries results only (tables, JSON, change lines); progress, failures and logs go to
        stderr, so ``aiocontainer get ... --output json | jq`` always sees clean JSON.
Rule 3: the token is never printed, not even with ``-v``.
Rule 4: every outcome has its exit code (see ``EXIT_CODES``); a usage problem is a one-line hint,
        never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO

from aiocontainer import (
    AiocontainerError,
    ContainerClient,
    InstanceDetail,
    InstanceGoneError,
    InstanceStatus,
    InstanceWatcher,
    InvalidInstanceIdError,
    StatusChange,
    WaitFailedError,
    WaitTimeoutError,
    __version__,
)

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["EXIT_CODES", "main"]

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

_EPILOG = "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())

STATUS_STYLES = {
    InstanceStatus.WAITING: "yellow",
    InstanceStatus.DEPLOYING: "cyan",
    InstanceStatus.RUNNING: "green",
    InstanceStatus.COMPLETED: "blue",
    InstanceStatus.FAILED: "bold red",
    InstanceStatus.TERMINATED: "magenta",
}

_PIPE_WIDTH = 1000


class UsageError(Exception):
    """A problem with how the command was called: exit 2 with a one-line hint."""


# -- argument parsing --------------------------------------------------------------------------


def _connection_options(
    *, request_timeout: bool = True, connection: bool = True
) -> argparse.ArgumentParser:
    # SUPPRESS lets the same options stand before or after the command name.
    common = argparse.ArgumentParser(add_help=False)
    if not connection:
        # demo brings its own simulator: offering --base-url or --token there would mislead.
        common.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=argparse.SUPPRESS,
            help="log to stderr: -v retries and warnings, -vv every request",
        )
        return common
    group = common.add_argument_group("connection")
    group.add_argument(
        "--base-url",
        default=argparse.SUPPRESS,
        help="API base URL (env AIOCONTAINER_BASE_URL), e.g. https://api01.example.com:65106",
    )
    group.add_argument(
        "--token-file",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="read the token from this file (env AIOCONTAINER_TOKEN_FILE); the safest way",
    )
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="the token itself (env AIOCONTAINER_TOKEN); a token on the command line ends up "
        "in your shell history and the process list, so prefer --token-file or the env var",
    )
    if request_timeout:
        group.add_argument(
            "--timeout",
            type=_positive_float,
            default=argparse.SUPPRESS,
            metavar="S",
            help="seconds per request attempt (default 10)",
        )
    group.add_argument(
        "--concurrency",
        type=_positive_int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="requests in flight at once (default 32)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log to stderr: -v retries and warnings, -vv every request (the token never appears)",
    )
    return common


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text!r}")
    return value


def _statuses(text: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    if not items:
        raise argparse.ArgumentTypeError("name at least one status, e.g. Running")
    return items


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are a one-line hint and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nTry '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``aiocontainer`` command."""
    parser = _Parser(
        prog="aiocontainer",
        description="Look up and watch SCNet container instances.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_connection_options()],
    )
    parser.add_argument("--version", action="version", version=f"aiocontainer {__version__}")
    commands: Any = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(
        name: str,
        help_text: str,
        description: str,
        *,
        request_timeout: bool = True,
        connection: bool = True,
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help_text,
            description=textwrap.fill(description, 78),
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[_connection_options(request_timeout=request_timeout, connection=connection)],
        )
        return parser

    get = command(
        "get",
        "show the detail of one or more instances",
        "Show instance details. Use '-' to read ids from stdin, one per line. Failed lookups are "
        "listed on stderr after the results; the exit code is 4 if any failed.",
    )
    get.add_argument("ids", nargs="+", metavar="ID", help="instance ids, or - for stdin")
    get.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "jsonl"),
        default="table",
        help="table (default); json: the API's own camelCase data, one object for one id or an "
        "object keyed by id for several; jsonl: one data object per line",
    )

    watch = command(
        "watch",
        "print status changes of instances as they happen",
        "Poll instances and print one line per status change. The first line of each instance "
        "shows the status it had when watching began. Ctrl-C stops cleanly (exit 130).",
    )
    watch.add_argument("ids", nargs="+", metavar="ID", help="instance ids, or - for stdin")
    watch.add_argument(
        "--interval",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="seconds between polls (default 5)",
    )
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

    wait = command(
        "wait",
        "wait until an instance reaches a status",
        "Poll one instance until it reaches one of the --for statuses (exit 0), reaches a "
        "--fail-on status (exit 1), or --timeout passes (exit 3).",
        # Here --timeout is the wait's deadline; the per-request one goes before the command.
        request_timeout=False,
    )
    wait.add_argument("id", metavar="ID", help="the instance id")
    wait.add_argument(
        "--for",
        dest="targets",
        type=_statuses,
        required=True,
        metavar="STATUS[,STATUS]",
        help="the status or statuses to wait for, e.g. Running",
    )
    wait.add_argument(
        "--fail-on",
        type=_statuses,
        default=None,
        metavar="STATUS[,STATUS]",
        help="statuses that end the wait with exit 1 (default: the terminal statuses not "
        "waited for)",
    )
    wait.add_argument(
        "--timeout",
        dest="wait_timeout",
        type=_positive_float,
        metavar="S",
        help="give up after S seconds (exit 3; default: wait forever); here --timeout is the "
        "wait's deadline: put the per-request timeout before the command "
        "(aiocontainer --timeout 5 wait ...)",
    )
    wait.add_argument(
        "--interval",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="seconds between polls (default 5)",
    )

    # The simulator parses its own options; it needs only the core dependencies.
    commands.add_parser(
        "simulate",
        help="run the embedded platform simulator in the foreground",
        add_help=False,
    )

    demo = command(
        "demo",
        "watch a simulated platform live, then print a summary",
        "Start the embedded simulator, watch all its instances through the real client and "
        "watcher, print every transition as it happens and a summary at the end. It needs no "
        "base URL or token.",
        connection=False,
    )
    demo.add_argument(
        "--instances",
        type=_positive_int,
        default=12,
        metavar="N",
        help="instances to simulate (default 12)",
    )
    demo.add_argument(
        "--speed",
        type=_positive_float,
        default=20.0,
        metavar="F",
        help="simulated seconds per real second (default 20)",
    )
    demo.add_argument(
        "--fault-rate",
        type=_fraction,
        default=0.15,
        metavar="F",
        help="share of requests the simulator answers with a fault (default 0.15)",
    )
    demo.add_argument(
        "--interval",
        type=_positive_float,
        default=0.5,
        metavar="S",
        help="seconds between polls (default 0.5)",
    )
    demo.add_argument(
        "--seed", type=int, default=1, help="seed for the simulated instances (default 1)"
    )
    return parser


# -- configuration -----------------------------------------------------------------------------


def _setting(args: argparse.Namespace, name: str, env: str | None = None) -> Any:
    value = getattr(args, name, None)
    if value is None and env is not None:
        value = os.environ.get(env) or None
    return value


def resolve_token(args: argparse.Namespace) -> str:
    """The token from --token-file, --token, AIOCONTAINER_TOKEN_FILE or AIOCONTAINER_TOKEN.

    The command line wins over the environment; within each, a file wins over a bare token.
    """
    path = getattr(args, "token_file", None)
    token = getattr(args, "token", None)
    if not path and not token:
        path = os.environ.get("AIOCONTAINER_TOKEN_FILE") or None
        token = os.environ.get("AIOCONTAINER_TOKEN") or None
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"the token file {path} is empty")
        return token
    if not token:
        raise UsageError(
            "no token: pass --token-file PATH, or set AIOCONTAINER_TOKEN "
            "(try 'aiocontainer simulate' for a local one)"
        )
    return str(token).strip()


def make_client(args: argparse.Namespace) -> ContainerClient:
    """A ContainerClient from the command line and the environment."""
    base_url = _setting(args, "base_url", "AIOCONTAINER_BASE_URL")
    if not base_url:
        raise UsageError(
            "no base URL: pass --base-url or set AIOCONTAINER_BASE_URL "
            "(e.g. https://api01.example.com:65106)"
        )
    token = resolve_token(args)
    options: dict[str, Any] = {}
    if getattr(args, "timeout", None) is not None:
        options["timeout"] = args.timeout
    if getattr(args, "concurrency", None) is not None:
        options["concurrency"] = args.concurrency
    try:
        return ContainerClient(base_url, token=token, **options)
    except (ValueError, AiocontainerError) as exc:
        raise UsageError(str(exc)) from None


def read_ids(raw: Sequence[str], stdin: TextIO) -> list[str]:
    """Expand '-' into the ids on stdin (one per line, blank lines and # comments skipped)."""
    ids: list[str] = []
    for item in raw:
        if item == "-":
            for line in stdin:
                line = line.strip()
                if line and not line.startswith("#"):
                    ids.append(line)
        else:
            ids.append(item)
    if not ids:
        raise UsageError("no instance ids given")
    return ids


def check_ids(ids: Iterable[str]) -> None:
    """Refuse the whole command if any id is invalid, before anything is sent."""
    from aiocontainer._protocol import validate_instance_id

    for instance_id in ids:
        try:
            validate_instance_id(instance_id)
        except InvalidInstanceIdError as exc:
            raise UsageError(str(exc)) from None


class _Redact(logging.Filter):
    """Blank the token out of any log record, ours or a dependency's."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret and self.secret in message:
            record.msg = message.replace(self.secret, "***")
            record.args = None
        return True


def setup_logging(verbosity: int, secret: str | None) -> None:
    """Log to stderr at WARNING (-v) or DEBUG (-vv); nothing without -v."""
    if not verbosity:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if secret:
        handler.addFilter(_Redact(secret))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    logging.getLogger("aiocontainer").setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


# -- output helpers ----------------------------------------------------------------------------


def _consoles() -> tuple[Console, Console]:
    return _console(stderr=False), _console(stderr=True)


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output is not folded at 80 columns: a table row or an error stays on one line,
        # so grep and friends see it whole.
        console = Console(stderr=stderr, highlight=False, width=_PIPE_WIDTH)
    return console


def _styled(status: str) -> str:
    style = STATUS_STYLES.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _dumps(obj: Any) -> str:
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


def _error_line(instance_id: str | None, exc: BaseException) -> str:
    where = f"{instance_id}: " if instance_id else ""
    return f"{where}{type(exc).__name__}: {exc}"


# -- commands ----------------------------------------------------------------------------------


async def cmd_get(args: argparse.Namespace, client: ContainerClient, ids: list[str]) -> int:
    """Look ids up; results on stdout, failures on stderr after them."""
    out, err = _consoles()
    results: dict[str, InstanceDetail | AiocontainerError] = {}
    unique = list(dict.fromkeys(ids))
    show_progress = len(unique) > 1 and err.is_terminal
    if show_progress:
        from rich.progress import Progress

        with Progress(console=err, transient=True) as progress:
            bar = progress.add_task("looking up", total=len(unique))
            async with contextlib.aclosing(client.iter_instances(unique)) as stream:  # type: ignore[type-var]
                async for instance_id, result in stream:
                    results[instance_id] = result
                    progress.advance(bar)
    else:
        results = await client.get_instances(unique)
    details = {i: r for i in unique if isinstance(r := results[i], InstanceDetail)}
    failures = {i: r for i in unique if isinstance(r := results[i], AiocontainerError)}

    if args.output == "json":
        if len(unique) == 1:
            if details:
                print(_dumps(details[unique[0]].to_api()))
        else:
            print(_dumps({i: d.to_api() for i, d in details.items()}))
    elif args.output == "jsonl":
        for detail in details.values():
            print(_dumps(detail.to_api()))
    elif details:
        out.print(_detail_table(details.values()))
    for instance_id, exc in failures.items():
        err.print(_error_line(instance_id, exc), markup=False, highlight=False)
    if failures:
        err.print(f"{len(failures)} of {len(unique)} lookups failed", markup=False)
        return EXIT_API
    return EXIT_OK


def _detail_table(details: Iterable[InstanceDetail]) -> Any:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=32)
    for column in ("NAME", "STATUS", "TYPE", "ACCEL", "RESOURCES", "CREATED", "DURATION"):
        table.add_column(column, overflow="fold")
    for d in details:
        table.add_row(
            d.id,
            d.instance_service_name or "-",
            _styled(d.status),
            d.task_type or "-",
            d.accelerator_type or "-",
            d.resource_spec or "-",
            _when(d.create_time),
            d.duration or "-",
        )
    return table


async def cmd_watch(args: argparse.Namespace, client: ContainerClient, ids: list[str]) -> int:
    """Print changes until interrupted or, with --until-terminal, until all are terminal."""
    _, err = _consoles()
    watcher = InstanceWatcher(
        client,
        ids,
        interval=args.interval,
        stop_when_all_terminal=args.until_terminal,
        checkpoint=args.checkpoint,
    )

    @watcher.on_change
    def show(change: StatusChange) -> None:
        if args.output == "jsonl":
            print(_dumps(change_record(change)), flush=True)
        else:
            print(change_line(change), flush=True)

    @watcher.on_error
    def complain(instance_id: str | None, exc: Exception) -> None:
        err.print(_error_line(instance_id, exc), markup=False, highlight=False)
        if isinstance(exc, InstanceGoneError) and not watcher.ids:
            watcher.stop()  # every id is gone: nothing is left to watch

    await watcher.run()
    if not watcher.ids:
        err.print("no instance left to watch: every id answered 10004", markup=False)
        return EXIT_API
    return EXIT_OK


async def cmd_wait(args: argparse.Namespace, client: ContainerClient, ids: list[str]) -> int:
    """Wait for one instance; the exit code says how it ended."""
    _, err = _consoles()
    (instance_id,) = ids
    watcher = InstanceWatcher(client, [instance_id], interval=args.interval, emit_initial=False)

    @watcher.on_error
    def complain(failed_id: str | None, exc: Exception) -> None:
        err.print(_error_line(failed_id, exc), markup=False, highlight=False)

    try:
        detail = await watcher.wait_for(
            instance_id, args.targets, timeout=args.wait_timeout, fail_on=args.fail_on
        )
    except WaitFailedError as exc:
        print(f"{instance_id}  {_last_status(exc)}  (failed: wanted {', '.join(args.targets)})")
        return EXIT_FAILED_STATUS
    except WaitTimeoutError as exc:
        print(f"{instance_id}  {_last_status(exc)}  (timed out after {args.wait_timeout:g} s)")
        return EXIT_TIMEOUT
    print(f"{instance_id}  {detail.status}")
    return EXIT_OK


def _last_status(exc: WaitFailedError | WaitTimeoutError) -> str:
    detail = exc.last_detail
    return detail.status if isinstance(detail, InstanceDetail) else "unknown"


async def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded simulator, watched live through the real client and watcher."""
    from rich.table import Table

    from aiocontainer.simulator import Simulator

    out, err = _consoles()
    started = time.monotonic()
    async with Simulator(
        instances=args.instances,
        seed=args.seed,
        speed=args.speed,
        fault_rate=args.fault_rate,
    ) as sim:
        out.print(
            f"[bold]aiocontainer demo[/bold]: simulator at {sim.base_url}, "
            f"{len(sim.instance_ids)} instances, {args.speed:g}x speed, "
            f"{args.fault_rate:.0%} of requests faulted"
        )
        errors: dict[str, int] = {}
        async with ContainerClient(
            sim.base_url, token=sim.token, backoff_factor=0.05, backoff_max=0.5, timeout=2.0
        ) as client:
            watcher = InstanceWatcher(
                client, sim.instance_ids, interval=args.interval, stop_when_all_terminal=True
            )

            @watcher.on_change
            def show(change: StatusChange) -> None:
                stamp = f"{time.monotonic() - started:6.1f}s"
                previous = _styled(change.previous) if change.previous else "·"
                skipped = (
                    f" [dim](passed {', '.join(change.skipped)})[/dim]" if change.skipped else ""
                )
                current = _styled(change.current)
                out.print(f"{stamp}  {change.instance_id}  {previous} → {current}{skipped}")

            @watcher.on_error
            def count_error(instance_id: str | None, exc: Exception) -> None:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

            await watcher.run()
            stats = client.stats
            final = watcher.snapshot()

    table = Table(title="final status", box=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=32)
    for column in ("NAME", "STATUS", "TYPE", "DURATION"):
        table.add_column(column)
    for instance_id, detail in final.items():
        table.add_row(
            instance_id,
            detail.instance_service_name or "-",
            _styled(detail.status),
            detail.task_type or "-",
            detail.duration or "-",
        )
    out.print(table)
    counts: dict[str, int] = {}
    for detail in final.values():
        counts[detail.status] = counts.get(detail.status, 0) + 1
    out.print("outcome: " + ", ".join(f"{_styled(s)} {n}" for s, n in sorted(counts.items())))
    out.print(
        f"requests {stats.requests}, retries {stats.retries}, failed lookups {stats.failures}"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(errors.items()))})" if errors else "")
        + f", {time.monotonic() - started:.1f} s"
    )
    del err
    return EXIT_OK


# -- entry point -------------------------------------------------------------------------------

_COMMANDS: dict[str, Callable[[argparse.Namespace, ContainerClient, list[str]], Awaitable[int]]] = {
    "get": cmd_get,
    "watch": cmd_watch,
    "wait": cmd_wait,
}


async def _run_interruptibly(coro: Awaitable[int]) -> int:
    """Run ``coro``; SIGINT/SIGTERM cancel it so every ``async with`` unwinds, then exit 130."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, interrupt)
            installed.append(signum)
    try:
        return await task
    except asyncio.CancelledError:
        if interrupted:
            return EXIT_INTERRUPTED
        raise
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _with_client(args: argparse.Namespace, ids: list[str]) -> int:
    async with make_client(args) as client:
        return await _COMMANDS[args.command](args, client, ids)


def _require_rich() -> None:
    try:
        import rich  # noqa: F401
    except ImportError:
        raise UsageError(
            "this command needs the 'cli' extra: pip install 'aiocontainer[cli]' "
            "('aiocontainer simulate' works without it)"
        ) from None


_CONNECTION_OPTIONS: Final = ("base_url", "token", "token_file", "timeout", "concurrency")


def _refuse_connection_options(args: argparse.Namespace) -> None:
    """``demo`` talks to its own simulator: a URL or token given before it would be ignored."""
    given = [name for name in _CONNECTION_OPTIONS if hasattr(args, name)]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(
            f"demo runs against its own embedded simulator; {options} cannot apply to it"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "simulate":
        from aiocontainer.simulator import main as simulate

        return simulate(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        _require_rich()
        if args.command == "demo":
            _refuse_connection_options(args)
            setup_logging(getattr(args, "verbose", 0) or 0, None)
            return asyncio.run(_run_interruptibly(cmd_demo(args)))
        ids = read_ids([args.id] if args.command == "wait" else args.ids, sys.stdin)
        check_ids(ids)
        token = resolve_token(args)
        setup_logging(getattr(args, "verbose", 0) or 0, token)
        return asyncio.run(_run_interruptibly(_with_client(args, ids)))
    except UsageError as exc:
        print(f"aiocontainer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AiocontainerError as exc:
        print(f"aiocontainer: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_API
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
