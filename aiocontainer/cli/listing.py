"""``aiocontainer list``: every instance of the account, through the list endpoint.

The module is not named ``list``: as an attribute of the ``aiocontainer.cli`` package it would
shadow the builtin ``list`` inside the package's own ``__init__``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from aiocontainer import AiocontainerError, ContainerClient, InstanceDetail
from aiocontainer._protocol import TASK_TYPES
from aiocontainer.cli import _output
from aiocontainer.cli._config import base_url_of
from aiocontainer.cli._exits import EXIT_API, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from aiocontainer.cli._options import DOCUMENTED_STATUSES, instance_name, positive_int
from aiocontainer.cli._run import run_with_client

if TYPE_CHECKING:
    from aiocontainer.cli._parser import Commands


def register(commands: Commands) -> None:
    """Add ``list`` to the command line."""
    parser = commands.add(
        "list",
        "list every instance of the account",
        "List instances through the platform's list endpoint, page by page, each once. An "
        "entry that cannot be read is reported on stderr after what was listed before it; the "
        "exit code is then 4.",
        run=run,
        needs_rich=lambda args: args.output == "table",
        exit_codes=(EXIT_OK, EXIT_USAGE, EXIT_API, EXIT_INTERRUPTED),
    )
    parser.add_argument(
        "--status", choices=DOCUMENTED_STATUSES, help="only instances in this status"
    )
    parser.add_argument(
        "--task-type", choices=sorted(TASK_TYPES), help="only instances of this task type"
    )
    parser.add_argument(
        "--name",
        action="append",
        dest="names",
        type=instance_name,
        metavar="NAME",
        help="only the instance with this name (repeat for several)",
    )
    parser.add_argument(
        "--page-size",
        type=positive_int,
        default=100,
        metavar="N",
        help="entries asked for per request (default 100; the server may send fewer)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "jsonl"),
        default="table",
        help="table (default); json: a list of the API's own camelCase objects; jsonl: one "
        "object per line, printed as each page arrives",
    )


def run(args: argparse.Namespace) -> int:
    """List the instances."""
    return run_with_client(args, lambda client: list_command(args, client))


async def list_command(args: argparse.Namespace, client: ContainerClient) -> int:
    """Print every listed instance; a failure goes to stderr after what was listed."""
    listed: list[InstanceDetail] = []
    failure: AiocontainerError | None = None
    stream = client.list_instances(
        status=args.status, task_type=args.task_type, names=args.names, page_size=args.page_size
    )
    try:
        async for detail in stream:
            if args.output == "jsonl":
                _output.emit(_output.dumps(detail.to_api()))
            else:
                listed.append(detail)
    except AiocontainerError as exc:
        failure = exc
    finally:
        await stream.aclose()
    if args.output == "json":
        _output.emit(_output.dumps([detail.to_api() for detail in listed]))
    elif args.output == "table" and listed:
        out = _output.console(stderr=False)
        try:
            out.print(_output.detail_table(listed, width=out.width))
        except BrokenPipeError:
            raise _output.StdoutClosed from None
    if failure is not None:
        _output.print_error(failure.instance_id, failure, base_url=base_url_of(args))
        return EXIT_API
    return EXIT_OK
