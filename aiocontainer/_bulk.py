"""Many lookups at once: bounded fan-out, outcomes per id, results as they complete.

Rule 1: each distinct id is looked up once, in first-seen order; an invalid id gets its
        ``InvalidInstanceIdError`` and is never handed to the lookup.
Rule 2: a lookup failure (an ``AiocontainerError``) is that id's outcome and never stops the
        others; anything else is a bug: it cancels the remaining lookups and propagates.
Rule 3: no task outlives the call (or the closing of the generator).

Nothing here knows HTTP: the client hands in its lookup of one validated id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TypeAlias

from aiocontainer._protocol import validate_instance_id
from aiocontainer.errors import AiocontainerError, InvalidInstanceIdError
from aiocontainer.models import InstanceDetail

__all__ = ["Lookup", "Result", "as_completed", "lookup_all", "sort_ids"]

#: What bulk lookups give per id: the detail, or the error that id ended with.
Result: TypeAlias = InstanceDetail | AiocontainerError
#: The lookup of one validated id.
Lookup: TypeAlias = Callable[[str], Awaitable[InstanceDetail]]


def sort_ids(
    ids: Iterable[str],
) -> tuple[list[str], list[str], list[tuple[str, InvalidInstanceIdError]]]:
    """Distinct ids in first-seen order, those that may be sent, and the refused ones."""
    order = list(dict.fromkeys(ids))
    valid, refused = [], []
    for instance_id in order:
        try:
            valid.append(validate_instance_id(instance_id))
        except InvalidInstanceIdError as exc:
            refused.append((instance_id, exc))
    return order, valid, refused


async def lookup_all(
    ids: list[str], limit: int, lookup: Lookup, deliver: Callable[[str, Result], None]
) -> None:
    """Look ``ids`` up with at most ``limit`` in flight, handing each outcome to ``deliver``."""
    todo = iter(ids)

    async def worker() -> None:
        for instance_id in todo:
            try:
                detail = await lookup(instance_id)
            except AiocontainerError as exc:
                deliver(instance_id, exc)
            else:
                deliver(instance_id, detail)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(ids)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def as_completed(
    ids: list[str], limit: int, lookup: Lookup
) -> AsyncGenerator[tuple[str, Result], None]:
    """Yield ``(id, outcome)`` for ``ids`` as each lookup finishes."""
    if not ids:
        return
    results: asyncio.Queue[tuple[str, Result]] = asyncio.Queue()
    run = asyncio.ensure_future(
        lookup_all(ids, limit, lookup, lambda i, r: results.put_nowait((i, r)))
    )
    try:
        for _ in range(len(ids)):
            if results.empty():
                getter = asyncio.ensure_future(results.get())
                await asyncio.wait([getter, run], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    run.result()  # the lookups stopped early: raise what stopped them
                yield getter.result()
            else:
                yield results.get_nowait()
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
