"""``aiocontainer simulate`` (also ``python -m aiocontainer.simulator``): the embedded platform
served in the foreground until Ctrl-C or SIGTERM. It needs only the core dependencies."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from aiocontainer.cli._exits import UsageError
from aiocontainer.simulator import DEFAULT_FAULT_MIX, DEFAULT_PAGE_CAP, FAULT_KINDS, Simulator

if TYPE_CHECKING:
    from aiocontainer.cli._parser import Commands

PROG = "aiocontainer simulate"
DESCRIPTION = "Serve a simulated SCNet container-instance API until Ctrl-C or SIGTERM."
EXIT_CANNOT_LISTEN = 1


def register(commands: Commands) -> None:
    """Add ``simulate`` to the command line."""
    parser = commands.add(
        "simulate",
        "run the embedded platform simulator in the foreground",
        DESCRIPTION,
        run=run,
        connection=False,
        needs_rich=False,
        exit_codes={
            0: "stopped by Ctrl-C or SIGTERM",
            1: "cannot listen on the address and port",
            2: "usage error",
        },
    )
    add_options(parser)


def add_options(parser: argparse.ArgumentParser) -> None:
    """The simulator's options, for ``aiocontainer simulate`` and ``-m aiocontainer.simulator``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--token",
        dest="fixed_token",
        metavar="TOKEN",
        help="a fixed token accepted forever (default: issue one)",
    )
    parser.add_argument("--instances", type=int, default=50, help="instances to generate")
    parser.add_argument("--seed", type=int, default=1, help="seed for instances and schedules")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of detail/list requests faulted"
    )
    parser.add_argument(
        "--fault-kinds",
        default=",".join(DEFAULT_FAULT_MIX),
        help=f"comma-separated mix of: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--latency",
        type=_latency,
        default=(0.0, 0.0),
        help="seconds added to each answer, or LOW,HIGH for a random delay",
    )
    parser.add_argument("--retry-after", type=float, default=1, help="Retry-After of http_429")
    parser.add_argument("--user", default="magic2", help="platform user name (default magic2)")
    parser.add_argument(
        "--access-key", help="the access key logins must use (default: generated at start)"
    )
    parser.add_argument(
        "--secret-key", help="the secret key logins are signed with (default: generated)"
    )
    parser.add_argument(
        "--page-cap",
        type=int,
        default=DEFAULT_PAGE_CAP,
        help=f"most entries one list page holds, whatever limit asks (default {DEFAULT_PAGE_CAP})",
    )
    parser.add_argument(
        "--churn",
        type=int,
        default=0,
        help="instances created, and as many deleted, before each list page (default 0)",
    )
    parser.add_argument(
        "--list-total",
        action="store_true",
        help="list answers send the account's size as 'total' beside 'data' (undocumented)",
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=24 * 3600.0,
        help="seconds an issued token stays valid (default 86400)",
    )


def _latency(text: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected SECONDS or LOW,HIGH: {exc}") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError("expected SECONDS or LOW,HIGH: too many values")
    return (parts[0], parts[-1])


def make_simulator(args: argparse.Namespace) -> Simulator:
    """A Simulator from the parsed options; a value it refuses is a ``UsageError``."""
    try:
        return Simulator(
            host=args.host,
            port=args.port,
            token=args.fixed_token,
            instances=args.instances,
            seed=args.seed,
            speed=args.speed,
            fault_rate=args.fault_rate,
            fault_kinds=[k for k in args.fault_kinds.split(",") if k],
            latency=args.latency,
            retry_after=args.retry_after,
            user=args.user,
            access_key=args.access_key,
            secret_key=args.secret_key,
            token_ttl=args.token_ttl,
            page_cap=args.page_cap,
            churn=args.churn,
            list_total=args.list_total,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 after a signal, 1 if the port cannot be bound."""
    return serve(make_simulator(args), args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aiocontainer.simulator``: the same options and behaviour as ``simulate``."""
    from aiocontainer.cli._parser import Parser

    parser = Parser(prog=PROG, description=DESCRIPTION)
    add_options(parser)
    args = parser.parse_args(argv)
    try:
        sim = make_simulator(args)
    except UsageError as exc:
        parser.error(str(exc))
    return serve(sim, args)


def serve(sim: Simulator, args: argparse.Namespace) -> int:
    """Serve ``sim`` in the foreground; the exit status."""
    try:
        asyncio.run(_serve_until_signalled(sim, sys.stdout))
    except KeyboardInterrupt:  # pragma: no cover - only where signal handlers are unsupported
        pass
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    return 0


async def _serve_until_signalled(sim: Simulator, out: TextIO) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        async with sim:
            export = (
                f"export AIOCONTAINER_BASE_URL={shlex.quote(sim.base_url)} "
                f"AIOCONTAINER_TOKEN={shlex.quote(sim.token)}"
            )
            print(
                f"aiocontainer simulator: {len(sim.instance_ids)} instances, "
                f"speed {sim.speed:g}x, fault rate {sim.fault_rate:g}",
                f"base_url: {sim.base_url}",
                f"token: {sim.token}",
                export,
                *_login_lines(sim),
                *_listing_lines(sim),
                "Stop with Ctrl-C.",
                sep="\n",
                file=out,
                flush=True,
            )
            await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _login_lines(sim: Simulator) -> list[str]:
    """How to log in with keys: the user, the key pair, the regions and the hosts to use.

    The simulator prints its own generated secret key on purpose, as it prints its token: both
    exist only to be handed to a client under test.
    """
    regions = ", ".join(
        f"{r.name} ({r.cluster_id}{'' if r.available else ', unavailable'})" for r in sim.regions
    )
    return [
        f"user: {sim.user}",
        f"access_key: {sim.access_key}",
        f"secret_key: {sim.secret_key}",
        f"regions: {regions}",
        f"token, platform and AI hosts: {sim.url}",
        f"export SCNET_USER={shlex.quote(sim.user)} "
        f"SCNET_ACCESS_KEY={shlex.quote(sim.access_key)} "
        f"SCNET_SECRET_KEY={shlex.quote(sim.secret_key)}",
    ]


def _listing_lines(sim: Simulator) -> list[str]:
    """How to list the simulated instances: with the client, over HTTP, and the control view."""
    return [
        f"list its instances: aiocontainer list   (with the first export above; pages of at most "
        f"{sim.page_cap}, churn {sim.churn} per page{', with a total' if sim.list_total else ''})",
        f"  or: curl -H 'token: <token>' '{sim.url}/ai/openapi/v2/instance-service/task"
        "?start=0&limit=100'",
        f"ids and statuses (no token): curl {sim.url}/_sim/instances",
    ]
