"""The watcher's checkpoint file: load it, know when it is due, and write it atomically.

Rule 1: no asyncio here. ``CheckpointFile.take`` runs on the event loop and only copies what is to
        be saved; ``write_records`` does the encoding and the file work and is meant to run in a
        worker thread, so a large checkpoint never blocks the loop.
Rule 2: a reader sees the old file or the new one, never half of one: a temporary file in the same
        directory is written, synced and renamed over the old one.
Rule 3: a checkpoint that is missing or cannot be read is logged at WARNING and the watcher starts
        fresh; reading one never raises.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Final

from aiocontainer._diff import Snapshot
from aiocontainer._protocol import validate_instance_id
from aiocontainer.errors import InvalidInstanceIdError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointFile",
    "States",
    "encode",
    "load",
    "parse",
    "write_atomically",
    "write_states",
]

_log = logging.getLogger("aiocontainer")

CHECKPOINT_FORMAT: Final = "aiocontainer.watcher.checkpoint"
CHECKPOINT_VERSION: Final = 1
# ASCII output: every string, lone surrogates included, is written as escapes that read back equal.
_ENCODE: Final = json.JSONEncoder(ensure_ascii=True).encode

#: What is saved: the state of each id.
States = dict[str, Snapshot]


class CheckpointFile:
    """One checkpoint path, the states it carries for ids not watched, and whether it is dirty."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        #: Checkpointed ids that are not watched: kept in the file, used if they are added later.
        self.carried: dict[str, Snapshot] = load(self.path)
        self.dirty = False
        self.saved_at: float | None = None

    def mark_dirty(self) -> None:
        """Something to be saved has changed."""
        self.dirty = True

    def due(self, now: float, *, every: float) -> bool:
        """Whether a save is due: something changed and the last save is ``every`` seconds old."""
        return self.dirty and (self.saved_at is None or now - self.saved_at >= every)

    def take(self, watched: Iterable[tuple[str, Snapshot | None]], *, now: float) -> States:
        """What to write now (carried ids and watched ones); the file is clean from here on.

        Only references are copied (snapshots are immutable), so this is cheap on the loop;
        ``write_states`` does the rest in a worker thread.
        """
        self.dirty = False
        self.saved_at = now
        states = dict(self.carried)
        states.update((i, s) for i, s in watched if s is not None)
        return states

    def failed(self) -> None:
        """A save did not happen: try again at the next occasion."""
        self.dirty = True


def encode(states: Mapping[str, Snapshot]) -> bytes:
    """The file's bytes for ``states``: one record per line.

    Each small value goes through the C encoder on its own, so a worker thread doing this for
    50,000 ids hands the interpreter back to the event loop between records instead of holding
    it for one long call.
    """
    text = _ENCODE
    lines = ",\n".join(
        f' {text(i)}: {{"status": {text(s.status)}, "seq": {s.seq}}}' for i, s in states.items()
    )
    head = (
        f'{{"format": {text(CHECKPOINT_FORMAT)}, "version": {CHECKPOINT_VERSION}, "instances": {{'
    )
    return (head + ("\n" + lines + "\n" if lines else "") + "}}\n").encode("ascii")


def write_states(path: str, states: Mapping[str, Snapshot]) -> None:
    """Encode and write ``states`` to ``path`` atomically; blocking, for a worker thread."""
    write_atomically(path, encode(states))


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):
        # The rename itself is durable only once the directory is synced (not possible on Windows).
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load(path: str) -> dict[str, Snapshot]:
    """The states in a checkpoint; a missing or unreadable file logs a warning and gives none."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        _log.warning("checkpoint %s does not exist yet; starting fresh", path)
        return {}
    except OSError as exc:
        _log.warning("checkpoint %s cannot be read (%s); starting fresh", path, exc)
        return {}
    try:
        return parse(raw)
    except (ValueError, TypeError, KeyError, InvalidInstanceIdError) as exc:
        _log.warning("checkpoint %s is corrupt (%s); starting fresh", path, exc)
        return {}


def parse(raw: bytes) -> dict[str, Snapshot]:
    """The states in a checkpoint's bytes; raises on anything that is not a valid checkpoint."""
    document = json.loads(raw)
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not a watcher checkpoint")
    if document.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"unsupported checkpoint version {document.get('version')!r}")
    instances = document["instances"]
    if not isinstance(instances, dict):
        raise TypeError("instances is not an object")
    states: dict[str, Snapshot] = {}
    for instance_id, record in instances.items():
        validate_instance_id(instance_id)
        status = record["status"]
        seq = record["seq"]
        if not isinstance(status, str) or not status:
            raise TypeError(f"status of {instance_id} is not a non-empty string")
        if type(seq) is not int or seq < 0:
            raise TypeError(f"seq of {instance_id} is not a non-negative integer")
        states[instance_id] = Snapshot(status=status, seq=seq)
    return states
