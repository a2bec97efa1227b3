"""The watcher's run state: one phase at a time, moved only along the table below.

=========  ==================================================  =================================
phase      what the watcher does                                may move to
=========  ==================================================  =================================
STOPPED    nothing; changes and errors wait in their queues     RUNNING, SERVING
RUNNING    polls every watched id and delivers                  FINISHING, DRAINING
FINISHING  every id is terminal: delivers all that is queued    DRAINING, RUNNING, SERVING,
                                                                STOPPED
DRAINING   stopping: delivers for at most ``drain_timeout``     RUNNING, SERVING, STOPPED
SERVING    not running, but waits are pending: polls the        RUNNING, DRAINING
           waited ids and delivers
=========  ==================================================  =================================

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["MOVES", "Lifecycle", "Phase"]


class Phase(enum.Enum):
    """What a watcher is doing now."""

    STOPPED = "stopped"
    RUNNING = "running"
    FINISHING = "finishing"
    DRAINING = "draining"
    SERVING = "serving"


MOVES: Final[dict[Phase, frozenset[Phase]]] = {
    Phase.STOPPED: frozenset({Phase.RUNNING, Phase.SERVING}),
    Phase.RUNNING: frozenset({Phase.FINISHING, Phase.DRAINING}),
    Phase.FINISHING: frozenset({Phase.DRAINING, Phase.RUNNING, Phase.SERVING, Phase.STOPPED}),
    Phase.DRAINING: frozenset({Phase.RUNNING, Phase.SERVING, Phase.STOPPED}),
    Phase.SERVING: frozenset({Phase.RUNNING, Phase.DRAINING}),
}

#: Phases in which a drain is under way.
SETTLING: Final = frozenset({Phase.FINISHING, Phase.DRAINING})


class Lifecycle:
    """The current phase; ``move`` refuses any move the table does not allow."""

    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = Phase.STOPPED

    def __repr__(self) -> str:
        return f"<Lifecycle {self.phase.value}>"

    def can(self, to: Phase) -> bool:
        """Whether the table allows moving to ``to`` now."""
        return to in MOVES[self.phase]

    def move(self, to: Phase) -> None:
        """Move to ``to``; a move the table does not allow is a bug and raises ``RuntimeError``."""
        if not self.can(to):
            raise RuntimeError(f"watcher cannot go from {self.phase.value} to {to.value}")
        self.phase = to

    @property
    def settling(self) -> bool:
        """Whether a drain is under way."""
        return self.phase in SETTLING
