"""What a watcher knows of its instances, and how each poll's outcome changes it.

Rule 1: a successful poll goes through ``_diff.advance``: the change it yields (if any) is
        published, the waits on that id see the detail, and the checkpoint is marked dirty only
        when the saved status or ``seq`` moved.
Rule 2: a failed poll changes nothing that is known: the error is reported and only that id backs
        off; ``gone_after`` "invalid parameter" answers in a row drop the id as gone.
Rule 3: a client that raises something other than an ``AiocontainerError`` is a failed poll too;
        its traceback is logged at ERROR.
Rule 4: the checkpoint is saved by one task at a time, its file work in a worker thread; any
        failure to save (not only ``OSError``) is reported and tried again later; polling goes on.
Rule 5: an instance is keyed by its id in lower case (platform ids are lower-case hex), and the
        changes emitted name it by that key, whatever id the answer's body holds.
Rule 6: a list page and a detail lookup in flight are weighed, never raced: a page seen while
        a lookup runs waits for its answer, and what it showed is reported before that answer
        when it lies on the usual path between (``_sweep.weigh``), else confirmed by another lookup.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Protocol, cast

from aiocontainer._checkpoint import CheckpointFile, write_states
from aiocontainer._delivery import Delivery, log
from aiocontainer._diff import Snapshot, advance
from aiocontainer._health import HealthMonitor
from aiocontainer._lifecycle import Lifecycle, Phase
from aiocontainer._paging import DetailCache
from aiocontainer._rotation import Rotation
from aiocontainer._schedule import Entry, SchedulePolicy, after_failure, after_success
from aiocontainer._slots import Slots
from aiocontainer._sweep import Listed, classify, weigh
from aiocontainer._telemetry import log_fields
from aiocontainer._waits import WaitRegistry
from aiocontainer.errors import (
    AiocontainerError,
    InstanceGoneError,
    InvalidParameterError,
    ResponseError,
)
from aiocontainer.models import InstanceDetail

__all__ = ["PollingClient", "Tracker"]

#: Runs a blocking call in a worker thread (replaceable in tests to run it inline).
in_thread: Callable[..., Awaitable[None]] = asyncio.to_thread


class PollingClient(Protocol):
    """What the watcher needs of a client: ``ContainerClient`` fits, and so does a test fake."""

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        """Return the current detail of one instance."""
        ...


def _refusal(instance_id: str, detail: InstanceDetail) -> ResponseError | None:
    """Why a detail cannot be taken as an observation, or None when it can.

    A status that is not valid text (a lone surrogate) could be neither saved nor compared
    reliably; it is a bad answer, like a body that does not parse.
    """
    try:
        detail.status.encode("utf-8")
    except UnicodeEncodeError:
        return ResponseError("the status is not valid text", instance_id=instance_id)
    return None


def _lookup_with(
    client: PollingClient, cache: DetailCache
) -> Callable[[str], Awaitable[InstanceDetail]]:
    """``client.get_instance``, given ``cache`` when it takes one (``ContainerClient`` does).

    A client with a ``_checked_lookup(cache)`` (``ContainerClient``) gives the lookup itself: the
    watcher checked every id it holds when it was added, so it need not be checked again. It
    gives None when a subclass replaced ``get_instance``, which is then called as any other.
    """
    checked = getattr(client, "_checked_lookup", None)
    lookup = None if checked is None else checked(cache)
    if lookup is not None:
        return cast(Callable[[str], Awaitable[InstanceDetail]], lookup)
    get = client.get_instance
    try:
        takes = "cache" in inspect.signature(get).parameters
    except (TypeError, ValueError):  # no signature to read: call it as the protocol says
        takes = False
    if not takes:
        return get
    return functools.partial(cast(Callable[..., Awaitable[InstanceDetail]], get), cache=cache)


class Passes(Protocol):
    """The list sweep, as the tracker starts and stops it."""

    def ensure(self) -> None:
        """Start the passes unless they run."""
        ...

    async def halt(self) -> None:
        """Cancel the passes and wait until they are gone."""
        ...

    @property
    def account_listed(self) -> bool:
        """Whether a pass since the last start listed the whole account (``watch_all``)."""
        ...


def _log_client_bug(instance_id: str, exc: Exception) -> None:
    """A poll raised what is not an ``AiocontainerError``: a bug in the client, not a failed
    lookup. Its traceback is logged, and the watcher keeps watching."""
    log.error(
        "polling instance %s raised %s, which is not an AiocontainerError",
        instance_id,
        type(exc).__name__,
        exc_info=exc,
        extra=log_fields(instance_id=instance_id),
    )


class Tracker:
    """The watched entries, their rotation, and what each poll's outcome does to them."""

    def __init__(
        self,
        client: PollingClient,
        policy: SchedulePolicy,
        *,
        concurrency: int,
        emit_initial: bool,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rand: Callable[[], float],
        now: Callable[[], datetime],
        life: Lifecycle,
        delivery: Delivery,
        waits: WaitRegistry,
        checkpoint: CheckpointFile | None,
        on_settled: Callable[[], None],
        health: HealthMonitor,
    ) -> None:
        self._client = client
        self.policy = self._policy = policy
        self.clock = clock
        self.sleep = sleep
        self._slots = Slots(concurrency)
        self._emit_initial = emit_initial
        self._clock = clock
        self._now = now
        self._life = life
        self._delivery = delivery
        self._waits = waits
        self.checkpoint = checkpoint
        self.on_settled = on_settled
        self.health = health
        self._saving: asyncio.Task[None] | None = None
        #: What polls and list passes read: an answer or page that did not change is not read again.
        self.cache = DetailCache()
        self._get = _lookup_with(client, self.cache)
        #: Ids not yet seen terminal; when it empties, every watched id is terminal.
        self.unsettled: set[str] = set()
        self._sweeping = False
        #: Every instance the list shows is watched (``watch_all``) but these, removed by hand.
        self.watch_all = False
        self.excluded: set[str] = set()
        #: The list sweep, when the client can list and the sweep mode allows it.
        self.sweeper: Passes | None = None
        self.rotation: Rotation[InstanceDetail | Exception] = Rotation(
            policy,
            clock=clock,
            sleep=sleep,
            rand=rand,
            fetch=self._fetch,
            apply=self._apply,
            wanted=self._wanted,
            tick=self.tick,
        )

    @property
    def sweeping(self) -> bool:
        """Whether a list sweep observes the watched ids now (the rotation then rests)."""
        return self._sweeping

    @sweeping.setter
    def sweeping(self, value: bool) -> None:
        self._sweeping = value
        self.rotation.pause(value)

    @property
    def settled(self) -> bool:
        """Every watched id is terminal, and with ``watch_all`` a whole pass has listed them."""
        whole = self.sweeper is not None and self.sweeper.account_listed
        return not self.unsettled and (whole or not self.watch_all)

    @property
    def entries(self) -> Mapping[str, Entry]:
        """The watched entries by id, in the order they were added."""
        return self.rotation.entries

    def snapshot(self) -> Mapping[str, InstanceDetail]:
        """The last detail seen of each watched id that has been polled successfully."""
        return types.MappingProxyType(
            {
                instance_id: entry.state.detail
                for instance_id, entry in self.rotation.entries.items()
                if entry.state is not None and entry.state.detail is not None
            }
        )

    # -- what is watched -----------------------------------------------------------------------

    def add(self, ids: Iterable[str]) -> None:
        """Watch ids not watched yet, starting from their checkpointed state if there is one."""
        carried = {} if self.checkpoint is None else self.checkpoint.carried
        fresh = self.rotation.add(ids, lambda i: carried.pop(i, None))
        self.excluded.difference_update(entry.instance_id for entry in fresh)
        for entry in fresh:
            self.unsettled.add(entry.instance_id)
        self.health.added(entry.instance_id for entry in fresh)

    def remove(self, instance_id: str) -> None:
        """Stop watching one id and forget it, in the checkpoint too; ends its waits. With
        ``watch_all`` it stays unwatched when the list shows it again, until it is added."""
        if self.watch_all:
            self.excluded.add(instance_id)
        checkpoint = self.checkpoint
        if checkpoint is not None and checkpoint.carried.pop(instance_id, None) is not None:
            checkpoint.mark_dirty()
        entry = self.rotation.entries.get(instance_id)
        if entry is not None:
            self._forget(entry)
            self._waits.end(instance_id, why="was removed from the watch")

    def _forget(self, entry: Entry) -> None:
        self.rotation.discard(entry)
        self.cache.forget(entry.instance_id)
        self.unsettled.discard(entry.instance_id)
        self.health.forgotten(entry.instance_id)
        if self.checkpoint is not None:
            self.checkpoint.mark_dirty()

    # -- polls and their outcomes --------------------------------------------------------------

    def _wanted(self, entry: Entry) -> bool:
        """Whether this id is polled at all now; dormant and unwanted ids cost no wake-up."""
        if entry.instance_id in self._waits:
            return True
        return self._life.phase is Phase.RUNNING and not entry.dormant and not self._sweeping

    def due_count(self) -> int:
        """How many ids a round of the rotation would poll by detail (the dormant ones not)."""
        return sum(1 for entry in self.rotation.entries.values() if not entry.dormant)

    def report_failure(self, instance_id: str | None, exc: Exception) -> None:
        """Hand an error met outside a poll (a list page, an entry) to ``on_error``."""
        self._delivery.report(instance_id, exc)

    # -- what a list sweep saw -----------------------------------------------------------------

    def listed(self, details: Iterable[InstanceDetail], *, initial: bool) -> None:
        """Take in the entries a list page showed (``initial``: during the first pass).

        An unknown id is the first observation of an instance new to ``watch_all``, reported
        even without ``emit_initial`` once the first pass is over; a known status is an
        observation and nothing more; a different one is confirmed by a detail lookup.
        """
        entries, at = self.rotation.entries, self._now()
        newly_settled = False
        for detail in details:
            key = detail.id.lower()
            entry = entries.get(key)
            if entry is None:
                if not self.watch_all or key in self.excluded:
                    continue
                self.add([key])
                entry = entries[key]
                if entry.state is None:
                    self._apply(entry, detail, emit_initial=self._emit_initial or not initial)
                    continue
            seen = classify(entry.state, detail)
            if seen is Listed.SAME and (known := entry.state) is not None:
                if detail is not known.detail:  # the same object when the entry did not change
                    entry.state = Snapshot(status=known.status, seq=known.seq, detail=detail)
                terminal = detail.is_terminal
                after_success(entry, self._policy, terminal=terminal)
                self.health.observed(key, at=at, status=detail.status, terminal=terminal)
                self._waits.observe(key, detail)
                if terminal and key in self.unsettled:  # a checkpoint's terminal status, listed
                    self.unsettled.discard(key)
                    newly_settled = True
            elif entry.poll is None:
                if seen is Listed.FIRST:
                    self._apply(entry, detail)
                else:
                    entry.listed = (detail,)  # the lookup launched below began after this page
                    self.look_up(key)
            else:
                # The poll in flight began before this page, and its answer may be older or
                # newer than the page: the two are weighed when it comes. A status listed again
                # while a lookup runs keeps its first listing.
                shown = entry.listed_later or entry.listed
                if not shown or shown[-1].status != detail.status:
                    entry.listed_later = (*entry.listed_later, detail)
        if newly_settled:
            self.on_settled()

    def look_up(self, instance_id: str) -> None:
        """Poll one id by detail now, unless a poll of it is in flight (or it is not watched)."""
        entry = self.rotation.entries.get(instance_id.lower())
        if entry is None and self.watch_all and instance_id.lower() not in self.excluded:
            self.add([instance_id.lower()])
            entry = self.rotation.entries[instance_id.lower()]
        if entry is not None and entry.poll is None:
            self.rotation.launch(entry)

    async def _fetch(self, instance_id: str) -> InstanceDetail | Exception:
        self.health.polled(instance_id)
        slots = self._slots
        try:
            if not slots.take_now():
                await slots.take()
            try:
                return await self._get(instance_id)
            finally:
                slots.give()
        except AiocontainerError as exc:
            return exc
        except Exception as exc:
            _log_client_bug(instance_id, exc)
            return exc

    def _apply(
        self,
        entry: Entry,
        outcome: InstanceDetail | Exception,
        *,
        emit_initial: bool | None = None,
    ) -> None:
        listed, later = entry.listed, entry.listed_later
        entry.listed = entry.listed_later = ()
        if isinstance(outcome, InstanceDetail):
            state = entry.state
            # The detail kept from the last poll (a cache gave it back) was accepted then.
            accepted = state is not None and state.detail is outcome
            refused = None if accepted else _refusal(entry.instance_id, outcome)
            if refused is None:
                if listed or later:  # what the list showed on the way is reported first
                    known = None if state is None else state.status
                    passed, later = weigh(known, outcome.status, listed, later)
                    for shown in passed:
                        self._observed(entry, shown, emit_initial=emit_initial)
                    listed = ()
                self._observed(entry, outcome, emit_initial=emit_initial)
            else:
                self._failed(entry, refused)
        else:
            self._failed(entry, outcome)
        key = entry.instance_id
        if self.rotation.entries.get(key) is not entry:
            return  # the id was dropped meanwhile
        for shown in listed:
            # The list showed the new status and its detail lookup failed: the status was seen
            # all the same, so the listed entry stands in for the detail (it is not lost).
            self._observed(entry, shown)
        if later:
            # The list showed a status after this poll began: confirm it with another lookup.
            entry.listed = later
            self.look_up(key)

    def _observed(
        self, entry: Entry, detail: InstanceDetail, *, emit_initial: bool | None = None
    ) -> None:
        before = entry.state
        observed_at = self._now()
        entry.state, change = advance(
            before,
            detail,
            observed_at=observed_at,
            emit_initial=self._emit_initial if emit_initial is None else emit_initial,
            instance_id=entry.instance_id,
        )
        terminal = detail.is_terminal
        self.health.observed(
            entry.instance_id, at=observed_at, status=detail.status, terminal=terminal
        )
        after_success(entry, self._policy, terminal=terminal)
        if terminal:
            self.unsettled.discard(entry.instance_id)
        else:
            self.unsettled.add(entry.instance_id)
        moved = before is None or (before.status, before.seq) != (detail.status, entry.state.seq)
        if moved and self.checkpoint is not None:
            self.checkpoint.mark_dirty()
        if change is not None:
            self._delivery.publish(change)
        self._waits.observe(entry.instance_id, detail)
        self.on_settled()

    def _failed(self, entry: Entry, exc: Exception) -> None:
        if after_failure(entry, self._policy, invalid=isinstance(exc, InvalidParameterError)):
            gone = InstanceGoneError(entry.instance_id, attempts=entry.invalid)
            gone.__cause__ = exc
            self._forget(entry)
            self._waits.end(entry.instance_id, gone)
            self._delivery.report(entry.instance_id, gone)
            self.on_settled()
            return
        self._delivery.report(entry.instance_id, exc)
        if self.sweeping and isinstance(exc, InvalidParameterError):
            # The list no longer shows it and the platform says no such id: confirm at once,
            # up to gone_after answers, rather than one lookup per pass.
            self.look_up(entry.instance_id)

    # -- checkpoint ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Periodic bookkeeping: a due checkpoint save, a staleness check (rotation or sweep)."""
        self.maybe_save()
        if self._life.phase is Phase.RUNNING:
            self.health.check()

    def claim(self) -> None:
        """Lock the checkpoint for this watcher (``CheckpointFile.claim``)."""
        if self.checkpoint is not None:
            self.checkpoint.claim(self.rotation.entries)

    def release(self) -> None:
        """Let another watcher use the checkpoint (this one has saved and stopped)."""
        if self.checkpoint is not None:
            self.checkpoint.lock.release()

    def maybe_save(self) -> None:
        """Start a save if one is due and none is under way."""
        checkpoint = self.checkpoint
        if checkpoint is None or self._saving is not None:
            return
        if checkpoint.due(self._clock(), every=self._policy.interval):
            self._saving = asyncio.get_running_loop().create_task(self._save(checkpoint))

    async def _save(self, checkpoint: CheckpointFile) -> None:
        try:
            watched = [(i, e.state) for i, e in self.rotation.entries.items()]
            states = checkpoint.take(watched, now=self._clock())
            await in_thread(write_states, checkpoint.path, states)
        except Exception as exc:  # any failure to save: reported, retried, polling goes on
            checkpoint.failed()
            self._delivery.report(None, exc)
        finally:
            self._saving = None

    async def flush(self) -> None:
        """Let a save under way finish, then save what is still dirty."""
        if self._saving is not None:
            await asyncio.gather(asyncio.shield(self._saving), return_exceptions=True)
        if self.checkpoint is not None and self.checkpoint.dirty and self._saving is None:
            await self._save(self.checkpoint)

    def start(self, *, sweep: bool) -> None:
        """Start the rotation, and the list sweep with ``sweep`` (only while running)."""
        self.rotation.ensure()
        if sweep and self.sweeper is not None:
            self.sweeper.ensure()

    async def halt(self) -> None:
        """Stop the sweep, the rotation and every poll, then bring the checkpoint up to date."""
        if self.sweeper is not None:
            await self.sweeper.halt()
        await self.rotation.halt()
        await self.flush()
