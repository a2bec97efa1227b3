"""The watcher in list mode, against a scripted listing client on a fake clock."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from aiocontainer import _tracker as tracker_module
from aiocontainer._sweeper import PAGE_RETRIES
from aiocontainer.errors import InstanceGoneError, ResponseError, TransportError
from aiocontainer.models import StatusChange
from aiocontainer.watcher import InstanceWatcher
from tests.watcher_fakes import (
    C,
    D,
    FakeClient,
    FakeListClient,
    FakeTime,
    R,
    W,
    changes_within,
    invalid,
    make,
    summary,
)


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


def account(size: int, status: str = R) -> dict[str, Any]:
    return {f"i{n:04d}": status for n in range(size)}


def cut_first_pass_after_one_page(client: FakeListClient) -> None:
    """The second page fails on its first try and on every retry: the first pass is cut short."""
    client.list_script.extend(["", *[TransportError("reset")] * (PAGE_RETRIES + 1)])


async def test_a_pass_per_interval_with_its_pages_spread_and_no_detail_when_nothing_moves(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, account(250), page_cap=100)
    watcher = make(client, list(client.statuses), sweep="list")
    seen = await changes_within(watcher, ft, 35)
    assert len(seen) == 250 and all(c.detail.version == "listed" for c in seen)
    assert client.detail_calls() == 0
    times = [t for t, _, _ in client.list_calls]
    starts = [s for _, s, _ in client.list_calls]
    # Short pages are not the last; the first pass, of unknown length, goes at 20 pages per
    # interval; the next ones know it takes 4 pages and spread them 2.5 s apart.
    assert starts == [0, 100, 200, 250] * 3 + [0, 100, 200]
    assert times == [0, 0.5, 1, 1.5, 10, 12.5, 15, 17.5, 20, 22.5, 25, 27.5, 30, 32.5, 35]


async def test_a_status_that_differs_is_confirmed_by_detail_and_the_change_carries_it(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": W, "b": R})
    watcher = make(client, ["a", "b"], sweep="list", emit_initial=False)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        client.statuses["a"] = R
        await ft.advance(10)
    assert summary(seen) == [("a", W, R, 1)]
    assert seen[0].detail.version == "detail"
    assert client.calls == [(10, "a")]


async def test_a_watched_id_the_list_does_not_show_is_looked_up_and_dropped_when_gone(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": R, "b": R})
    watcher = make(client, ["a", "b"], sweep="list", gone_after=2)
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    async with watcher:
        await ft.advance(5)
        client.statuses["b"] = invalid("b")  # deleted: no longer listed, 10004 by detail
        await ft.advance(30)
    assert watcher.ids == ("a",)
    # The pass at 10 ends with its empty page at 15; "b" is looked up, and since the platform
    # answers "no such id", looked up again at once until gone_after answers drop it.
    assert client.calls == [(15, "b"), (15, "b")]
    assert isinstance(errors[-1][1], InstanceGoneError) and errors[-1][0] == "b"


@pytest.mark.parametrize("failures", [1, 2, 3])
async def test_a_failed_page_is_asked_again_then_ends_the_pass_for_detail_lookups(
    ft: FakeTime, failures: int
) -> None:
    client = FakeListClient(ft, account(150), page_cap=100)
    watcher = make(client, list(client.statuses), sweep="list", emit_initial=False)
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    seen = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        client.list_script.extend([TransportError("page down")] * failures)
        await ft.advance(20)
    assert [(i, str(e)) for i, e in errors] == [(None, "page down")] * failures
    if failures <= PAGE_RETRIES:  # the page came at a later slot: nothing left for detail
        assert client.calls == []
        second_pass = [s for _, s, _ in client.list_calls][3:]
        assert second_pass[: failures + 2] == [0] * (failures + 1) + [100]
    else:  # the pass ended at its first page: every watched id is looked up by detail, once
        assert sorted(i for _, i in client.calls) == sorted(client.statuses)
    assert seen == []  # a failed page is not a transition


async def test_a_listed_status_stands_in_when_its_detail_lookup_fails(ft: FakeTime) -> None:
    client = FakeListClient(ft, {"a": W})
    watcher = make(client, ["a"], sweep="list", max_backoff=1)
    errors: list[Exception] = []
    watcher.on_error(lambda i, e: errors.append(e))
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        client.statuses["a"] = R
        client.script("a", TransportError("detail down"))
        await ft.advance(10)
    assert [str(e) for e in errors] == ["detail down"]
    assert summary(seen) == [("a", None, W, 1), ("a", W, R, 2)]
    assert seen[1].detail.version == "listed"


async def test_a_bad_entry_is_reported_and_its_instance_looked_up_by_detail(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": R, "b": R})
    client.list_script.append("bad:b")
    watcher = make(client, ["a", "b"], sweep="list")
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    seen = await changes_within(watcher, ft, 5)
    assert [(i, type(e)) for i, e in errors] == [("b", ResponseError)]
    assert client.calls == [(0, "b")]
    assert summary(seen) == [("a", None, R, 1), ("b", None, R, 1)]
    assert [c.detail.version for c in seen] == ["listed", "detail"]


async def test_terminal_instances_cost_nothing_and_a_restart_is_seen(ft: FakeTime) -> None:
    client = FakeListClient(ft, {"a": C})
    watcher = make(client, ["a"], sweep="list")
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(25)
        assert client.calls == []
        client.statuses["a"] = W  # restarted; no terminal_interval needed
        await ft.advance(10)
    assert summary(seen) == [("a", None, C, 1), ("a", C, W, 2)]


async def test_watch_all_reports_new_instances_and_drops_deleted_ones(ft: FakeTime) -> None:
    client = FakeListClient(ft, {"a": R, "b": R})
    watcher = make(client, watch_all=True, emit_initial=False, gone_after=1)
    seen: list[StatusChange] = []
    errors: list[Exception] = []
    watcher.on_change(seen.append)
    watcher.on_error(lambda i, e: errors.append(e))
    async with watcher:
        await ft.advance(5)
        assert watcher.ids == ("a", "b") and seen == []  # the first pass is silent
        client.statuses["c"] = W  # created
        client.statuses["a"] = invalid("a")  # deleted
        await ft.advance(10)
    assert summary(seen) == [("c", None, W, 1)]
    assert watcher.ids == ("b", "c")
    assert [type(e) for e in errors] == [InstanceGoneError]


async def test_watch_all_is_all_terminal_only_once_a_whole_pass_listed_the_account(
    ft: FakeTime,
) -> None:
    # One entry a page: the first page shows only an ended instance, the second a running one.
    client = FakeListClient(ft, {"a": C, "b": R}, page_cap=1)
    watcher = make(client, watch_all=True, stop_when_all_terminal=True)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    run = asyncio.create_task(watcher.run())
    await ft.advance(0.1)
    assert not run.done(), "nothing is known of the account yet"
    assert summary(seen) == [("a", None, C, 1)]
    await ft.advance(25)
    assert not run.done() and summary(seen)[1:] == [("b", None, R, 1)]
    client.statuses["b"] = C
    await ft.run_until(run)
    assert summary(seen)[2:] == [("b", R, C, 2)]
    assert seen[-1].detail.version == "detail"  # confirmed by a lookup, as any listed change
    # Started again, it lists the account again before it can end: c came while it was stopped.
    client.statuses["c"] = R
    run = asyncio.create_task(watcher.run())
    await ft.advance(12)
    assert not run.done() and summary(seen)[3:] == [("c", None, R, 1)]
    client.statuses["c"] = C
    await ft.run_until(run)
    assert summary(seen)[4:] == [("c", R, C, 2)]


async def test_watch_all_waits_for_a_pass_not_cut_short_before_it_is_all_terminal(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": R, "b": C}, page_cap=1)
    cut_first_pass_after_one_page(client)
    watcher = make(client, watch_all=True, stop_when_all_terminal=True)
    seen: list[StatusChange] = []
    errors: list[Exception] = []
    watcher.on_change(seen.append)
    watcher.on_error(lambda i, e: errors.append(e))
    run = asyncio.create_task(watcher.run())
    await ft.advance(5)
    assert len(errors) == PAGE_RETRIES + 1 and watcher.ids == ("a",)
    client.statuses["a"] = C  # every instance listed so far has ended; b was never listed
    await ft.run_until(run)
    # The next pass confirms a's change first, and goes on to list b before the run ends.
    assert summary(seen) == [("a", None, R, 1), ("a", R, C, 2), ("b", None, C, 1)]
    assert watcher.ids == ("a", "b")


async def test_watch_all_counts_what_a_cut_short_first_pass_missed_as_found_first(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": R, "b": R}, page_cap=1)
    cut_first_pass_after_one_page(client)
    watcher = make(client, watch_all=True, emit_initial=False)
    # The first pass lists a only; b, there from the start, comes in the next (whole) one.
    assert await changes_within(watcher, ft, 25) == []
    assert watcher.ids == ("a", "b")


async def test_watch_all_of_an_empty_account_ends_after_its_first_pass(ft: FakeTime) -> None:
    client = FakeListClient(ft, {})
    watcher = make(client, watch_all=True, stop_when_all_terminal=True)
    run = asyncio.create_task(watcher.run())
    await ft.run_until(run)
    assert client.list_calls == [(0, 0, 100)] and client.calls == []


async def test_wait_for_works_on_any_id_in_list_mode(ft: FakeTime) -> None:
    client = FakeListClient(ft, {"a": W, "z": W})
    watcher = make(client, ["a"], sweep="list")
    async with watcher:
        wait = asyncio.create_task(watcher.wait_for("z", R))
        await ft.advance(5)
        client.statuses["z"] = R
        await ft.run_until(wait)
    assert wait.result().status == R


@pytest.mark.parametrize("watched", [2, 5, 100])
async def test_auto_stays_on_detail_for_a_few_ids_of_a_large_account(watched: int) -> None:
    requests = {}
    for mode in ("detail", "auto"):
        ft = FakeTime()
        client = FakeListClient(ft, account(10_000))
        async with make(client, list(client.statuses)[:watched], sweep=mode):
            await ft.advance(35)
        requests[mode] = (len(client.calls), [s for _, s, _ in client.list_calls])
    probes = [] if watched < 3 else [(watched - 2) * 100]  # one page, not empty: stay on detail
    assert requests["auto"] == (requests["detail"][0], probes)


async def test_auto_sweeps_when_most_of_the_account_is_watched(ft: FakeTime) -> None:
    client = FakeListClient(ft, account(300))
    watcher = make(client, list(client.statuses), sweep="auto")
    async with watcher:
        await ft.advance(25)
    assert client.calls == []  # no detail polls at all
    assert [s for _, s, _ in client.list_calls][:5] == [29_800, 0, 100, 200, 300]


async def test_a_checkpoint_resumes_in_list_mode(ft: FakeTime, tmp_path: Any) -> None:
    path = tmp_path / "c.json"
    client = FakeListClient(ft, {"a": W, "b": R})
    await changes_within(make(client, ["a", "b"], sweep="list", checkpoint=path), ft, 5)
    client.statuses["a"] = R
    second = make(client, ["a", "b"], sweep="list", checkpoint=path)
    assert summary(await changes_within(second, ft, 5)) == [("a", W, R, 2)]


@pytest.mark.parametrize("options", [{"sweep": "list"}, {"watch_all": True}], ids=str)
async def test_a_watch_resumed_on_ended_instances_ends_once_the_list_shows_them_still_ended(
    ft: FakeTime, tmp_path: Any, options: dict[str, Any]
) -> None:
    path = tmp_path / "c.json"
    client = FakeListClient(ft, {"a": C, "b": C})
    ids = [] if "watch_all" in options else ["a", "b"]
    first = make(client, ids, checkpoint=path, stop_when_all_terminal=True, **options)
    await ft.run_until(asyncio.create_task(first.run()))
    # Resumed from the checkpoint: the list shows the statuses saved, so nothing is new.
    second = make(client, ids, checkpoint=path, stop_when_all_terminal=True, **options)
    seen: list[StatusChange] = []
    second.on_change(seen.append)
    run = asyncio.create_task(second.run())
    await ft.advance(5)
    assert run.done() and seen == [] and client.calls == []
    await run


async def test_watch_all_keeps_an_id_removed_by_hand_unwatched_until_it_is_added(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": R, "b": R})
    watcher = make(client, watch_all=True)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        watcher.remove("a")
        client.statuses["a"] = C
        await ft.advance(20)  # two passes list it again: it is not taken for a new instance
        assert watcher.ids == ("b",) and client.calls == []
        watcher.add("a")
        await ft.advance(10)
    assert summary(seen) == [("a", None, R, 1), ("b", None, R, 1), ("a", None, C, 1)]
    assert watcher.ids == ("b", "a")


async def test_watch_all_lets_go_of_a_removed_id_once_a_whole_pass_no_longer_lists_it(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": R, "b": R})
    watcher = make(client, watch_all=True)
    excluded = watcher._tracker.excluded  # what is kept per id removed by hand
    async with watcher:
        await ft.advance(5)
        watcher.remove("a", "b")
        await ft.advance(10)
        assert excluded == {"a", "b"}
        client.statuses["a"] = invalid("a")  # deleted
        await ft.advance(10)
    assert excluded == {"b"} and watcher.ids == ()


async def test_watch_all_resumed_from_a_checkpoint_reports_an_instance_deleted_meanwhile(
    ft: FakeTime, tmp_path: Any
) -> None:
    path = tmp_path / "c.json"
    client = FakeListClient(ft, {"a": R, "b": R})
    await changes_within(make(client, watch_all=True, checkpoint=path), ft, 5)
    client.statuses["b"] = invalid("b")  # deleted while nothing watched: no page shows it
    second = make(client, watch_all=True, checkpoint=path, gone_after=1)
    assert second.ids == ("a", "b"), "the account as saved is watched from the start"
    errors: list[tuple[str | None, Exception]] = []
    second.on_error(lambda i, e: errors.append((i, e)))
    assert await changes_within(second, ft, 5) == []
    assert [(i, type(e)) for i, e in errors] == [("b", InstanceGoneError)]
    assert second.ids == ("a",)
    assert list(json.loads(path.read_text())["instances"]) == ["a"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"sweep": "sometimes"}, ValueError),
        ({"sweep": "detail", "watch_all": True}, ValueError),
    ],
)
def test_bad_sweep_options_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        InstanceWatcher(FakeListClient(FakeTime()), **options)


@pytest.mark.parametrize("options", [{"sweep": "list"}, {"watch_all": True}])
def test_a_client_that_cannot_list_is_refused_for_list_mode(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="cannot list"):
        InstanceWatcher(FakeClient(FakeTime()), **options)


async def test_a_status_listed_while_an_older_poll_is_in_flight_is_confirmed_after_it(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": W})
    client.latency = 15  # detail lookups take longer than a pass
    watcher = make(client, ["a"], sweep="list", emit_initial=False)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        client.statuses["a"] = D  # listed at 10: a lookup starts, and will answer Waiting
        client.script("a", W)
        await ft.advance(10)
        client.statuses["a"] = R  # listed at 20, while that lookup is still in flight
        await ft.advance(30)
    # The lookup that began before the list showed Running is followed by one at once (25),
    # not left for the next pass (30): what the list showed is never dropped.
    assert client.calls[:2] == [(10, "a"), (25, "a")]
    assert summary(seen) == [("a", W, R, 1)]


async def test_a_listed_status_passed_before_its_lookup_is_reported_in_between(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": W, "b": W})
    watcher = make(client, ["a", "b"], sweep="list")
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        client.statuses.update(a=D, b=D)  # the list shows Deploying...
        client.script("a", R)  # ...and a has moved on to Running by its lookup
        client.script("b", W)  # b is back in Waiting: Deploying is not between W and W
        await ft.advance(10)
    assert summary(seen) == [
        ("a", None, W, 1),
        ("b", None, W, 1),
        ("a", W, D, 2),
        ("a", D, R, 3),
    ]
    assert [c.detail.version for c in seen[2:]] == ["listed", "detail"]


async def around_a_long_lookup(
    ft: FakeTime,
    latency: float,
    timeline: list[tuple[float, str]],
    *,
    answer: str | None = None,
) -> tuple[FakeListClient, list[StatusChange]]:
    """Watch "a", known Waiting, in list mode while a lookup of it runs from 10 to 10 + latency.

    Its entry on the page at 10 does not parse, which starts the lookup (answering ``answer``
    if given, else the status at its end); ``timeline``: (seconds to advance, the status then).
    """
    client = FakeListClient(ft, {"a": W})
    client.latency = latency
    watcher = make(client, ["a"], sweep="list", emit_initial=False)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        client.list_script.append("bad:a")
        if answer is not None:
            client.script("a", answer)
        for wait, status in timeline:
            await ft.advance(wait)
            client.statuses["a"] = status
        await ft.advance(40)
    return client, seen


async def test_a_status_listed_while_an_older_poll_runs_and_passed_by_its_answer_comes_first(
    ft: FakeTime,
) -> None:
    # Deploying is listed at 20; the lookup answers Running at 25.
    client, seen = await around_a_long_lookup(ft, 15, [(10, D), (7, R)])
    # Deploying lies between the known Waiting and the answer's Running: the page saw it before
    # the lookup answered, so it is reported before the answer, and nothing is left to confirm.
    assert summary(seen) == [("a", W, D, 1), ("a", D, R, 2)]
    assert [c.detail.version for c in seen] == ["listed", "detail"]
    assert [c.skipped for c in seen] == [(), ()]
    assert client.calls == [(10, "a")]


async def test_a_status_listed_while_a_lookup_runs_and_shown_by_its_answer_needs_no_other(
    ft: FakeTime,
) -> None:
    # Running is listed at 20, and is what the lookup answers at 25.
    client, seen = await around_a_long_lookup(ft, 15, [(10, R)])
    assert summary(seen) == [("a", W, R, 1)]
    assert [c.skipped for c in seen] == [(D,)]
    assert client.calls == [(10, "a")]


async def test_every_status_listed_during_one_long_lookup_is_reported_in_order(
    ft: FakeTime,
) -> None:
    # Deploying is listed at 20, Running at 30, and the lookup answers Completed at 35.
    client, seen = await around_a_long_lookup(ft, 25, [(10, D), (10, R), (7, C)])
    assert summary(seen) == [("a", W, D, 1), ("a", D, R, 2), ("a", R, C, 3)]
    assert [c.detail.version for c in seen] == ["listed", "listed", "detail"]
    assert client.calls == [(10, "a")]


async def test_statuses_listed_after_an_older_answer_are_confirmed_and_all_reported(
    ft: FakeTime,
) -> None:
    # Deploying is listed at 20 and Running at 30; the lookup answers Waiting at 35.
    client, seen = await around_a_long_lookup(ft, 25, [(10, D), (10, R)], answer=W)
    # The answer is not newer than the pages: both are confirmed by the lookup that follows it
    # (35), and Deploying, between the known Waiting and its Running, is not dropped.
    assert client.calls == [(10, "a"), (35, "a")]
    assert summary(seen) == [("a", W, D, 1), ("a", D, R, 2)]
    assert [c.detail.version for c in seen] == ["listed", "detail"]


async def test_a_first_listing_while_a_lookup_runs_never_turns_into_a_step_back(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": W})
    client.latency = 15
    client.list_script.append("bad:a")  # the first pass cannot read a: a lookup starts at 0...
    client.script("a", W)  # ...and answers Waiting at 15, older than the page below
    watcher = make(client, ["a"], sweep="list")
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        client.statuses["a"] = D  # listed at 10, the first time a is seen
        await ft.advance(30)
    # Taken at once, the page would have made the older answer a change from Deploying back to
    # Waiting; weighed against it, the page is confirmed after it.
    assert summary(seen) == [("a", None, W, 1), ("a", W, D, 2)]
    assert client.calls == [(0, "a"), (15, "a")]


async def test_an_instance_shown_again_by_a_shifted_page_after_it_moved_on_is_not_dropped(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": W, "b": W, "c": W}, page_cap=2)
    watcher = make(client, ["a", "b", "c"], sweep="list", emit_initial=False)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(0.25)  # the first page (a, b) is read at 0...
        client.statuses = {"new": W, **client.statuses, "b": D}  # ...then one is created first
        await ft.advance(5)  # the page at 0.5 shows b again, now Deploying
        client.statuses["b"] = R  # and it moves on before the next pass
        await ft.advance(20)
    assert summary(seen) == [("b", W, D, 1), ("b", D, R, 2)]


async def test_a_status_listed_again_while_its_lookup_runs_is_still_reported_in_between(
    ft: FakeTime,
) -> None:
    client = FakeListClient(ft, {"a": D})
    client.latency = 15  # the lookup that confirms Running outlasts two more passes
    watcher = make(client, ["a"], sweep="list", emit_initial=False)
    seen: list[StatusChange] = []
    watcher.on_change(seen.append)
    async with watcher:
        await ft.advance(5)
        client.statuses["a"] = R  # listed at 10, 15 and 20 while its lookup is in flight...
        client.script("a", C)  # ...which finds the instance already Completed
        await ft.advance(30)
    # Listing Running again must not make it look as if the lookup began before it was seen.
    assert summary(seen) == [("a", D, R, 1), ("a", R, C, 2)]
    assert [c.skipped for c in seen] == [(), ()]


async def test_the_checkpoint_is_saved_while_sweeping_not_only_at_stop(
    ft: FakeTime, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves: list[float] = []

    async def inline(write: Any, *args: Any) -> None:
        saves.append(ft.now)
        write(*args)

    monkeypatch.setattr(tracker_module, "in_thread", inline)
    client = FakeListClient(ft, {"a": W})
    async with make(client, ["a"], sweep="list", checkpoint=tmp_path / "c.json"):
        await ft.advance(5)
        client.statuses["a"] = R
        await ft.advance(20)
        assert saves and saves[-1] < 25  # saved during the run, as the rotation would have
    assert json.loads((tmp_path / "c.json").read_bytes())["instances"] == {
        "a": {"status": R, "seq": 2}
    }
