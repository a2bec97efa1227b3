"""``aiocontainer get``: the detail of one or more instances."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiocontainer import AiocontainerError, ContainerClient, InstanceDetail
from aiocontainer.cli import _output
from aiocontainer.cli._exits import EXIT_API, EXIT_OK
from aiocontainer.cli._ids import check_ids, id_batches, read_stdin
from aiocontainer.cli._run import run_with_client

if TYPE_CHECKING:
    from rich.console import Console

    from aiocontainer.cli._parser import Commands


def register(commands: Commands) -> None:
    """Add ``get`` to the command line."""
    parser = commands.add(
        "get",
        "show the detail of one or more instances",
        "Show instance details. Use '-' to read ids from stdin, one per line: they are looked "
        "up as they arrive, in batches, and results are printed batch by batch. Failed lookups "
        "are listed on stderr after the results of their batch; the exit code is 4 if any "
        "failed.",
        run=run,
    )
    parser.add_argument("ids", nargs="+", metavar="ID", help="instance ids, or - for stdin")
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "jsonl"),
        default="table",
        help="table (default); json: the API's own camelCase data, one object for one id given "
        "as an argument, else an object keyed by id; jsonl: one data object per line",
    )
    parser.add_argument(
        "--keyed",
        action="store_true",
        help="with -o json, an object keyed by id even for one id (always so with -)",
    )


def run(args: argparse.Namespace) -> int:
    """Check the ids given as arguments, then look everything up."""
    check_ids(item for item in args.ids if item != "-")
    return run_with_client(args, lambda client: get(args, client))


class _Printer:
    """Prints results batch by batch in the chosen format."""

    def __init__(self, output: str, *, keyed: bool, out: Console) -> None:
        self.output = output
        self.keyed = keyed
        self.out = out
        self.printed = 0

    def batch(self, details: list[InstanceDetail]) -> None:
        if self.output == "jsonl" or (self.output == "json" and not self.keyed):
            for detail in details:
                _output.emit(_output.dumps(detail.to_api()))
        elif self.output == "json":
            for detail in details:
                # One entry of the keyed object: the object's text without its braces.
                entry = _output.dumps({detail.id: detail.to_api()})[1:-1]
                _write(("{" if self.printed == 0 else ", ") + entry)
                self.printed += 1
        elif details:
            table = _output.detail_table(details, header=self.printed == 0)
            try:
                self.out.print(table)
            except BrokenPipeError:
                raise _output.StdoutClosed from None
            self.printed += len(details)

    def close(self) -> None:
        if self.output == "json" and self.keyed:
            _output.emit("{}" if self.printed == 0 else "}")


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
    except BrokenPipeError:
        raise _output.StdoutClosed from None


async def get(args: argparse.Namespace, client: ContainerClient) -> int:
    """Look ids up batch by batch; results on stdout, failures on stderr after them."""
    out, err = _output.consoles()
    from_stdin = "-" in args.ids
    keyed = args.keyed or from_stdin or len(set(args.ids)) > 1
    printer = _Printer(args.output, keyed=keyed, out=out)
    seen: set[str] = set()
    failed = looked_up = 0
    with _progress(err, None if from_stdin else len(set(args.ids))) as advance:
        try:
            async for batch in id_batches(args.ids, read_stdin):
                fresh = [i for i in dict.fromkeys(batch) if i not in seen]
                if not fresh:
                    continue
                seen.update(fresh)
                results = await client.get_instances(fresh)
                advance(len(fresh))
                looked_up += len(fresh)
                printer.batch([r for i in fresh if isinstance(r := results[i], InstanceDetail)])
                for instance_id in fresh:
                    result = results[instance_id]
                    if isinstance(result, AiocontainerError):
                        failed += 1
                        _output.print_error(err, instance_id, result)
        finally:
            printer.close()
    if failed:
        err.print(f"{failed} of {looked_up} lookups failed", markup=False)
        return EXIT_API
    return EXIT_OK


@contextlib.contextmanager
def _progress(err: Console, total: int | None) -> Iterator[Any]:
    """A progress bar on a terminal stderr when there is more than one id; else nothing."""
    if not err.is_terminal or total == 1:
        yield lambda count: None
        return
    from rich.progress import Progress

    # stdout stays stdout: results are printed while the bar runs, and must not pass through it.
    with Progress(console=err, transient=True, redirect_stdout=False) as progress:
        bar = progress.add_task("looking up", total=total)
        yield lambda count: progress.advance(bar, count)
