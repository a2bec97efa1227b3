"""The checkpoint: its file format, atomic writes off the event loop, and resuming from it."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiocontainer import _checkpoint as checkpoint_module
from aiocontainer import _tracker as tracker_module
from aiocontainer.models import StatusChange
from tests.watcher_fakes import C, D, FakeClient, FakeTime, R, W, changes_within, make, summary


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


def read_checkpoint(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


async def test_the_checkpoint_holds_status_and_seq_of_each_id(ft: FakeTime, tmp_path: Path) -> None:
    path = tmp_path / "watch.json"
    path.write_text("{}")  # corrupt: a fresh start
    client = FakeClient(ft, {"a": R, "b": W})
    client.script("a", W)
    watcher = make(client, ["a", "b"], checkpoint=path)
    async with watcher:
        await ft.advance(15)
    document = read_checkpoint(path)
    assert document == {
        "format": "aiocontainer.watcher.checkpoint",
        "version": 1,
        "instances": {"a": {"status": R, "seq": 2}, "b": {"status": W, "seq": 1}},
    }
    assert sorted(os.listdir(tmp_path)) == ["watch.json", "watch.json.lock"]  # no temp file left


async def test_the_checkpoint_is_written_once_per_interval_and_at_stop(
    ft: FakeTime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves: list[float] = []

    async def inline(write: Callable[..., None], *args: Any) -> None:
        saves.append(ft.now)
        write(*args)

    monkeypatch.setattr(tracker_module, "in_thread", inline)
    ids = [f"i{n}" for n in range(5)]
    client = FakeClient(ft, dict.fromkeys(ids, R))
    for instance_id in ids:
        client.script(instance_id, *[W, R] * 20)  # a change at every poll
    watcher = make(client, ids, checkpoint=tmp_path / "c.json")
    async with watcher:
        await ft.advance(100)
    # Slots are 2 s apart: the first save follows the first poll's slot, then one per interval.
    assert saves == [2, 12, 22, 32, 42, 52, 62, 72, 82, 92, 100]
    # i0 was polled at 0, 10, ..., 100 (11 changes), the others at 2, 12, ..., 92 (10 each).
    expected = {i: {"status": R, "seq": 10} for i in ids} | {"i0": {"status": W, "seq": 11}}
    assert read_checkpoint(tmp_path / "c.json")["instances"] == expected


async def test_the_file_is_written_in_a_worker_thread(
    ft: FakeTime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    write = checkpoint_module.write_atomically

    def recording(path: str, data: bytes) -> None:
        threads.append(threading.get_ident())
        write(path, data)

    monkeypatch.setattr(checkpoint_module, "write_atomically", recording)
    async with make(FakeClient(ft, {"a": R}), ["a"], checkpoint=tmp_path / "c.json"):
        await ft.advance(15)
    assert threads and threading.get_ident() not in threads
    assert read_checkpoint(tmp_path / "c.json")["instances"] == {"a": {"status": R, "seq": 1}}


def test_a_write_uses_a_temp_file_in_the_same_directory_then_fsync_then_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    replace, fsync = os.replace, os.fsync

    def recording_fsync(fd: int) -> None:
        steps.append("fsync")
        fsync(fd)

    def recording_replace(source: str, target: str) -> None:
        steps.append(f"replace, same directory: {Path(source).parent == tmp_path}")
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    checkpoint_module.write_atomically(str(tmp_path / "c.json"), b"{}")
    assert steps[:2] == ["fsync", "replace, same directory: True"]
    assert (tmp_path / "c.json").read_bytes() == b"{}"


async def test_a_new_watcher_resumes_from_the_checkpoint(ft: FakeTime, tmp_path: Path) -> None:
    path = tmp_path / "watch.json"
    client = FakeClient(ft, {"a": W, "b": R, "c": D})
    first = make(client, ["a", "b", "c"], checkpoint=path)
    async with first:
        await ft.advance(15)
        client.statuses["c"] = R
        await ft.advance(10)
    # While nothing watches: a moves on, b stays, c moves twice (only the last is visible).
    client.statuses.update(a=R, c=C)
    second = make(client, ["a", "b", "c"], checkpoint=path)
    seen: list[StatusChange] = []
    second.on_change(seen.append)
    async with second:
        await ft.advance(15)
    assert summary(seen) == [("a", W, R, 2), ("c", R, C, 3)]
    assert seen[0].skipped == (D,)
    assert read_checkpoint(path)["instances"] == {
        "a": {"status": R, "seq": 2},
        "b": {"status": R, "seq": 1},
        "c": {"status": C, "seq": 3},
    }


async def test_a_resumed_watcher_polls_checkpointed_terminal_ids(
    ft: FakeTime, tmp_path: Path
) -> None:
    path = tmp_path / "watch.json"
    client = FakeClient(ft, {"a": C})
    async with make(client, ["a"], checkpoint=path):
        await ft.advance(5)
    client.statuses["a"] = W  # restarted while nothing watched
    second = make(client, ["a"], checkpoint=path, emit_initial=False)
    assert summary(await changes_within(second, ft, 5)) == [("a", C, W, 2)]


async def test_checkpointed_ids_that_are_not_watched_are_kept_not_polled(
    ft: FakeTime, tmp_path: Path
) -> None:
    path = tmp_path / "watch.json"
    client = FakeClient(ft, {"a": W, "b": W})
    async with make(client, ["a", "b"], checkpoint=path):
        await ft.advance(15)
    client.statuses.update(a=R, b=R)
    calls = client.count("b")
    second = make(client, ["a"], checkpoint=path)
    seen: list[StatusChange] = []
    second.on_change(seen.append)
    async with second:
        await ft.advance(15)
        assert client.count("b") == calls
        assert read_checkpoint(path)["instances"]["b"] == {"status": W, "seq": 1}
        second.add("b")  # added later, it continues from the checkpoint
        await ft.advance(15)
    assert summary(seen) == [("a", W, R, 2), ("b", W, R, 2)]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": "something else", "version": 1, "instances": {}}',
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 99, "instances": {}}',
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1, "instances": []}',
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1, "instances": {"a": 1}}',
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1,'
        b' "instances": {"a": {"status": "Running", "seq": -1}}}',
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1,'
        b' "instances": {"a": {"status": 3, "seq": 1}}}',
        b'{"format": "aiocontainer.watcher.checkpoint", "version": 1,'
        b' "instances": {"a/b": {"status": "Running", "seq": 1}}}',
        b"\xff\xfe",
    ],
)
async def test_a_corrupt_checkpoint_warns_and_starts_fresh(
    ft: FakeTime, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "watch.json"
    path.write_bytes(content)
    client = FakeClient(ft, {"a": R})
    with caplog.at_level(logging.WARNING, logger="aiocontainer"):
        watcher = make(client, ["a"], checkpoint=path)
    assert any("corrupt" in r.getMessage() and r.name == "aiocontainer" for r in caplog.records)
    assert summary(await changes_within(watcher, ft, 1)) == [("a", None, R, 1)]


async def test_a_missing_checkpoint_warns_and_starts_fresh(
    ft: FakeTime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "none-yet.json"
    with caplog.at_level(logging.WARNING, logger="aiocontainer"):
        watcher = make(FakeClient(ft, {"a": R}), ["a"], checkpoint=str(path))
    assert any("does not exist" in r.getMessage() for r in caplog.records)
    async with watcher:
        await ft.advance(1)
    assert read_checkpoint(path)["instances"] == {"a": {"status": R, "seq": 1}}


async def test_an_unwritable_checkpoint_is_reported_not_fatal(ft: FakeTime, tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "watch.json"
    watcher = make(FakeClient(ft, {"a": R}), ["a"], checkpoint=path)
    errors: list[tuple[str | None, Exception]] = []
    watcher.on_error(lambda i, e: errors.append((i, e)))
    async with watcher:
        await ft.advance(15)
    assert errors and all(i is None and isinstance(e, OSError) for i, e in errors)
