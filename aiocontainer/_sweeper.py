"""The list sweep: once per interval, one pass over the list, its pages spread over the interval.

Rule 1: a pass's pages are spread over the interval (as many slots as the last pass had pages),
        never sent in a burst; the next pass starts one interval after the last one started.
Rule 2: what a page shows goes through the tracker (``Tracker.listed``), so changes, checkpoints,
        callbacks and waits behave as in detail mode; a status that differs from the last known
        one is confirmed by a detail lookup, whose detail is what the change carries.
Rule 3: a page that fails after the client's retries is reported and asked for again at the
        next slot, up to ``PAGE_RETRIES`` times; then the pass ends and every watched id it did
        not see, those on that page included, is looked up by detail. An entry that does not
        parse is reported and its instance looked up by detail. A status the list showed is never
        lost: if the detail lookup that confirms it fails, the listed entry stands in for it, and
        statuses listed while an older lookup runs are weighed against its answer
        (``_sweep.weigh``): reported before it when they lie on the path between, else
        confirmed by another lookup.
Rule 4: the passes hand the client the tracker's ``DetailCache``: a page or an entry that has not
        changed since the last pass is not read again. It holds a detail for every instance the
        list shows, watched or not, and lets go of those a complete pass no longer shows.
Rule 5: in ``auto`` mode each interval picks the cheaper way: a pass (its page count known from
        the last one, or from one probe page) or one detail lookup per due id. The rotation
        polls by detail whenever no pass runs; waits always poll by detail.
Rule 6: with ``watch_all`` the account is known only once a pass since the last start has
        listed it whole (one that was not cut short): before that, no set of instances seen
        counts as all terminal (``account_listed``) or as synced, and the end of that pass is
        when the watcher may first find it so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, cast

from aiocontainer._delivery import log
from aiocontainer._paging import DetailCache
from aiocontainer._protocol import LIST_PATH
from aiocontainer._schedule import SchedulePolicy
from aiocontainer._sweep import (
    MODES,
    PAGE_SIZE,
    ListedPage,
    SweepPass,
    probe_offset,
    sweep_is_cheaper,
)
from aiocontainer._telemetry import log_fields
from aiocontainer._tracker import Tracker
from aiocontainer.errors import AiocontainerError

__all__ = ["MIN_GUESS", "PAGE_RETRIES", "ListingClient", "Sweeper", "attach_sweeper"]

#: Pages per interval of a first pass, whose length is not known yet.
MIN_GUESS: Final = 20
#: Times a pass asks again for a page that failed after the client's own retries.
PAGE_RETRIES: Final = 2


class ListingClient(Protocol):
    """What the sweep needs of a client: ``ContainerClient.list_page`` fits."""

    async def list_page(
        self, *, start: int, limit: int, cache: DetailCache | None = None
    ) -> ListedPage:
        """One page of the list endpoint (``cache``: details built from earlier pages)."""
        ...


class Sweeper:
    """Runs the passes of a watcher in list (or auto) mode."""

    def __init__(
        self,
        tracker: Tracker,
        client: ListingClient,
        policy: SchedulePolicy,
        *,
        mode: str,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._tracker = tracker
        self._client = client
        self._policy = policy
        self._mode = mode
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        #: Pages of the last complete pass: what a pass of the whole account costs.
        self.pages: int | None = None
        #: Passes completed or cut short since the watcher was made.
        self.passes = 0
        self._probed_for = 0
        self._listed = False  # since the passes last started: see ``account_listed``

    def ensure(self) -> None:
        """Start the passes unless they run."""
        if self._mode == "list" or self._tracker.watch_all:
            self._tracker.sweeping = True  # from the start: the rotation must not poll first
        if self._task is None:
            self._listed = False  # instances may have come while stopped: list them all again
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="aiocontainer-watcher-sweep"
            )

    @property
    def account_listed(self) -> bool:
        """Whether a pass since the passes last started has listed the whole account: one that
        ended on its last page, not one cut short by a page that kept failing. Before it,
        ``watch_all`` does not know every instance, so a watch of only terminal ones (or of none
        yet) is not all terminal."""
        return self._listed

    async def halt(self) -> None:
        """Cancel the passes and wait until they are gone; the rotation polls by detail again."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._tracker.sweeping = False

    async def _run(self) -> None:
        started = self._clock()
        while True:
            sweeping = await self._choose()
            self._tracker.sweeping = sweeping
            if sweeping:
                await self._pass(started)
            started += self._policy.interval
            await self._sleep_until(started)
            now = self._clock()
            if now - started > self._policy.interval:
                started = now  # far behind: start afresh rather than run passes back to back

    async def _choose(self) -> bool:
        """Whether this interval sweeps."""
        if self._mode == "list" or self._tracker.watch_all:
            return True
        due = self._tracker.due_count()
        if self.pages is not None:
            return sweep_is_cheaper(due=due, pages=self.pages)
        offset = probe_offset(due=due)
        if offset is None or due <= 2 * self._probed_for:
            return False  # probed already for about this many ids: still not worth a pass
        self._probed_for = due
        self._tracker.health.counters.pages += 1
        try:
            page = await self._client.list_page(start=offset, limit=1)
        except Exception as exc:  # a failed probe: stay on detail, say why
            self._tracker.report_failure(None, exc)
            return False
        return page.count == 0

    async def _pass(self, started: float) -> None:
        """One pass over the list, then detail lookups for the watched ids it did not see."""
        sweep = SweepPass(page_size=PAGE_SIZE)
        self._tracker.health.counters.sweeps += 1
        spacing = self._policy.interval / self._expected_pages()
        first = self.pages is None  # until one pass listed all: what is found was there before
        slot = failures = 0
        cache = self._tracker.cache  # the polls' too: a page or entry unchanged is not read again
        while (request := sweep.next_request()) is not None:
            await self._sleep_until(started + slot * spacing)
            self._tracker.tick()  # the rotation rests while sweeping: saves and checks go here
            slot += 1
            start, limit = request
            self._tracker.health.counters.pages += 1
            try:
                page = await self._client.list_page(start=start, limit=limit, cache=cache)
            except Exception as exc:
                if not isinstance(exc, AiocontainerError):
                    log.error(
                        "listing at offset %d raised %s",
                        start,
                        type(exc).__name__,
                        extra=log_fields(endpoint=LIST_PATH),
                    )
                self._tracker.report_failure(None, exc)
                failures += 1
                if failures > PAGE_RETRIES:
                    sweep.abandon()
                continue  # the same page again at the next slot
            failures = 0
            self._tracker.listed(sweep.take(page), initial=first)
            for error in page.errors:
                instance_id = getattr(error, "instance_id", None)
                self._tracker.report_failure(instance_id, error)
                if isinstance(instance_id, str):
                    sweep.handled(instance_id)
                    self._tracker.look_up(instance_id)
        self.passes += 1
        for instance_id in sweep.unseen(list(self._tracker.entries)):
            self._tracker.look_up(instance_id)
        if not sweep.cut_short:  # the whole account was listed: with watch_all, known from now
            self.pages = sweep.pages
            self._listed = True
            cache.retain(sweep.seen)  # what the list no longer shows is let go
            self._tracker.excluded.intersection_update(sweep.seen)
            self._tracker.health.listed_all()
            self._tracker.on_settled()

    def _expected_pages(self) -> int:
        """The pages a pass will take: as many as the last one, else a guess from the ids.

        Before the first pass the account's size is unknown: enough pages for the watched ids,
        and at least ``MIN_GUESS`` so that a ``watch_all`` account is listed in a few intervals.
        """
        if self.pages is not None:
            return max(self.pages, 1)
        return max(-(-len(self._tracker.entries) // PAGE_SIZE) + 1, MIN_GUESS)

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._clock()
        if delay > 0:
            await self._sleep(delay)
        else:
            await asyncio.sleep(0)


def attach_sweeper(tracker: Tracker, client: object, *, sweep: str, watch_all: bool) -> None:
    """Check the ``sweep`` and ``watch_all`` options and give ``tracker`` its sweeper, if any.

    A client without ``list_page`` cannot sweep: ``auto`` then polls by detail, while ``list``
    and ``watch_all`` are refused. With ``watch_all`` every id of the tracker's checkpoint is
    watched from the start.
    """
    if sweep not in MODES:
        raise ValueError(f"sweep must be one of {', '.join(MODES)}")
    if watch_all and sweep == "detail":
        raise ValueError("watch_all needs the list: it cannot be used with sweep='detail'")
    can_list = callable(getattr(client, "list_page", None))
    if not can_list and (sweep == "list" or watch_all):
        raise TypeError("this client cannot list instances (it has no list_page)")
    tracker.watch_all = watch_all
    if watch_all:
        tracker.health.list_all()
        if tracker.checkpoint is not None:
            # The account as saved is watched from the start: an instance deleted since is then
            # looked up when no pass lists it, and reported gone, not kept in the file unseen.
            tracker.add(list(tracker.checkpoint.carried))
    if can_list and sweep != "detail":
        listing = cast(ListingClient, client)
        tracker.sweeper = Sweeper(
            tracker, listing, tracker.policy, mode=sweep, clock=tracker.clock, sleep=tracker.sleep
        )
