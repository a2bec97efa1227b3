"""The list sweep's bookkeeping: one pass over the list, what it saw, what it leaves to detail.

Rule 1: a pass asks for the page that starts where the last page's entries ended and ends only on
        an empty page (a server may answer fewer entries than asked on any page), or on a page
        whose answer sends a ``total`` the pass has just reached exactly (as a listing does:
        ``_paging``, Rule 2). A server that keeps answering pages of ids already seen in this
        pass (one that ignores ``start``) ends the pass after ``MAX_STALE_PAGES`` such pages.
Rule 2: within a pass, an id counts once (ids are compared in lower case); offsets shift while
        instances are created or deleted, so a page may repeat entries of the one before. A
        repeat that shows another status than the pass took for that id is a newer sighting, and
        is taken too (it does not count as new for Rule 1).
Rule 3: a watched id the pass did not see is not gone: it is looked up by detail. A page that
        keeps failing ends the pass early (``abandon``), and the same rule covers its ids.
Rule 4: a listed status equal to the last known one is an observation and costs nothing more; a
        different one is confirmed by a detail lookup; a first observation uses the listed entry.
        Entries listed around a lookup are weighed against its answer (``weigh``): a status on
        the usual path between the known one and the answer's was passed before it.
Rule 5: ``auto`` sweeps when the pages of the whole account cost fewer requests than one detail
        lookup per due id.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Final, Protocol

from aiocontainer._diff import Snapshot, precedes, skipped_between
from aiocontainer.models import InstanceDetail

__all__ = [
    "MAX_STALE_PAGES",
    "MODES",
    "PAGE_SIZE",
    "Listed",
    "ListedPage",
    "SweepPass",
    "classify",
    "probe_offset",
    "sweep_is_cheaper",
    "weigh",
]

#: The sweep modes ``InstanceWatcher(sweep=...)`` accepts.
MODES: Final = ("auto", "list", "detail")
#: Entries asked for per page.
PAGE_SIZE: Final = 100
#: Non-empty pages in a row that bring no id new to the pass before the pass ends.
MAX_STALE_PAGES: Final = 3


class ListedPage(Protocol):
    """What the sweep needs of one answered page (``ListPage`` fits). A ``total`` is read too
    where a page has one (``ListPage.total``), so a page without it still fits."""

    @property
    def count(self) -> int:
        """Raw entries on the page, good or bad."""
        ...

    @property
    def details(self) -> Sequence[InstanceDetail]:
        """The entries that parsed."""
        ...

    @property
    def errors(self) -> Sequence[Exception]:
        """The entries that did not, each an error with an ``instance_id`` (or None)."""
        ...


class Listed(enum.Enum):
    """What a listed entry means for a watched id."""

    FIRST = "first"  # nothing known yet: the entry is the first observation
    SAME = "same"  # the status is the one known: an observation, nothing more to do
    CHANGED = "changed"  # a different status: confirm it with a detail lookup


def classify(known: Snapshot | None, listed: InstanceDetail) -> Listed:
    """What a listed entry means, given what is known of its id."""
    if known is None:
        return Listed.FIRST
    return Listed.SAME if known.status == listed.status else Listed.CHANGED


def weigh(
    known: str | None,
    answer: str,
    listed: Sequence[InstanceDetail],
    later: Sequence[InstanceDetail],
) -> tuple[list[InstanceDetail], tuple[InstanceDetail, ...]]:
    """Entries listed around a lookup, against its answer: those passed before it, those to confirm.

    ``listed`` were listed before the lookup began and ``later`` while it ran, each in page order;
    ``known`` is the status known before the answer (None: nothing yet, and the path starts at
    Waiting). A listed status on the usual path between the known one and the answer's was
    passed through before the answer, whenever its page was asked for: it comes first, in order.
    The rest of ``listed`` is older than the answer and dropped; a ``later`` status neither passed
    nor shown by the answer may be newer than it, and is left to confirm with another lookup.
    """
    passed: list[InstanceDetail] = []
    ahead: list[InstanceDetail] = []
    for n, shown in enumerate((*listed, *later)):
        status = shown.status
        if precedes(status, answer) if known is None else status in skipped_between(known, answer):
            passed.append(shown)
            known = status
        elif n >= len(listed) and status != answer:
            ahead.append(shown)
    return passed, tuple(ahead)


class SweepPass:
    """One pass over the list: the next page to ask for, and the ids seen so far."""

    def __init__(self, *, page_size: int = PAGE_SIZE) -> None:
        self.page_size = page_size
        self._start = 0
        self._stale = 0
        # id (lower case) -> the status last taken for it in this pass (None: handled)
        self._seen: dict[str, str | None] = {}
        #: Pages answered so far, the final empty one included.
        self.pages = 0
        #: True once the pass is over (an empty page, a failed page or too many stale ones).
        self.done = False
        #: True when the pass ended before an empty page.
        self.cut_short = False

    def next_request(self) -> tuple[int, int] | None:
        """``(start, limit)`` of the next page, or None once the pass is over."""
        return None if self.done else (self._start, self.page_size)

    def take(self, page: ListedPage) -> list[InstanceDetail]:
        """Record an answered page; its parsed entries to take, in order.

        Those are the entries of ids this pass has not seen yet, and those of ids it has seen
        with another status (a shifted page showed the instance again, after it moved on).
        """
        self.pages += 1
        if page.count <= 0:
            self.done = True
            return []
        self._start += page.count
        taken = []
        new = False
        seen = self._seen
        for detail in page.details:
            key = detail.id.lower()
            if key not in seen:
                new = True
            elif seen[key] == detail.status:
                continue
            seen[key] = detail.status
            taken.append(detail)
        self._stale = 0 if new or page.errors else self._stale + 1
        if self._stale >= MAX_STALE_PAGES:
            self.abandon()
        elif self._start == getattr(page, "total", None):  # ListPage.total; a fake may lack it
            self.done = True  # the whole account was listed: no empty page needed
        return taken

    def abandon(self) -> None:
        """End the pass early (a page failed): what it did not see goes to detail lookups."""
        self.done = True
        self.cut_short = True

    def handled(self, instance_id: str) -> None:
        """Count ``instance_id`` as seen: its entry was bad and it is looked up already."""
        self._seen.setdefault(instance_id.lower(), None)

    @property
    def seen(self) -> AbstractSet[str]:
        """The ids this pass listed (or handled), in lower case."""
        return self._seen.keys()

    def saw(self, instance_id: str) -> bool:
        """Whether this pass listed ``instance_id``."""
        return instance_id.lower() in self._seen

    def unseen(self, watched: Iterable[str]) -> list[str]:
        """The watched ids this pass did not list, in the order given."""
        return [i for i in watched if i.lower() not in self._seen]


def sweep_is_cheaper(*, due: int, pages: int) -> bool:
    """Whether one pass of ``pages`` requests costs less than ``due`` detail lookups."""
    return pages < due


def probe_offset(*, due: int, page_size: int = PAGE_SIZE) -> int | None:
    """Where one page tells whether a pass would be cheaper than ``due`` detail lookups.

    A pass over an account of N instances costs ceil(N / page_size) pages plus the final empty
    one; it is cheaper when N <= (due - 2) * page_size, that is when the page at that offset is
    empty. None when ``due`` is too small for a pass ever to be cheaper.
    """
    if due < 3:
        return None
    return (due - 2) * page_size
