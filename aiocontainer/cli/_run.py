"""Running a command's coroutine: signals, the client's lifetime."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from aiocontainer import ContainerClient
from aiocontainer.cli._exits import EXIT_INTERRUPTED


def run_async(coro: Awaitable[int]) -> int:
    """Run ``coro`` in a fresh event loop; SIGINT/SIGTERM end it cleanly with exit 130."""
    return asyncio.run(interruptibly(coro))


async def interruptibly(coro: Awaitable[int]) -> int:
    """Run ``coro``; SIGINT/SIGTERM cancel it so every ``async with`` unwinds, then exit 130."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        if interrupted:
            return  # already stopping: a second Ctrl-C must not cut the cleanup short
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
            if interrupted:
                # Stopping already: later signals are ignored until the process exits, so the
                # rest of the shutdown (the checkpoint's last write included) runs to its end.
                signal.signal(signum, signal.SIG_IGN)


def run_with_client(
    args: argparse.Namespace, body: Callable[[ContainerClient], Awaitable[int]]
) -> int:
    """Run ``body`` with a client made from the options, closed whatever happens."""

    async def with_client() -> int:
        from aiocontainer.cli.regions import connect

        async with connect(args) as client:
            return await body(client)

    return run_async(with_client())
