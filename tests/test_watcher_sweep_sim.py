"""The list sweep with the real client against the simulator: page caps, churn, watch_all."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiocontainer import _paging
from aiocontainer.client import ContainerClient
from aiocontainer.errors import InstanceGoneError
from aiocontainer.models import StatusChange
from aiocontainer.simulator import Simulator
from aiocontainer.watcher import InstanceWatcher
from tests.conftest import eventually
from tests.test_detail_cache import counting_builds, needs_orjson

pytestmark = pytest.mark.skipif(
    not hasattr(ContainerClient, "list_page"), reason="the client cannot list"
)


def client_for(sim: Simulator) -> ContainerClient:
    return ContainerClient(
        sim.base_url, token=sim.token, timeout=2.0, backoff_factor=0.01, backoff_max=0.05
    )


@contextlib.asynccontextmanager
async def listing_sim(
    *, instances: int, seed: int, page_cap: int, list_total: bool = False
) -> AsyncIterator[tuple[Simulator, ContainerClient]]:
    """A frozen simulator of ``instances`` whose pages hold ``page_cap`` entries, and a client."""
    async with (
        Simulator(
            instances=instances,
            seed=seed,
            frozen=True,
            include_seed_instance=False,
            page_cap=page_cap,
            list_total=list_total,
        ) as sim,
        client_for(sim) as client,
    ):
        yield sim, client


def list_watcher(
    client: ContainerClient, ids: list[str], *, interval: float
) -> tuple[InstanceWatcher, list[StatusChange]]:
    """A list-mode watcher of ``ids`` and the list its changes go to."""
    watcher = InstanceWatcher(client, ids, interval=interval, sweep="list")
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    return watcher, seen


async def more_list_pages(sim: Simulator, pages: int) -> None:
    """Wait until the simulator has answered ``pages`` more list requests than now.

    Counting requests instead of sleeping makes sure the passes happened, however slow the
    machine is at the moment.
    """
    start = sim.stats["endpoints"].get("list", 0)
    await eventually(
        lambda: sim.stats["endpoints"].get("list", 0) >= start + pages,
        within=30,
        what=f"{pages} more list pages",
    )


async def test_a_page_cap_below_the_page_size_still_sees_every_instance_once() -> None:
    async with listing_sim(instances=250, seed=3, page_cap=30) as (sim, client):
        ids = list(sim.instance_ids)
        watcher, seen = list_watcher(client, ids, interval=0.2)
        async with watcher:
            await eventually(lambda: len(seen) == 250, what="every instance")
            # Two more passes of nine pages each: nothing moves, nothing is reported.
            await more_list_pages(sim, 2 * 9)
        assert Counter(c.instance_id for c in seen) == Counter(ids)
        endpoints = sim.stats["endpoints"]
        assert endpoints.get("detail", 0) == 0, endpoints


@pytest.mark.parametrize("list_total", [False, True])
async def test_a_pass_ends_on_the_total_when_the_answers_send_one(list_total: bool) -> None:
    async with listing_sim(instances=250, seed=3, page_cap=30, list_total=list_total) as (
        sim,
        client,
    ):
        answered: list[tuple[int, int]] = []  # (start, entries) of every page
        list_page = client.list_page

        async def recording(**options: Any) -> Any:
            page = await list_page(**options)
            answered.append((page.start, page.count))
            return page

        client.list_page = recording  # type: ignore[method-assign]
        watcher, seen = list_watcher(client, list(sim.instance_ids), interval=0.2)
        async with watcher:
            await more_list_pages(sim, 3 * 10)  # three passes or more
        assert len(seen) == 250 and watcher.stats.detail_polls == 0
    # Nine pages hold the 250 instances; without a total, an empty page ends each pass.
    ends = [start for start, count in answered if start + count == 250]
    empty = [start for start, count in answered if count == 0]
    assert len(ends) >= 3
    if list_total:
        assert empty == []
    else:
        assert len(empty) >= 3 and set(empty) == {250}


async def test_watch_all_under_churn_reports_new_instances_once_drops_deleted_ones() -> None:
    async with listing_sim(instances=120, seed=5, page_cap=25) as (sim, client):
        first = set(sim.instance_ids)
        watcher = InstanceWatcher(
            client, interval=0.15, watch_all=True, emit_initial=False, gone_after=1
        )
        seen: list[StatusChange] = []
        gone: list[str] = []
        watcher.on_change(seen.append)

        def errors(instance_id: str | None, exc: Exception) -> None:
            if isinstance(exc, InstanceGoneError):
                gone.append(exc.instance_id)

        watcher.on_error(errors)
        async with watcher:
            await eventually(lambda: set(watcher.ids) == first, what="the first pass")
            assert seen == []
            sim.set_listing(churn=2)  # each page: two instances created, two deleted
            await more_list_pages(sim, 25)  # about five passes
            sim.set_listing(churn=0)
            now = set(sim.instance_ids)
            await eventually(lambda: set(watcher.ids) == now, within=10, what="the churn")
        created = now - first
        deleted = first - now
        assert created and deleted
        reported = Counter(c.instance_id for c in seen)
        assert set(reported.values()) == {1} and all(c.previous is None for c in seen)
        # Every instance created and still there was reported; one created and deleted again
        # during the churn may have been seen in between, and was then dropped as gone.
        assert created <= set(reported) and not set(reported) & first
        assert set(gone) >= deleted and not set(gone) & now
        assert set(reported) - created <= set(gone)


async def test_list_faults_at_thirty_percent_invent_nothing(caplog: Any) -> None:
    async with listing_sim(instances=150, seed=9, page_cap=40) as (sim, client):
        sim.set_fault_rate(0.3)
        ids = list(sim.instance_ids)
        watcher, seen = list_watcher(client, ids, interval=0.15)
        async with watcher:
            await eventually(lambda: len(seen) >= 150, within=15, what="every instance")
            # About three more passes of four pages, a faulted page asked again counted too.
            await more_list_pages(sim, 18)
        assert Counter(c.instance_id for c in seen) == Counter(ids)
        assert sum(sim.stats["faults"].values()) > 10


@needs_orjson
async def test_passes_over_an_unchanged_account_build_nothing_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pages read again byte for byte are not parsed; a changed instance is still reported."""
    built = counting_builds(monkeypatch, _paging)
    async with listing_sim(instances=90, seed=4, page_cap=40) as (sim, client):
        ids = list(sim.instance_ids)
        watcher, seen = list_watcher(client, ids, interval=0.15)
        async with watcher:
            await eventually(lambda: len(seen) == 90, what="every instance")
            await more_list_pages(sim, 3 * 3)  # three more passes of three pages
            assert sorted(built) == sorted(ids)  # each entry built once, in the first pass
            changed = ids[50]
            sim.set_status(changed, "Failed")
            await eventually(lambda: len(seen) == 91, what="the change")
            await more_list_pages(sim, 2 * 3)
        assert (seen[-1].instance_id, seen[-1].current) == (changed, "Failed")
        assert seen[-1].detail.status == "Failed"
        # Only the changed entry was built again (its page was read anew, the others kept).
        assert Counter(built) == Counter(ids) + Counter([changed])
