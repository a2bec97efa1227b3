"""``aiocontainer get``: the detail of one or more instances."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING

from aiocontainer import AiocontainerError, ContainerClient, InstanceDetail
from aiocontainer.cli import _output
from aiocontainer.cli._config import check_ids, read_ids
from aiocontainer.cli._exits import EXIT_API, EXIT_OK
from aiocontainer.cli._run import run_with_client

if TYPE_CHECKING:
    from aiocontainer.cli._parser import Commands


def register(commands: Commands) -> None:
    """Add ``get`` to the command line."""
    parser = commands.add(
        "get",
        "show the detail of one or more instances",
        "Show instance details. Use '-' to read ids from stdin, one per line. Failed lookups are "
        "listed on stderr after the results; the exit code is 4 if any failed.",
        run=run,
    )
    parser.add_argument("ids", nargs="+", metavar="ID", help="instance ids, or - for stdin")
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "jsonl"),
        default="table",
        help="table (default); json: the API's own camelCase data, one object for one id or an "
        "object keyed by id for several; jsonl: one data object per line",
    )


def run(args: argparse.Namespace) -> int:
    """Read and check the ids, then look them up."""
    ids = read_ids(args.ids, sys.stdin)
    check_ids(ids)
    return run_with_client(args, lambda client: get(args, client, ids))


async def get(args: argparse.Namespace, client: ContainerClient, ids: list[str]) -> int:
    """Look ids up; results on stdout, failures on stderr after them."""
    out, err = _output.consoles()
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
                print(_output.dumps(details[unique[0]].to_api()))
        else:
            print(_output.dumps({i: d.to_api() for i, d in details.items()}))
    elif args.output == "jsonl":
        for detail in details.values():
            print(_output.dumps(detail.to_api()))
    elif details:
        out.print(_output.detail_table(details.values()))
    for instance_id, exc in failures.items():
        _output.print_error(err, instance_id, exc)
    if failures:
        err.print(f"{len(failures)} of {len(unique)} lookups failed", markup=False)
        return EXIT_API
    return EXIT_OK
