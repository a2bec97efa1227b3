"""From (last known state, new observation) to a status change or nothing, without I/O.

Rule 1: ``diff`` is a pure function. It reads no clock (``observed_at`` is handed in), keeps no
        state and returns equal results for equal arguments.
Rule 2: polling is level-triggered. A change exists exactly when the status string differs from
        the last known one; a status that left and came back between two polls is not a change,
        and no other field of the detail counts.
Rule 3: ``seq`` counts changes per instance: a change gets the last known ``seq`` plus one, a first
        observation gets 1. A first observation recorded silently keeps ``seq`` 0, so the first
        change ever emitted is still number 1.
Rule 4: ``skipped`` names only documented statuses that the usual path
        Waiting -> Deploying -> Running -> (Completed | Failed | Terminated) passes through
        strictly between the two statuses, where a restart leads a terminal instance back to
        Waiting. A first observation, an unknown status on either side, or a move the path does not
        make (Running -> Deploying, Completed -> Failed, ...) skips nothing.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import datetime as _dt
from typing import Final

import attrs

from aiocontainer.models import InstanceDetail, InstanceStatus, StatusChange

__all__ = ["Snapshot", "advance", "diff", "precedes", "skipped_between"]

# A terminal status shares the step after Running; the step after a terminal one is a restart.
_STEP: Final[dict[str, int]] = {
    InstanceStatus.WAITING: 0,
    InstanceStatus.DEPLOYING: 1,
    InstanceStatus.RUNNING: 2,
    InstanceStatus.COMPLETED: 3,
    InstanceStatus.FAILED: 3,
    InstanceStatus.TERMINATED: 3,
}
_RESTART_STEP: Final = 4


@attrs.frozen(kw_only=True)
class Snapshot:
    """What is known of one instance: its last status, its change counter and the last detail."""

    status: str
    #: Number of the last change emitted for this instance; 0 when none was emitted yet.
    seq: int
    #: The last detail seen, or None when the state came from a checkpoint.
    detail: InstanceDetail | None = attrs.field(default=None, eq=False, repr=False)


def skipped_between(previous: str | None, current: str) -> tuple[str, ...]:
    """The documented statuses the usual path passes through strictly between two statuses."""
    if previous is None or previous not in _STEP or current not in _STEP:
        return ()
    start = _STEP[previous]
    end = _STEP[current]
    if start == _STEP[InstanceStatus.COMPLETED] and end < start:
        # A restart: the path goes on from Waiting, as if it came after the terminal status.
        end += _RESTART_STEP
    if end <= start + 1:
        return ()
    path = InstanceStatus.PATH
    return tuple(path[step % _RESTART_STEP] for step in range(start + 1, end))


def precedes(earlier: str, later: str) -> bool:
    """Whether the usual path passes through ``earlier`` before ``later`` (no restart between)."""
    return earlier in _STEP and later in _STEP and _STEP[earlier] < _STEP[later]


def diff(
    previous: Snapshot | None,
    detail: InstanceDetail,
    *,
    observed_at: _dt.datetime,
    instance_id: str | None = None,
) -> StatusChange | None:
    """The change from the last known state to ``detail``, or None when the status is the same.

    The change names ``instance_id`` (the id the caller watches) when given, else ``detail.id``.
    """
    if previous is not None and previous.status == detail.status:
        return None
    return StatusChange(
        instance_id=detail.id if instance_id is None else instance_id,
        previous=None if previous is None else previous.status,
        current=detail.status,
        detail=detail,
        observed_at=observed_at,
        seq=1 if previous is None else previous.seq + 1,
        skipped=() if previous is None else skipped_between(previous.status, detail.status),
    )


def advance(
    previous: Snapshot | None,
    detail: InstanceDetail,
    *,
    observed_at: _dt.datetime,
    emit_initial: bool = True,
    instance_id: str | None = None,
) -> tuple[Snapshot, StatusChange | None]:
    """The new state after observing ``detail``, and the change to emit, if any.

    When ``detail`` is the very detail ``previous`` holds (a cache handed back the object read
    before), ``previous`` itself is the new state: a watched id costs no new object per poll.
    """
    if previous is not None and previous.detail is detail:
        return previous, None  # same object, so same status: no change
    if previous is None and not emit_initial:
        return Snapshot(status=detail.status, seq=0, detail=detail), None
    change = diff(previous, detail, observed_at=observed_at, instance_id=instance_id)
    seq = change.seq if change is not None else previous.seq if previous is not None else 0
    return Snapshot(status=detail.status, seq=seq, detail=detail), change
