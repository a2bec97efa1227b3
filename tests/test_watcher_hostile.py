"""The watcher against hostile input: callbacks that wait, bad bookkeeping, lookalike ids, scale."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from aiocontainer import _checkpoint as checkpoint_module
from aiocontainer._checkpoint import parse
from aiocontainer._diff import Snapshot
from aiocontainer._rotation import Rotation
from aiocontainer._schedule import SchedulePolicy
from aiocontainer.errors import (
    CheckpointError,
    CheckpointLockedError,
    ResponseError,
    WaitTimeoutError,
)
from aiocontainer.models import InstanceDetail, StatusChange
from tests.watcher_fakes import FakeClient, FakeTime, R, W, changes_within, make, settle, summary

ID = "4c1f43ddb030483e89b55413bee6c004"


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


def checkpoint_of(records: dict[str, Any]) -> bytes:
    document = {"format": "aiocontainer.watcher.checkpoint", "version": 1, "instances": records}
    return json.dumps(document).encode()


# -- a callback that waits -----------------------------------------------------------------------


async def test_leaving_async_with_ends_within_drain_timeout_when_a_callback_waits(
    ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(ft, {"a": W, "b": W})  # "b" never gets there
    watcher = make(client, ["a"], drain_timeout=2)
    waited: list[BaseException] = []

    async def waits(change: StatusChange) -> None:
        try:
            await watcher.wait_for("b", R)
        except BaseException as exc:
            waited.append(exc)
            raise

    watcher.on_change(waits)
    task = asyncio.create_task(watcher.run())
    await ft.advance(15)
    watcher.stop()
    await ft.advance(1.9)
    assert not task.done()  # the callback gets its drain time
    await ft.advance(0.1)
    assert task.done() and task.exception() is None
    assert [type(e) for e in waited] == [asyncio.CancelledError]
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_callback_whose_wait_is_the_last_does_not_wait_for_itself(
    ft: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(ft, {"a": W, "b": W})
    watcher = make(client, ["a"], drain_timeout=2)
    outcomes: list[BaseException] = []

    async def waits(change: StatusChange) -> None:
        try:
            await watcher.wait_for("b", R, timeout=5)
        except WaitTimeoutError as exc:
            outcomes.append(exc)

    watcher.on_change(waits)
    # A wait without a run: "a" is polled, its change starts the callback, whose own wait on
    # "b" outlives the first one and so ends the last wait from inside a delivery task.
    outer = asyncio.create_task(watcher.wait_for("a", R, timeout=3))
    await ft.advance(10)
    assert isinstance(outer.exception(), WaitTimeoutError)
    assert [type(e) for e in outcomes] == [WaitTimeoutError]
    await settle()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert not any(r.levelno >= logging.ERROR for r in caplog.records)
    assert not watcher.running and "stopped" in repr(watcher)


# -- bookkeeping that must not kill the watcher --------------------------------------------------


async def test_any_failure_to_save_goes_to_on_error_and_polling_goes_on(
    ft: FakeTime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = checkpoint_module.write_atomically
    broken = [True]

    def flaky(path: str, data: bytes) -> None:
        if broken[0]:
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "not OSError")
        write(path, data)

    monkeypatch.setattr(checkpoint_module, "write_atomically", flaky)
    client = FakeClient(ft, {"a": R})
    client.script("a", W)
    path = tmp_path / "c.json"
    watcher = make(client, ["a"], checkpoint=path)
    errors: list[Exception] = []
    watcher.on_error(lambda i, e: errors.append(e))
    async with watcher:
        await ft.advance(25)
        for _ in range(50):  # the failed saves run in a worker thread
            if errors:
                break
            await asyncio.sleep(0.01)
        assert errors and isinstance(errors[0], UnicodeEncodeError)
        assert client.count("a") == 3  # polling went on at its pace
        broken[0] = False
        await ft.advance(10)
    assert json.loads(path.read_bytes())["instances"] == {"a": {"status": R, "seq": 2}}


async def test_a_status_that_is_not_valid_text_is_a_bad_answer_not_a_change(
    ft: FakeTime, tmp_path: Path
) -> None:
    client = FakeClient(ft, {"a": R, "b": R})
    client.script("a", "Run\ud800ning")
    path = tmp_path / "c.json"
    watcher = make(client, ["a", "b"], checkpoint=path, max_backoff=1)
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    seen = await changes_within(watcher, ft, 15)
    assert summary(seen) == [("b", None, R, 1), ("a", None, R, 1)]
    [(instance_id, error)] = errors
    assert instance_id == "a" and isinstance(error, ResponseError)
    saved = json.loads(path.read_bytes())["instances"]
    assert saved == {"a": {"status": R, "seq": 1}, "b": {"status": R, "seq": 1}}


async def test_what_the_watcher_accepts_it_saves_and_reloads(ft: FakeTime, tmp_path: Path) -> None:
    ids = [f"i{n}" for n in range(50)]
    statuses: dict[str, Any] = dict.fromkeys(ids, R)
    statuses.update(i0="", i1="Ünïcode ✓", i2='quote " and \\ backslash')
    client = FakeClient(ft, statuses)
    path = tmp_path / "c.json"
    first = make(client, ids, checkpoint=path, interval=50)
    assert len(await changes_within(first, ft, 55)) == 50
    second = make(client, ids, checkpoint=path, interval=50)
    assert await changes_within(second, ft, 55) == []  # nothing is reported again as new


async def test_one_bad_record_never_discards_the_others(
    ft: FakeTime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [f"i{n}" for n in range(50)]
    records: dict[str, Any] = {i: {"status": R, "seq": 1} for i in ids}
    records.update({"bad/id": {"status": R, "seq": 1}, "i50": {"status": 7, "seq": 1}})
    records["i51"] = {"status": R, "seq": -1}
    records["i52"] = ["not", "an", "object"]
    path = tmp_path / "c.json"
    path.write_bytes(checkpoint_of(records))
    client = FakeClient(ft, dict.fromkeys([*ids, "i50"], R))
    with caplog.at_level(logging.WARNING, logger="aiocontainer"):
        watcher = make(client, [*ids, "i50"], checkpoint=path, interval=51)
    assert any("4 corrupt record(s) skipped, 50 kept" in r.getMessage() for r in caplog.records)
    assert summary(await changes_within(watcher, ft, 55)) == [("i50", None, R, 1)]


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1, "instances": '
        + b'{"a": ' * 5_000
        + b"1"
        + b"}" * 5_001,
        checkpoint_of({"a": {"status": R, "seq": 1}})[:-1] + b"\x00",
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1e400, "instances": {}}',
        b'{"format": "aiocontainer.watcher.checkpoint", "version": true, "instances": {}}',
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1, "instances": {"a": '
        b'{"status": "\\ud800", "seq": 1}}}',
        "\ufeff{}".encode(),
    ],
)
def test_an_odd_checkpoint_is_a_typed_error_never_a_foreign_one(raw: bytes) -> None:
    with pytest.raises(CheckpointError):
        parse(raw)


def test_a_huge_seq_or_a_non_finite_number_costs_only_its_record() -> None:
    raw = (
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1, "instances": {'
        b'"a": {"status": "Running", "seq": 1.5}, "b": {"status": "Running", "seq": 2}}}'
    )
    states, skipped = parse(raw)
    assert states == {"b": Snapshot(status="Running", seq=2)} and len(skipped) == 1
    with pytest.raises(CheckpointError):
        parse(raw.replace(b"1.5", b"1e400"))


async def test_a_deeply_nested_checkpoint_file_is_a_logged_fresh_start(
    ft: FakeTime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with caplog.at_level(logging.WARNING, logger="aiocontainer"):
        watcher = make(FakeClient(ft, {"a": R}), ["a"], checkpoint=path)
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert summary(await changes_within(watcher, ft, 5)) == [("a", None, R, 1)]


# -- one instance, one key -----------------------------------------------------------------------


async def test_case_variants_of_an_id_are_one_instance_named_by_the_watched_id(
    ft: FakeTime,
) -> None:
    client = FakeClient(ft, {ID: R})

    async def body_with_another_id(instance_id: str) -> InstanceDetail:
        client.calls.append((ft.now, instance_id))
        return InstanceDetail(id="someone-else", status=R)

    client.get_instance = body_with_another_id  # type: ignore[method-assign]
    watcher = make(client, [ID.upper(), ID])
    watcher.add(ID[:8].upper() + ID[8:])
    assert watcher.ids == (ID,)
    seen = await changes_within(watcher, ft, 25)
    assert summary(seen) == [(ID, None, R, 1)]
    assert all(i == ID for _, i in client.calls)  # looked up by the watched id, in lower case
    assert (await watcher.wait_for(ID.upper(), R)).status == R
    watcher.remove(ID.upper())
    assert watcher.ids == ()


def test_checkpointed_case_variants_are_one_instance_the_latest_wins() -> None:
    states, skipped = parse(
        checkpoint_of({ID.upper(): {"status": W, "seq": 1}, ID: {"status": R, "seq": 2}})
    )
    assert states == {ID: Snapshot(status=R, seq=2)} and skipped == []


# -- scale of add and remove ---------------------------------------------------------------------


async def test_removing_half_of_a_hundred_thousand_ids_does_not_block_the_loop(
    ft: FakeTime,
) -> None:
    ids = [f"{n:032x}" for n in range(100_000)]
    client = FakeClient(ft, dict.fromkeys(ids, R))
    watcher = make(client, ids, interval=3600)
    async with watcher:
        await ft.advance(10)
        started = time.perf_counter()
        watcher.remove(*ids[::2])
        elapsed = time.perf_counter() - started
        await ft.advance(10)
        assert len(watcher.ids) == 50_000
    assert elapsed < 2.0, elapsed  # was 14 s; about 0.3 s on a loaded 2-core machine


async def test_stale_places_are_compacted_so_memory_stays_bounded() -> None:
    async def fetch(instance_id: str) -> None:
        return None

    rotation: Rotation[None] = Rotation(
        SchedulePolicy(),
        clock=time.monotonic,
        sleep=asyncio.sleep,
        rand=lambda: 0.0,
        fetch=fetch,
        apply=lambda entry, outcome: None,
        wanted=lambda entry: False,
        tick=lambda: None,
    )
    for round_ in range(20):
        entries = rotation.add([f"r{round_}-{n}" for n in range(1_000)], lambda i: None)
        for entry in entries[:900]:
            rotation.discard(entry)
        for entry in entries[900:]:
            rotation.move(entry, front=True)
    assert len(rotation) == 2_000
    assert rotation.places <= 2 * len(rotation) + 64


# -- two watchers, one checkpoint ----------------------------------------------------------------


async def test_a_second_watcher_on_a_locked_checkpoint_is_refused_at_start(
    ft: FakeTime, tmp_path: Path
) -> None:
    path = tmp_path / "c.json"
    client = FakeClient(ft, {"a": R, "b": R})
    first = make(client, ["a"], checkpoint=path)
    second = make(client, ["b"], checkpoint=path)
    async with first:
        with pytest.raises(CheckpointLockedError, match="in use by another watcher") as caught:
            async with second:
                pass
        assert caught.value.path == str(path)
        with pytest.raises(CheckpointLockedError):
            await second.wait_for("b", R)
        await ft.advance(5)
    assert not second.running
    async with second:  # free once the first has stopped
        await ft.advance(5)
    saved = json.loads(path.read_bytes())["instances"]
    assert saved == {"a": {"status": R, "seq": 1}, "b": {"status": R, "seq": 1}}
