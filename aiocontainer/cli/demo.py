"""``aiocontainer demo``: the embedded simulator, watched live through the client and watcher."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from aiocontainer import InstanceWatcher, StatusChange
from aiocontainer.cli import _output
from aiocontainer.cli._exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from aiocontainer.cli._options import fraction, positive_float, positive_int
from aiocontainer.cli._run import run_async
from aiocontainer.errors import (
    ApiError,
    AuthError,
    InstanceGoneError,
    InstanceRecoveredNotice,
    InstanceStaleError,
    ResponseError,
    TokenError,
    TransportError,
)

if TYPE_CHECKING:
    from aiocontainer.cli._parser import Commands


def register(commands: Commands) -> None:
    """Add ``demo`` to the command line."""
    parser = commands.add(
        "demo",
        "watch a simulated platform live, then print a summary",
        "Start the embedded simulator, watch all its instances through the real client and "
        "watcher, print every transition as it happens and a summary at the end. It needs no "
        "base URL or token.",
        run=run,
        connection=False,
        exit_codes=(EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED),
    )
    parser.add_argument(
        "--instances",
        type=positive_int,
        default=12,
        metavar="N",
        help="instances to simulate (default 12)",
    )
    parser.add_argument(
        "--speed",
        type=positive_float,
        default=20.0,
        metavar="F",
        help="simulated seconds per real second (default 20)",
    )
    parser.add_argument(
        "--fault-rate",
        type=fraction,
        default=0.15,
        metavar="F",
        help="share of requests the simulator answers with a fault (default 0.15)",
    )
    parser.add_argument(
        "--interval",
        type=positive_float,
        default=0.5,
        metavar="S",
        help="seconds between polls (default 0.5)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed for the simulated instances (default 1)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo until every instance is terminal."""
    return run_async(demo(args))


async def demo(args: argparse.Namespace) -> int:
    """The embedded simulator, watched live through the real client and watcher."""
    from rich.text import Text

    from aiocontainer.simulator import Simulator

    out = _output.console(stderr=False)
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
        errors: Counter[type[Exception]] = Counter()
        from aiocontainer.cli.regions import simulator_client  # keys -> regions -> client

        def say(text: str) -> None:
            out.print(text, markup=False, highlight=False)

        async with simulator_client(
            sim, say, backoff_factor=0.05, backoff_max=0.5, timeout=2.0
        ) as client:
            watcher = InstanceWatcher(
                client, sim.instance_ids, interval=args.interval, stop_when_all_terminal=True
            )

            @watcher.on_change
            def show(change: StatusChange) -> None:
                line = Text(f"{time.monotonic() - started:6.1f}s  {change.instance_id}  ")
                line.append_text(_output.status_cell(change.previous or "·"))
                line.append(" → ")
                line.append_text(_output.status_cell(change.current))
                if change.skipped:
                    passed = _output.visible(", ".join(change.skipped))
                    line.append(f" (passed {passed})", style="dim")
                out.print(line)

            @watcher.on_error
            def count_error(instance_id: str | None, exc: Exception) -> None:
                errors[type(exc)] += 1

            await watcher.run()
            stats = client.stats
            final = watcher.snapshot()

    out.print(_output.summary_table("final status", final.items()))
    counts: dict[str, int] = {}
    for detail in final.values():
        counts[detail.status] = counts.get(detail.status, 0) + 1
    outcome = Text("outcome: ")
    for index, (status, count) in enumerate(sorted(counts.items())):
        outcome.append_text(_output.status_cell(status))
        outcome.append(f" {count}" + (", " if index < len(counts) - 1 else ""))
    out.print(outcome)
    seconds = time.monotonic() - started
    out.print(closing_line(stats.requests, stats.retries, errors, seconds), markup=False)
    return EXIT_OK


#: What ``on_error`` receives when a lookup failed: the client's own errors after its last
#: attempt, and the watcher dropping an id whose lookups kept answering "no such id".
_LOOKUP_FAILURES: Final = (
    TransportError,
    ResponseError,
    ApiError,
    TokenError,
    AuthError,
    InstanceGoneError,
)
#: Staleness notices, in the order they are named: they report what the watcher saw, not a
#: failed lookup (the poll that failed is counted on its own).
_NOTICES: Final = ((InstanceStaleError, "stale"), (InstanceRecoveredNotice, "recovered"))


def closing_line(
    requests: int, retries: int, errors: Mapping[type[Exception], int], seconds: float
) -> str:
    """The demo's last line: requests, retries, failed lookups apart from staleness notices.

    ``errors`` counts what reached ``on_error`` by class. Lookup failures are named by class;
    ``InstanceStaleError`` and ``InstanceRecoveredNotice`` are counted as staleness notices
    (stale / recovered); anything else (a callback that raised, a dropped change) is counted
    as another error, so no count is put under a heading it does not belong to.
    """
    failed: Counter[str] = Counter()
    notices: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for kind, count in errors.items():
        notice = next((word for cls, word in _NOTICES if issubclass(kind, cls)), None)
        if notice is not None:
            notices[notice] += count
        elif issubclass(kind, _LOOKUP_FAILURES):
            failed[kind.__name__] += count
        else:
            other[kind.__name__] += count
    parts = [f"requests {requests}", f"retries {retries}", _counted("failed lookups", failed)]
    if notices:
        words = [word for _, word in _NOTICES]
        parts.append(_counted("staleness notices", notices, order=words.index))
    if other:
        parts.append(_counted("other errors", other))
    parts.append(f"{seconds:.1f} s")
    return ", ".join(parts)


def _counted(heading: str, counts: Counter[str], order: Callable[[str], int] | None = None) -> str:
    """``heading N (a 1, b 2)``: the total, then each kind (alphabetical unless ``order``)."""
    text = f"{heading} {sum(counts.values())}"
    if counts:
        kinds = sorted(counts, key=order)
        text += " (" + ", ".join(f"{kind} {counts[kind]}" for kind in kinds) + ")"
    return text
