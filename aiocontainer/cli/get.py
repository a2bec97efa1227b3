"""``aiocontainer get``: the detail of one or more instances."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aiocontainer import AiocontainerError, ContainerClient, InstanceDetail
from aiocontainer.cli import _output
from aiocontainer.cli._config import base_url_of, give_up_hint
from aiocontainer.cli._exits import EXIT_API, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
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
        needs_rich=lambda args: args.output == "table",
        exit_codes=(EXIT_OK, EXIT_USAGE, EXIT_API, EXIT_INTERRUPTED),
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

    def __init__(self, output: str, *, keyed: bool, out: Console | None) -> None:
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
            assert self.out is not None
            table = _output.detail_table(details, header=self.printed == 0, width=self.out.width)
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
    from_stdin = "-" in args.ids
    keyed = args.keyed or from_stdin or len(set(args.ids)) > 1
    printer = _Printer(
        args.output,
        keyed=keyed,
        out=_output.console(stderr=False) if args.output == "table" else None,
    )
    base_url = base_url_of(args)
    seen: set[str] = set()
    failed = looked_up = 0
    hint: str | None = None
    with _progress(None if from_stdin else len(set(args.ids))) as (advance, say):
        try:
            async for batch in id_batches(args.ids, read_stdin):
                fresh = [i for i in dict.fromkeys(batch) if i not in seen]
                if not fresh:
                    continue
                seen.update(fresh)
                results = await client.get_instances(fresh)
                advance(len(fresh))
                looked_up += len(fresh)
                details = [r for i in fresh if isinstance(r := results[i], InstanceDetail)]
                printer.batch(details)
                for instance_id in fresh:
                    result = results[instance_id]
                    if isinstance(result, AiocontainerError):
                        failed += 1
                        say(_output.error_line(instance_id, result, base_url=base_url))
                        hint = hint or give_up_hint(
                            result, reached=bool(details), base_url=base_url
                        )
        finally:
            printer.close()
    if failed:
        if hint and failed == looked_up:
            _output.print_err(f"aiocontainer: {hint}")
        _output.print_err(f"{failed} of {looked_up} lookups failed")
        return EXIT_API
    return EXIT_OK


@contextlib.contextmanager
def _progress(
    total: int | None,
) -> Iterator[tuple[Callable[[int], object], Callable[[str], object]]]:
    """``(advance, say)``: a progress bar on a terminal stderr, when rich is there and there is
    more than one id; ``say`` prints a line on stderr above the bar (or plainly, without one)."""
    if total == 1 or not sys.stderr.isatty() or importlib.util.find_spec("rich") is None:
        yield (lambda count: None), _output.print_err
        return
    from rich.progress import Progress

    err = _output.console(stderr=True)
    # stdout stays stdout: results are printed while the bar runs, and must not pass through it.
    with Progress(console=err, transient=True, redirect_stdout=False) as progress:
        bar = progress.add_task("looking up", total=total)

        def say(line: str) -> None:
            progress.console.print(line, markup=False, highlight=False, emoji=False)

        yield (lambda count: progress.advance(bar, count)), say
