"""Offset paging of the list endpoint, without I/O.

Rule 1: the next request starts where the last page's entries ended (``start + count``), not at
        ``start + limit``: a server may answer fewer entries than asked on a page that is not the
        last, and the largest ``limit`` it honours is unknown.
Rule 2: a listing ends only on an empty page, never on a short one; or on a page whose answer
        sends a ``total`` (the account's size: not documented, so only when one is sent) that the
        listing has just reached exactly. A total it has passed is not trusted (instances were
        deleted meanwhile, or the total is wrong): the listing goes on to an empty page.
Rule 3: one listing never yields an id twice. Offsets shift when instances are created or deleted
        during a listing, so a page may repeat entries of the one before; ids are compared
        without regard to case (they are hex, and case variants name one instance).
Rule 4: a server that keeps answering full pages of ids already seen (one that ignores
        ``start``) cannot keep a listing going forever: after ``MAX_STALE_PAGES`` such pages in a
        row the pager gives up with ``ResponseError``.
Rule 5: a ``DetailCache`` hands back what was read before only for the same bytes: a page whose
        body is the one last read at its offset, a detail whose entry re-encodes to the same
        JSON (compared by hash). An entry that differs only in its clock values (``CLOCK_KEYS``)
        has those read and checked, the rest taken from the detail kept. Anything else is read
        and checked as without a cache, so a cache never lets a bad entry through.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from aiocontainer._convert import patcher, structure
from aiocontainer._json import fingerprint
from aiocontainer.errors import ListEntryError, ResponseError
from aiocontainer.models import InstanceDetail

__all__ = [
    "CLOCK_KEYS",
    "MAX_STALE_PAGES",
    "MAX_TOTAL_DIGITS",
    "DetailCache",
    "ListPage",
    "Pager",
    "read_total",
    "walk",
]

#: Non-empty pages in a row that bring no new id before a listing is abandoned.
MAX_STALE_PAGES: Final = 3
#: The longest ``total`` read from digits: more than any account holds, less than 64 bits.
MAX_TOTAL_DIGITS: Final = 18

_DURATION: Final = "duration"
_REMAINING: Final = "remainingTime"
#: Entry keys that move with the clock alone: a running instance's are new every second.
CLOCK_KEYS: Final = frozenset({_DURATION, _REMAINING})
_ABSENT: Final[Any] = object()
_NO_CLOCK: Final = (_ABSENT, _ABSENT)


@attrs.frozen(kw_only=True)
class ListPage:
    """One page of the list endpoint, as read.

    ``count`` is how many entries the page held; ``details`` are those that parsed, in page
    order; ``errors`` are the others, each a ``ListEntryError`` naming its index. ``total`` is
    the account's size when the answer sends one (see ``read_total``), else None.
    """

    #: The offset the page was asked for.
    start: int
    #: Raw entries on the page, good or bad.
    count: int
    details: tuple[InstanceDetail, ...] = ()
    errors: tuple[ListEntryError, ...] = ()
    total: int | None = None


def read_total(value: Any) -> int | None:
    """The ``total`` of a list answer as a count of instances, or None if it is not one.

    The list endpoint documents no total; when an answer sends one beside ``data``, a
    non-negative integer (or a string of at most ``MAX_TOTAL_DIGITS`` decimal digits: the
    platform writes some numbers as strings) is read. Anything else (a boolean, a float, a
    negative number, other text) is ignored rather than refused, since it may mean something
    else: the listing then ends on an empty page, as without a total.
    """
    if type(value) is int:
        return value if value >= 0 else None
    if type(value) is str and 0 < len(value) <= MAX_TOTAL_DIGITS and value.isascii():
        return int(value) if value.isdigit() else None
    return None


def _key(instance_id: str) -> str:
    """``instance_id`` in lower case: the same object when it is already (no copy is kept)."""
    key = instance_id.lower()
    return instance_id if key == instance_id else key


class DetailCache:
    """What list pages were read into, kept for the next request that gets the same answer.

    Give one cache to successive ``ContainerClient.list_page`` (or ``get_instance``) calls and
    nothing is parsed twice:

    - a page whose body is byte for byte the one last read at its offset comes back as the
      same ``ListPage``, without being parsed (a page with a bad entry is never kept); so does
      the detail of an answer to ``get_instance`` that is the one last read for its id;
    - in any other page or detail answer, an entry (a detail answer's ``data``) whose JSON is
      the same as when its id was last read comes back as the detail built then (the very
      same object), without being checked again;
    - an entry whose JSON differs only in ``duration`` or ``remainingTime`` (a running
      instance's clock) comes back as a new detail: those two values are read and checked as a
      build checks them, every other field is taken from the detail kept for its id (its
      mounts and ports are the same objects);
    - every other entry is built as without a cache and replaces what was kept for its id.

    Bodies are compared by hash, entries by a hash of their JSON re-encoded by orjson (both
    64-bit and keyed per process). Without orjson, re-encoding an entry costs about what
    building it does, so only whole pages are kept.

    ``retain`` forgets every detail but those of the ids given, and every page not asked for
    since the last ``retain`` (the watcher calls it after each complete list pass, so deleted
    instances and offsets past the end do not linger).
    """

    __slots__ = ("_answers", "_asked", "_built", "_pages")

    def __init__(self) -> None:
        # id -> (hash of the entry with its clock values blanked, the clock values, detail)
        self._built: dict[str, tuple[int, tuple[Any, Any], InstanceDetail]] = {}
        self._answers: dict[str, tuple[int, InstanceDetail]] = {}
        self._pages: dict[int, tuple[int, ListPage]] = {}
        self._asked: set[int] = set()

    def __len__(self) -> int:
        """Details kept."""
        return len(self._built)

    def __repr__(self) -> str:
        kept = f"{len(self._built)} details, {len(self._answers)} answers, {len(self._pages)} pages"
        return f"DetailCache({kept})"

    def page_at(self, start: int, body: bytes) -> ListPage | None:
        """The page read before at offset ``start`` from the very same ``body``, or None."""
        self._asked.add(start)
        known = self._pages.get(start)
        return known[1] if known is not None and known[0] == hash(body) else None

    def keep_page(self, body: bytes, page: ListPage) -> None:
        """Keep ``page``, read from ``body``, for its offset (not if an entry was bad)."""
        if page.errors:
            self._pages.pop(page.start, None)
        else:
            self._pages[page.start] = (hash(body), page)

    def answer_for(self, instance_id: str, body: bytes) -> InstanceDetail | None:
        """The detail read before for ``instance_id`` from the very same detail ``body``."""
        known = self._answers.get(instance_id.lower())
        return known[1] if known is not None and known[0] == hash(body) else None

    def keep_answer(self, instance_id: str, body: bytes, detail: InstanceDetail) -> None:
        """Keep ``detail``, read from the detail answer ``body``, for ``instance_id``."""
        self._answers[_key(instance_id)] = (hash(body), detail)

    def detail_of(self, entry: Mapping[str, Any], instance_id: str) -> InstanceDetail:
        """The detail of one list entry whose id is ``instance_id``: kept, or built now.

        Raises what building raises (``ResponseError``), and then keeps nothing for the id.
        """
        key = _key(instance_id)
        mark, clock = _marks(entry)
        known = self._built.get(key)
        if known is not None and known[0] == mark:
            if known[1] == clock:
                return known[2]
            # Only the clock moved: everything else was checked when ``known`` was built.
            patched: InstanceDetail | None = patcher(InstanceDetail, CLOCK_KEYS)(known[2], entry)
            if patched is not None:
                self._built[key] = (mark, clock, patched)
                return patched
        self._built.pop(key, None)
        detail = structure(entry, InstanceDetail)
        if mark is not None:
            self._built[key] = (mark, clock, detail)
        return detail

    def forget(self, instance_id: str) -> None:
        """Forget the detail and the answer kept for one id."""
        key = instance_id.lower()
        self._built.pop(key, None)
        self._answers.pop(key, None)

    def retain(self, ids: Iterable[str]) -> None:
        """Forget the details and answers of every id but ``ids`` (compared in lower case), and
        every page not asked for since the last call."""
        keep = {instance_id.lower() for instance_id in ids}
        self._built = {key: known for key, known in self._built.items() if key in keep}
        self._answers = {key: known for key, known in self._answers.items() if key in keep}
        asked, self._asked = self._asked, set()
        self._pages = {start: known for start, known in self._pages.items() if start in asked}


def _marks(entry: Mapping[str, Any]) -> tuple[int | None, tuple[Any, Any]]:
    """The fingerprint of ``entry`` with its clock values made null, and those values.

    A clock key that is present stays present (as null), one that is absent stays absent, so two
    entries with equal marks hold the same keys. Clock values are compared as Python values:
    only strings and null are ever kept (a build refuses anything else), and a string equals
    only the same string.
    """
    clock = (entry.get(_DURATION, _ABSENT), entry.get(_REMAINING, _ABSENT))
    if clock == _NO_CLOCK or type(entry) is not dict:
        return fingerprint(entry), clock
    blanked = entry.copy()
    if clock[0] is not _ABSENT:
        blanked[_DURATION] = None
    if clock[1] is not _ABSENT:
        blanked[_REMAINING] = None
    return fingerprint(blanked), clock


class Pager:
    """Which page to ask for next, and which entries of an answered page are new.

    Use: ``while (request := pager.next_request()) is not None``, ask for ``request`` =
    ``(start, limit)``, then hand the answer's raw entry count and ids to ``take``.
    """

    def __init__(self, page_size: int) -> None:
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError("page_size must be a positive integer")
        self._page_size = page_size
        self._start = 0
        self._seen: set[str] = set()
        self._stale = 0
        self._done = False
        #: Pages answered so far, the final empty one included.
        self.pages = 0

    @property
    def done(self) -> bool:
        """True once an empty page ended the listing."""
        return self._done

    @property
    def seen(self) -> int:
        """Distinct ids yielded so far."""
        return len(self._seen)

    def next_request(self) -> tuple[int, int] | None:
        """``(start, limit)`` of the next page, or None once the listing is over."""
        return None if self._done else (self._start, self._page_size)

    def take(self, count: int, ids: Sequence[str], total: int | None = None) -> list[bool]:
        """Record a page of ``count`` raw entries whose valid ids are ``ids``; which are new.

        ``total``: the account's size the answer sent, if any (Rule 2). Returns one flag per
        id: True for an id this listing has not yielded yet.
        """
        if count < 0 or len(ids) > count:
            raise ValueError("a page cannot hold fewer entries than ids")
        self.pages += 1
        if count == 0:
            self._done = True
            return []
        self._start += count
        fresh = []
        for instance_id in ids:
            key = instance_id.lower()
            new = key not in self._seen
            self._seen.add(key)
            fresh.append(new)
        self._stale = 0 if any(fresh) else self._stale + 1
        if self._stale >= MAX_STALE_PAGES:
            self._done = True
            raise ResponseError(
                f"{MAX_STALE_PAGES} pages in a row repeated ids already listed, up to offset "
                f"{self._start}: the server seems to ignore the start offset"
            )
        self._done = self._start == total
        return fresh


async def walk(
    pager: Pager, fetch: Callable[[int, int], Awaitable[ListPage]]
) -> AsyncGenerator[InstanceDetail, None]:
    """Every new instance of a listing, page after page, as ``fetch(start, limit)`` reads them.

    A page's first bad entry is raised after the good entries before it were yielded.
    """
    while (request := pager.next_request()) is not None:
        page = await fetch(*request)
        fresh = pager.take(page.count, [detail.id for detail in page.details], page.total)
        # Details keep page order, so those before the first bad entry are its index many.
        good = page.errors[0].index if page.errors else len(page.details)
        for detail, new in zip(page.details[:good], fresh, strict=False):
            if new:
                yield detail
        if page.errors:
            raise page.errors[0]
