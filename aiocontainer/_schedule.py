"""What the watcher keeps per instance and when it polls it: plain decisions, no event loop.

Rule 1: every decision here is a plain function of an ``Entry`` and a ``SchedulePolicy``; none
        reads a clock, sleeps or starts a task, so each is tested without an event loop.
Rule 2: a visit is one slot of the rotation. A resting entry lets visits pass (one per visit)
        before it is polled again; an entry with a poll in flight is never polled twice.
Rule 3: after a failure an entry rests ``min(2**(failures - 1), max_backoff) - 1`` visits, so
        its polls are 1, 2, 4, ... up to ``max_backoff`` intervals apart.
Rule 4: after a terminal status an entry is dormant (never polled again) without a
        ``terminal_interval``, else it rests that many seconds rounded to whole intervals.
Rule 5: ``gone_after`` answers of "invalid parameter" in a row, and nothing else, make an entry
        gone; any other outcome resets that count.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

from typing import Final

import attrs

from aiocontainer._diff import Snapshot
from aiocontainer._options import require
from aiocontainer.models import InstanceDetail

__all__ = [
    "COALESCE",
    "Entry",
    "SchedulePolicy",
    "after_failure",
    "after_success",
    "catch_up_group",
    "is_due",
    "next_slot",
]

#: Slots closer together than this (seconds) start in one scheduler tick instead of one each.
COALESCE: Final = 0.005


@attrs.frozen(kw_only=True)
class SchedulePolicy:
    """The scheduling knobs of a watcher, checked once."""

    #: Seconds between two polls of one id.
    interval: float = 5.0
    #: Seconds between polls of a terminal id; None: never poll it again.
    terminal_interval: float | None = None
    #: Answers of "invalid parameter" in a row after which an id is dropped as gone.
    gone_after: int = 3
    #: The longest rest after failures, in intervals.
    max_backoff: int = 8
    #: Random delay of a poll within its slot, as a fraction of one slot.
    jitter: float = 0.1

    def __attrs_post_init__(self) -> None:
        require(self.interval > 0, "interval must be positive")
        require(
            self.terminal_interval is None or self.terminal_interval > 0,
            "terminal_interval must be positive",
        )
        require(self.gone_after >= 1, "gone_after must be at least 1")
        require(self.max_backoff >= 1, "max_backoff must be at least 1")
        require(0 <= self.jitter <= 1, "jitter must be between 0 and 1")

    @property
    def terminal_rest(self) -> int | None:
        """Visits a terminal id lets pass before its next poll; None when it is never polled."""
        if self.terminal_interval is None:
            return None
        return max(1, round(self.terminal_interval / self.interval)) - 1


class Entry:
    """What the watcher keeps for one watched id."""

    __slots__ = (
        "dormant",
        "failures",
        "instance_id",
        "invalid",
        "listed",
        "listed_later",
        "place",
        "poll",
        "rest",
        "state",
    )

    def __init__(self, instance_id: str, state: Snapshot | None) -> None:
        self.instance_id = instance_id
        self.state = state
        #: A token of the poll in flight, if any (the rotation keeps the task itself).
        self.poll: object | None = None
        self.failures = 0
        #: Consecutive answers of "invalid parameter".
        self.invalid = 0
        #: Visits to let pass before the next poll.
        self.rest = 0
        #: Terminal and not to be polled again (unless someone waits on it).
        self.dormant = False
        #: Which of this entry's places in the rotation is the live one; older ones are skipped.
        self.place = 0
        #: List entries whose new status the poll in flight (begun after them) confirms, in the
        #: order listed; one is reported before that poll's status if it lies on the path
        #: between, and all stand in if the poll fails.
        self.listed: tuple[InstanceDetail, ...] = ()
        #: Statuses the list showed after the poll in flight began, in the order listed (one per
        #: pass at most): reported before its answer if they lie on the path between, else
        #: confirmed by another poll after it.
        self.listed_later: tuple[InstanceDetail, ...] = ()

    def __repr__(self) -> str:
        return f"<Entry {self.instance_id} state={self.state!r} rest={self.rest}>"


def is_due(entry: Entry, *, wanted: bool) -> bool:
    """Whether to poll ``entry`` at this visit; a visit while resting counts down the rest."""
    if entry.poll is not None or not wanted:
        return False
    if entry.rest > 0:
        entry.rest -= 1
        return False
    return True


def after_success(entry: Entry, policy: SchedulePolicy, *, terminal: bool) -> None:
    """Reset the failure counts; a terminal status rests or sleeps for good."""
    entry.failures = entry.invalid = entry.rest = 0
    entry.dormant = False
    if terminal:
        rest = policy.terminal_rest
        if rest is None:
            entry.dormant = True
        else:
            entry.rest = rest


def after_failure(entry: Entry, policy: SchedulePolicy, *, invalid: bool) -> bool:
    """Count a failed poll and set the backoff; True when the id is now to be dropped as gone."""
    entry.failures += 1
    entry.invalid = entry.invalid + 1 if invalid else 0
    if entry.invalid >= policy.gone_after:
        return True
    entry.rest = min(2 ** (entry.failures - 1), policy.max_backoff) - 1
    return False


def catch_up_group(spacing: float) -> int:
    """How many slots that are already past go out before the loop yields once.

    One tick's worth (``COALESCE / spacing`` rounded, at least one): the slots of a rotation
    that fell behind start in groups, as slots a moment ahead do, and the loop catches up at
    that pace instead of spending one loop iteration (and one poll of the selector) per slot.
    """
    return max(1, round(COALESCE / spacing))


def next_slot(slot_at: float, spacing: float, *, now: float, interval: float) -> float:
    """The start of the slot after ``slot_at``; far behind (a blocked loop) starts afresh."""
    following = slot_at + spacing
    if now - following > interval:
        return now  # rather than a burst of catch-up polls
    return following
