"""The watcher's checkpoint file: load it, know when it is due, and write it atomically.

Rule 1: no asyncio here. ``CheckpointFile.take`` runs on the event loop and only copies what is to
        be saved; ``write_records`` does the encoding and the file work and is meant to run in a
        worker thread, so a large checkpoint never blocks the loop.
Rule 2: a reader sees the old file or the new one, never half of one: a temporary file in the same
        directory is written, synced and renamed over the old one.
Rule 3: a checkpoint that is missing or cannot be read is logged at WARNING and the watcher starts
        fresh; reading one never raises. A record that is bad on its own is skipped with a
        warning and never costs the others. Parsing goes through ``_json`` (bounded depth).
Rule 4: whatever the watcher holds is written so that it reads back equal: the file is ASCII with
        every string escaped (an empty status included), and ids are keyed in lower case. (The
        watcher never holds a status that is not valid text: it refuses one as a bad answer.)
Rule 5: an advisory lock beside the file keeps a second watcher off it (POSIX only).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

from aiocontainer._diff import Snapshot
from aiocontainer._json import JSONError
from aiocontainer._json import loads as json_loads
from aiocontainer._protocol import validate_instance_id
from aiocontainer._telemetry import log_fields
from aiocontainer.errors import CheckpointError, CheckpointLockedError, InvalidInstanceIdError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointFile",
    "CheckpointLock",
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


class Watched(Protocol):
    """A watched id's entry, as a checkpoint reads and fills it (``_schedule.Entry`` fits)."""

    state: Snapshot | None


class CheckpointFile:
    """One checkpoint path, the states it carries for ids not watched, and whether it is dirty."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._seen = self._identity()
        #: Checkpointed ids that are not watched: kept in the file, used if they are added later.
        self.carried: dict[str, Snapshot] = load(self.path)
        self.dirty = False
        self.saved_at: float | None = None
        self.lock = CheckpointLock(self.path)

    def _identity(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def newer(self) -> dict[str, Snapshot] | None:
        """The file's states if another writer replaced it since it was read, else None."""
        identity = self._identity()
        if identity is None or identity == self._seen:
            return None
        self._seen = identity
        return load(self.path)

    def claim(self, watched: Mapping[str, Watched]) -> None:
        """Lock the file for this watcher; ``CheckpointLockedError`` if another has it.

        A file another watcher wrote since it was read is read again, so its records are kept:
        those of ids not ``watched`` here (carried), and those of watched ids not observed yet.
        """
        if self.lock.held:
            return
        self.lock.acquire()
        for instance_id, state in (self.newer() or {}).items():
            entry = watched.get(instance_id)
            if entry is None:
                self.carried[instance_id] = state
            elif entry.state is None or entry.state.detail is None:
                entry.state = state

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
    """The states in a checkpoint; a missing or unusable file logs a warning and gives none.

    Records that are not valid on their own are skipped with one warning; the others are kept.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        _log.warning("checkpoint %s does not exist yet; starting fresh", path, extra=log_fields())
        return {}
    except OSError as exc:
        _log.warning(
            "checkpoint %s cannot be read (%s); starting fresh", path, exc, extra=log_fields()
        )
        return {}
    try:
        states, skipped = parse(raw, path=path)
    except CheckpointError as exc:
        _log.warning("checkpoint %s is corrupt (%s); starting fresh", path, exc, extra=log_fields())
        return {}
    if skipped:
        _log.warning(
            "checkpoint %s: %d corrupt record(s) skipped, %d kept (first: %s)",
            path,
            len(skipped),
            len(states),
            skipped[0],
            extra=log_fields(),
        )
    return states


def parse(raw: bytes, *, path: str = "<checkpoint>") -> tuple[dict[str, Snapshot], list[str]]:
    """The states in a checkpoint's bytes and why each skipped record was skipped.

    Raises ``CheckpointError`` when the document as a whole is not a checkpoint (bad JSON, too
    deep, wrong format or version); never any other exception. Ids are keyed in lower case;
    when two records name one id in different cases, the one with the higher ``seq`` wins.
    """
    try:
        document = json_loads(raw)
    except JSONError as exc:
        raise CheckpointError(f"not JSON: {exc}", path=path) from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError("not a watcher checkpoint", path=path)
    version = document.get("version")
    if type(version) is not int or version != CHECKPOINT_VERSION:
        raise CheckpointError("unsupported checkpoint version", path=path)
    instances = document.get("instances")
    if not isinstance(instances, dict):
        raise CheckpointError("instances is not an object", path=path)
    states: dict[str, Snapshot] = {}
    skipped: list[str] = []
    for instance_id, record in instances.items():
        problem = _record_problem(instance_id, record)
        if problem is not None:
            skipped.append(problem)
            continue
        key = instance_id.lower()
        state = Snapshot(status=record["status"], seq=record["seq"])
        known = states.get(key)
        if known is None or state.seq > known.seq:
            states[key] = state
    return states, skipped


def _record_problem(instance_id: str, record: object) -> str | None:
    """Why one record cannot be used, or None when it can."""
    try:
        validate_instance_id(instance_id)
    except InvalidInstanceIdError:
        return "an id that is not a valid instance id"
    if not isinstance(record, dict):
        return f"the record of {instance_id} is not an object"
    status = record.get("status")
    seq = record.get("seq")
    if not isinstance(status, str):
        return f"the status of {instance_id} is not a string"
    if type(seq) is not int or seq < 0:
        return f"the seq of {instance_id} is not a non-negative integer"
    return None


class CheckpointLock:
    """An advisory lock beside a checkpoint (``<path>.lock``), so two watchers never share one.

    It uses ``fcntl.flock`` on POSIX. Where ``fcntl`` does not exist (Windows) nothing is locked
    and two watchers on one file are not detected. The lock file is left in place: removing it
    would race with a watcher about to lock it.
    """

    def __init__(self, path: str) -> None:
        self.path = path + ".lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this watcher holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise ``CheckpointLockedError`` if another watcher holds it."""
        if self._fd is not None or fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            # The checkpoint cannot be written either; each save will report that.
            _log.warning(
                "checkpoint lock %s cannot be created (%s); not locked",
                self.path,
                exc,
                extra=log_fields(),
            )
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CheckpointLockedError(
                f"checkpoint {self.path[:-5]} is in use by another watcher (locked: {self.path})",
                path=self.path[:-5],
            ) from None
        self._fd = fd

    def release(self) -> None:
        """Let another watcher take the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
