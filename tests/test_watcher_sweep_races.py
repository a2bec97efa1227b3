"""List pages and detail lookups racing on a fake clock: nothing seen is lost, nothing goes back.

Each instance goes Waiting -> Deploying -> Running -> Completed at moments drawn per seed; lookups
take from no time to more than two intervals, and pages, entries and lookups fail at random. A
page is read at the moment it is asked for, a lookup's answer when it comes. Whatever order the
answers arrive in, the changes delivered for an instance must hold exactly the statuses that a
page the watcher took, or an answer it got, showed: in the order of the path, each once. With
``watch_all``, instances are created while the passes run (shifting the pages after them) and
are picked up from the list.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from aiocontainer.errors import TransportError
from aiocontainer.models import InstanceDetail, StatusChange
from tests.watcher_fakes import (
    C,
    D,
    FakeListClient,
    FakePage,
    FakeTime,
    Outcome,
    R,
    W,
    invalid,
    make,
)

PATH = (W, D, R, C)
INTERVAL = 10.0


class Lifecycles(Mapping[str, Outcome]):
    """Each id's status at the fake clock's present moment, from the moments it moves on.

    Before its creation an id is unknown to the platform (not listed; "invalid parameter").
    """

    def __init__(
        self, time: FakeTime, moves: dict[str, list[float]], born: dict[str, float]
    ) -> None:
        self.time = time
        self.moves = moves
        self.born = born

    def __getitem__(self, instance_id: str) -> Outcome:
        if self.time.now < self.born[instance_id]:
            return invalid(instance_id)
        return PATH[bisect_right(self.moves[instance_id], self.time.now)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.moves)

    def __len__(self) -> int:
        return len(self.moves)


class RacingClient(FakeListClient):
    """Lookups of random length, random failures; notes every status it shows the watcher."""

    def __init__(self, time: FakeTime, rng: random.Random, lifecycles: Lifecycles) -> None:
        super().__init__(time, {})
        self.statuses: Any = lifecycles
        self.rng = rng
        self.shown: defaultdict[str, set[str]] = defaultdict(set)

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        self.latency = self.rng.choice([0.0, 0.5, 2.0, 7.0, 12.0, 25.0])
        if self.rng.random() < 0.15:
            self.script(instance_id, TransportError("cut", instance_id=instance_id))
        detail = await super().get_instance(instance_id)
        self.shown[instance_id].add(detail.status)
        return detail

    async def list_page(self, *, start: int, limit: int, cache: object = None) -> FakePage:
        draw = self.rng.random()
        if draw < 0.1:
            self.list_script.append(TransportError("page cut"))
        elif draw < 0.2:
            self.list_script.append("bad:" + self.rng.choice(list(self.statuses)))
        page = await super().list_page(start=start, limit=limit, cache=cache)
        for detail in page.details:
            self.shown[detail.id].add(detail.status)
        return page


@pytest.mark.parametrize("watch_all", [False, True], ids=["watched", "watch_all"])
@pytest.mark.parametrize("seed", range(25))
async def test_what_pages_and_lookups_showed_arrives_once_in_path_order(
    seed: int, watch_all: bool
) -> None:
    rng = random.Random(seed)
    moves, born = {}, {}
    for n in range(8):
        born[f"i{n}"] = rng.uniform(0, 40) if watch_all and n % 2 else 0.0
        deploying = born[f"i{n}"] + rng.uniform(0, 60)
        running = deploying + rng.choice([0.5, 3.0, 12.0, 30.0])
        moves[f"i{n}"] = [deploying, running, running + rng.choice([0.5, 6.0, 15.0, 45.0])]
    ft = FakeTime()
    client = RacingClient(ft, rng, Lifecycles(ft, moves, born))
    client.page_cap = 3  # several pages a pass, so pages and lookups interleave
    ids = [] if watch_all else list(moves)
    watcher = make(client, ids, interval=INTERVAL, sweep="list", watch_all=watch_all)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(max(m[-1] for m in moves.values()) + 6 * INTERVAL)

    for instance_id in moves:
        changes = [c for c in seen if c.instance_id == instance_id]
        chain = [c.current for c in changes]
        steps = [PATH.index(status) for status in chain]
        assert steps == sorted(set(steps)), (seed, instance_id, chain)  # never back, never twice
        assert set(chain) == client.shown[instance_id], (seed, instance_id)
        assert chain[-1] == C
        assert [c.previous for c in changes] == [None, *chain[:-1]]
        assert [c.seq for c in changes] == list(range(1, len(chain) + 1))
