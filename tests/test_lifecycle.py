"""The watcher's run state as one table of allowed moves."""

from __future__ import annotations

import pytest

from aiocontainer._lifecycle import MOVES, Lifecycle, Phase


def test_every_phase_has_its_moves_and_none_stays_put() -> None:
    assert set(MOVES) == set(Phase)
    assert all(phase not in moves for phase, moves in MOVES.items())


@pytest.mark.parametrize(
    "path",
    [
        [Phase.RUNNING, Phase.DRAINING, Phase.STOPPED],
        [Phase.RUNNING, Phase.FINISHING, Phase.DRAINING, Phase.SERVING, Phase.DRAINING],
        [Phase.SERVING, Phase.RUNNING, Phase.DRAINING, Phase.RUNNING],
    ],
)
def test_allowed_paths(path: list[Phase]) -> None:
    life = Lifecycle()
    for phase in path:
        life.move(phase)
    assert life.phase is path[-1]


@pytest.mark.parametrize(
    "path",
    [
        [Phase.DRAINING],  # nothing to drain when stopped
        [Phase.RUNNING, Phase.STOPPED],  # a run always drains
        [Phase.RUNNING, Phase.SERVING],
        [Phase.SERVING, Phase.STOPPED],  # the last wait drains too
    ],
)
def test_moves_outside_the_table_are_refused(path: list[Phase]) -> None:
    life = Lifecycle()
    *before, last = path
    for phase in before:
        life.move(phase)
    with pytest.raises(RuntimeError, match="cannot go from"):
        life.move(last)
    assert life.phase is (before[-1] if before else Phase.STOPPED)


def test_settling_covers_both_drains() -> None:
    life = Lifecycle()
    life.move(Phase.RUNNING)
    assert not life.settling
    life.move(Phase.FINISHING)
    assert life.settling
    life.move(Phase.DRAINING)
    assert life.settling
