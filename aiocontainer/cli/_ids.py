"""Instance ids from the command line and stdin, checked before anything is sent."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence

from aiocontainer import InvalidInstanceIdError
from aiocontainer.cli._exits import UsageError

MAX_LINE = 4096  # bytes: far more than any id, little enough to hold
CHUNK = 65536  # bytes asked of stdin at a time
BATCH = 500  # ids looked up together when they stream in from stdin
LINGER = 0.05  # seconds a batch waits for more ids before it is looked up as it is
WAITING_CHUNKS = 8  # chunks read ahead of the lookups, at most


def id_chunks(read: Callable[[int], bytes]) -> Iterator[list[str]]:
    """The ids in what ``read`` returns, one per line, as each read brings them.

    ``read(n)`` returns what is available (up to ``n`` bytes, at least one, ``b""`` at the end),
    like ``sys.stdin.buffer.read1``. Blank lines and ``#`` comments are skipped. A line longer
    than ``MAX_LINE`` bytes or not in UTF-8 is a ``UsageError`` naming its line number; no more
    than ``MAX_LINE + CHUNK`` bytes are ever held.
    """
    number = 0
    partial = b""

    def parse(raw: bytes) -> str:
        if len(raw) > MAX_LINE:
            raise UsageError(
                f"stdin line {number} is longer than {MAX_LINE} bytes; give one id per line"
            )
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UsageError(f"stdin line {number} is not UTF-8 text") from None

    while data := read(CHUNK):
        *lines, partial = (partial + data).split(b"\n")
        ids = []
        for raw in lines:
            number += 1
            line = parse(raw)
            if line and not line.startswith("#"):
                ids.append(line)
        if len(partial) > MAX_LINE:
            number += 1
            parse(partial)
        if ids:
            yield ids
    if partial:
        number += 1
        line = parse(partial)
        if line and not line.startswith("#"):
            yield [line]


def read_ids(raw: Sequence[str], read: Callable[[int], bytes]) -> list[str]:
    """Expand '-' into the ids read from stdin (see ``id_chunks``); at least one id in all."""
    ids: list[str] = []
    for item in raw:
        if item == "-":
            for chunk in id_chunks(read):
                ids.extend(chunk)
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


async def id_batches(raw: Sequence[str], read: Callable[[int], bytes]) -> AsyncIterator[list[str]]:
    """The ids of ``raw`` in order, '-' streaming stdin, in checked batches of at most ``BATCH``.

    Ids given as arguments are all checked before the first batch. Ids from stdin are read by a
    worker thread and handed over as they arrive: a batch ends at ``BATCH`` ids, at the end of
    stdin, or when no id came for ``LINGER`` seconds, so a slow producer sees its ids looked up
    at once, and only a few chunks of stdin wait in memory. Each batch is checked before it is
    yielded: an invalid id stops the stream with a ``UsageError`` before its batch is sent (a
    piped file's ids arrive together, so a short file with a bad id sends nothing).
    """
    check_ids(item for item in raw if item != "-")
    given = False
    pending: list[str] = []
    for item in raw:
        if item != "-":
            given = True
            pending.append(item)
            if len(pending) == BATCH:
                yield pending
                pending = []
            continue
        if pending:
            yield pending
            pending = []
        async for batch in _stream(read):
            check_ids(batch)
            given = True
            yield batch
    if pending:
        yield pending
    if not given:
        raise UsageError("no instance ids given")


def read_stdin(size: int) -> bytes:
    """What stdin has now, up to ``size`` bytes (``b""`` at its end); one read at most."""
    stream = sys.stdin.buffer
    assert isinstance(stream, io.BufferedReader)
    return stream.read1(size)


_END = object()


async def _stream(read: Callable[[int], bytes]) -> AsyncIterator[list[str]]:
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[object] = asyncio.Queue()
    room = threading.Semaphore(WAITING_CHUNKS)

    def hand_over(item: object) -> bool:
        try:
            loop.call_soon_threadsafe(arrived.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody wants more ids
            return False
        return True

    def pump() -> None:
        try:
            for chunk in id_chunks(read):
                room.acquire()
                if not hand_over(chunk):
                    return
        except UsageError as exc:
            hand_over(exc)
        hand_over(_END)

    # A daemon thread: a read blocked on a stdin that never closes cannot hold up the exit.
    threading.Thread(target=pump, name="aiocontainer-stdin", daemon=True).start()
    waiting: list[str] = []
    ended = False
    while not ended or waiting:
        while len(waiting) < BATCH and not ended:
            try:
                if waiting:
                    item = await asyncio.wait_for(arrived.get(), LINGER)
                else:
                    item = await arrived.get()
            except asyncio.TimeoutError:
                break  # nothing more for now: look up what has arrived
            if item is _END:
                ended = True
            elif isinstance(item, UsageError):
                raise item
            else:
                assert isinstance(item, list)
                waiting.extend(item)
                room.release()
        batch, waiting = waiting[:BATCH], waiting[BATCH:]
        if batch:
            yield batch
