"""Long runs under sustained faults: lifecycles end to end, a total outage, retry budgets.

The lifecycle soak watches ``SOAK_INSTANCES`` instances (2,000 unless
``AIOCONTAINER_SOAK_INSTANCES`` says otherwise) from Waiting to a terminal status while 30 % of
requests are faulted. Generated phases last from 3 s (Waiting) to 7 min (Running) of simulated
time, a ratio of 140, so no constant speed makes every phase last several poll intervals of 2,000
ids within a minute on a 2-core machine (one round of 2,000 polls takes about a second here).
The simulated clock therefore runs at ``SOAK_SPEED`` but is paced: it never reaches a moment at
which an instance would have passed through a whole phase since the start of its last successful
poll. Every status in ``sim.history(id)`` is then observable by construction, and the watcher is
held to delivering each one exactly once, in order. The time the pace held the clock back is
printed with the other figures (``pytest -s``).

The pace holds the clock while instances wait and deploy (the first minute or so of simulated
time, about two thirds of the run's requests); once every instance has been seen running nothing
can be skipped, and the clock runs freely at ``SOAK_SPEED`` through the long running phases.
Memory growth is measured from ``RSS_BASELINE_AT`` of the schedule's horizon to the end, a
stretch of several thousand requests (about a quarter of the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from aiocontainer import (
    AiocontainerError,
    ClientStats,
    ContainerClient,
    InstanceDetail,
    InstanceStatus,
    InstanceWatcher,
    StatusChange,
    TransportError,
)
from aiocontainer.errors import InstanceStaleError
from aiocontainer.simulator import Simulator
from tests.conftest import eventually, leftover_tasks

SOAK_INSTANCES = int(os.environ.get("AIOCONTAINER_SOAK_INSTANCES", "2000"))
#: Simulated seconds per second while the pace does not hold the clock back.
SOAK_SPEED = 60.0
#: The fraction of the schedule's horizon at which the RSS baseline is taken.
RSS_BASELINE_AT = 1 / 8
#: Seconds between two polls of one id; 2,000 ids at 30 % faults is about 1,900 requests/s.
SOAK_INTERVAL = max(0.2, 1.5 * SOAK_INSTANCES / 2000)
SOAK_FAULT_RATE = 0.3
SOAK_FAULTS = {
    "http_500": 1.0,
    "http_502": 1.0,
    "http_503": 1.0,
    "http_429:1": 0.25,
    "code_10001": 1.0,
    "code_10012": 1.0,
    "reset": 1.0,
    "hang": 0.25,
    "truncated": 0.25,
    "html": 0.25,
}
RSS_GROWTH_LIMIT = 30 * 1024 * 1024

W, D, R = InstanceStatus.WAITING, InstanceStatus.DEPLOYING, InstanceStatus.RUNNING


# -- what this process holds -------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_connections(port: int) -> int:
    """TCP connections of this process (either end) on ``port``; listeners are not counted."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as rows:
                lines = rows.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
            if inode in inodes and state != "0A" and port in ports:
                count += 1
    return count


class CountingHandler(logging.Handler):
    """Formats every record, as a real handler would, and keeps only a count per level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.counts[record.levelname] += 1


@contextlib.contextmanager
def logs_counted_not_kept() -> Iterator[CountingHandler]:
    """Route the library's log records to a counter instead of the test report.

    pytest keeps every captured record, and a retry warning holds its exception, traceback and
    frames: over a soak that is tens of MiB which the library itself does not keep.
    """
    logger = logging.getLogger("aiocontainer")
    handler = CountingHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)


# -- the paced clock ---------------------------------------------------------------------------


class PacedProbe:
    """Passes lookups to the client and notes, per id, how far the simulated clock may go.

    An id last seen (by a poll that started at simulated time t) in phase k may be left until
    just before phase k + 2 begins: it can then have moved on by at most one status before its
    next successful poll, so nothing it goes through is skipped. An id never seen may not leave
    Waiting.
    """

    def __init__(self, client: ContainerClient, sim: Simulator) -> None:
        self.client = client
        self.sim = sim
        self.begins = {i: [t for _, t in sim.schedule(i)] for i in sim.instance_ids}
        self.limit = {i: begins[1] for i, begins in self.begins.items()}

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        asked_at = self.sim.sim_time
        detail = await self.client.get_instance(instance_id)
        self._seen(instance_id, asked_at)
        return detail

    async def list_page(self, *, start: int, limit: int, cache: Any = None) -> Any:
        """A list page: every instance on it counts as seen at the moment it was asked for."""
        asked_at = self.sim.sim_time
        page = await self.client.list_page(start=start, limit=limit, cache=cache)  # type: ignore[attr-defined]
        for detail in page.details:
            self._seen(detail.id, asked_at)
        return page

    def _seen(self, instance_id: str, asked_at: float) -> None:
        begins = self.begins[instance_id]
        phase = bisect_right(begins, asked_at) - 1
        limit = begins[phase + 2] if phase + 2 < len(begins) else math.inf
        self.limit[instance_id] = max(self.limit[instance_id], limit)


async def pace(sim: Simulator, probe: PacedProbe, *, speed: float, held: list[float]) -> None:
    """Advance the frozen simulator at ``speed`` but never up to any id's limit."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(0.02)
        now = time.monotonic()
        wanted = speed * (now - last)
        allowed = min(probe.limit.values()) - 1e-3 - sim.sim_time
        if allowed < wanted:
            held[0] += (wanted - max(allowed, 0.0)) / speed
        if allowed > 0:
            sim.advance(min(wanted, allowed))
        last = now


# -- 1. lifecycles end to end under 30 % faults ------------------------------------------------


@pytest.mark.soak
@pytest.mark.parametrize(
    "sweep",
    [
        "detail",
        pytest.param(
            "list",
            marks=pytest.mark.skipif(
                not hasattr(ContainerClient, "list_page"), reason="the client cannot list"
            ),
        ),
    ],
)
async def test_every_transition_of_thousands_of_lifecycles_arrives_once_under_faults(
    sweep: str,
) -> None:
    async with Simulator(
        instances=SOAK_INSTANCES,
        seed=2024,
        frozen=True,
        include_seed_instance=False,
        fault_rate=SOAK_FAULT_RATE,
        fault_kinds=SOAK_FAULTS,
    ) as sim:
        ids = sim.instance_ids
        horizon = max(sim.schedule(i)[-1][1] for i in ids)
        port = sim.port
        before_tasks = asyncio.all_tasks()
        connections_before = open_connections(port)
        seen: dict[str, list[tuple[str | None, str, int, Any]]] = defaultdict(list)
        errors: Counter[str] = Counter()
        foreign: list[BaseException] = []
        held = [0.0]
        rss: dict[str, int] = {}
        connections_mid = 0

        def record(change: StatusChange) -> None:
            # Plain tuples, not the changes: the details they carry would swamp the RSS figure.
            seen[change.instance_id].append(
                (change.previous, change.current, change.seq, change.observed_at)
            )
            assert change.skipped == ()

        def complain(instance_id: str | None, exc: Exception) -> None:
            errors[type(exc).__name__] += 1
            if not isinstance(exc, AiocontainerError):
                foreign.append(exc)

        started = time.monotonic()
        with logs_counted_not_kept() as logged:
            async with ContainerClient(
                sim.base_url,
                token=sim.token,
                concurrency=64,
                timeout=0.5,
                backoff_factor=0.05,
                backoff_max=0.5,
            ) as client:
                probe = PacedProbe(client, sim)
                watcher = InstanceWatcher(
                    probe,
                    ids,
                    interval=SOAK_INTERVAL,
                    stop_when_all_terminal=True,
                    concurrency=64,
                    sweep=sweep,
                )
                watcher.on_change(record)
                watcher.on_error(complain)
                pacer = asyncio.create_task(pace(sim, probe, speed=SOAK_SPEED, held=held))
                run = asyncio.create_task(watcher.run())
                while not run.done() and sim.sim_time < horizon * RSS_BASELINE_AT:
                    await asyncio.sleep(0.05)
                gc.collect()
                rss["baseline"] = rss_bytes()
                connections_mid = open_connections(port)
                baseline_at = time.monotonic() - started
                baseline_requests = client.stats.requests
                await asyncio.wait_for(run, timeout=600)
                pacer.cancel()
                await asyncio.gather(pacer, return_exceptions=True)
                # The watcher stopped itself: nothing of it runs on, before the client closes.
                assert await leftover_tasks(before_tasks) == set()
                gc.collect()
                rss["end"] = rss_bytes()
                elapsed = time.monotonic() - started
                stats = client.stats
                final = watcher.snapshot()
        await eventually(
            lambda: open_connections(port) == connections_before,
            within=5,
            what="the client's connections to close",
        )
        assert await leftover_tasks(before_tasks) == set()

        faults = sim.stats["faults"]
        growth = rss["end"] - rss["baseline"]
        print(
            f"\nsoak ({sweep}): {len(ids)} instances, {sum(map(len, seen.values()))} changes, "
            f"{stats.requests} requests ({stats.retries} retries, "
            f"{stats.failures} failed lookups), "
            f"{elapsed:.1f} s (RSS baseline at {baseline_at:.1f} s, "
            f"{baseline_requests} requests; clock held back {held[0]:.1f} s)\n"
            f"soak: faults served {dict(sorted(faults.items()))}\n"
            f"soak: errors reported {dict(sorted(errors.items()))}; "
            f"log records {dict(sorted(logged.counts.items()))}\n"
            f"soak: RSS {rss['baseline'] / 2**20:.1f} MiB at the baseline, "
            f"{rss['end'] / 2**20:.1f} MiB at the end ({growth / 2**20:+.1f} MiB); "
            f"{connections_mid} connections mid-run, {open_connections(port)} after"
        )

        assert not foreign, foreign[:3]
        for instance_id in ids:
            history = sim.history(instance_id)
            assert history[-1] in InstanceStatus.TERMINAL, instance_id
            got = seen[instance_id]
            assert [current for _, current, _, _ in got] == history, instance_id
            assert [previous for previous, _, _, _ in got] == [None, *history[:-1]]
            assert [seq for _, _, seq, _ in got] == list(range(1, len(history) + 1))
            stamps = [at for _, _, _, at in got]
            assert stamps == sorted(stamps)
            assert final[instance_id].status == history[-1]
        assert set(seen) == set(ids)
        # The faults were real: every kind of the mix was served, and polls did fail.
        assert set(faults) == {kind.split(":")[0] for kind in SOAK_FAULTS}
        assert stats.retries > 0
        # A pass needs few requests, so in list mode a lookup may never fail after its retries.
        assert errors["TransportError"] > 0 or sweep == "list"
        assert connections_mid > 0  # the count sees the client's connections when there are some
        assert growth < RSS_GROWTH_LIMIT


# -- 2. a total outage -------------------------------------------------------------------------


@pytest.mark.soak
@pytest.mark.parametrize("sweep", ["detail", "list"])
async def test_a_total_outage_invents_nothing_and_is_caught_up_after(sweep: str) -> None:
    interval = 0.1
    async with Simulator(instances=50, seed=5, frozen=True, include_seed_instance=False) as sim:
        ids = sim.instance_ids
        async with ContainerClient(
            sim.base_url, token=sim.token, timeout=0.5, backoff_factor=0.01, backoff_max=0.05
        ) as client:
            watcher = InstanceWatcher(client, ids, interval=interval, sweep=sweep)
            changes: list[StatusChange] = []
            errors: list[tuple[str | None, Exception]] = []
            watcher.on_change(changes.append)
            watcher.on_error(lambda instance_id, exc: errors.append((instance_id, exc)))
            async with watcher:
                # A change reaches callbacks through their queue, a moment after the snapshot.
                await eventually(
                    lambda: len(watcher.snapshot()) == len(changes) == len(ids),
                    within=10,
                    what="first polls and their delivery",
                )
                assert [c.current for c in changes] == [W] * len(ids)

                await sim.suspend()
                # Answers already on their way when the listener closed may still land.
                await asyncio.sleep(0.05)
                known = dict(watcher.snapshot())
                assert {i: d.status for i, d in known.items()} == dict.fromkeys(ids, W)
                outage_started = len(changes), len(errors)
                moved = dict.fromkeys(ids[:10], D) | dict.fromkeys(ids[10:20], R)
                for instance_id, status in moved.items():
                    if status == R:
                        sim.set_status(instance_id, D)
                    sim.set_status(instance_id, status)
                # Away and back while nobody could look: polling cannot tell.
                for instance_id in ids[20:25]:
                    sim.set_status(instance_id, D)
                    sim.set_status(instance_id, W)
                await asyncio.sleep(20 * interval)  # past the longest backoff of 8 intervals

                assert len(changes) == outage_started[0], changes[outage_started[0] :]
                during = errors[outage_started[1] :]
                # Every id noticed the outage; in list mode the failed pages, about no one
                # instance, are reported with None first.
                assert {i for i, _ in during} - {None} == set(ids)
                assert (None in {i for i, _ in during}) is (sweep == "list")
                # Lookups fail; an instance unseen for stale_after may be reported stale, once.
                failed = (TransportError, InstanceStaleError)
                assert all(isinstance(exc, failed) for _, exc in during)
                # The last known details stand, the very same objects.
                assert all(watcher.snapshot()[i] is known[i] for i in ids)

                await sim.resume()
                recovered_at = time.monotonic()
                await eventually(
                    lambda: all(watcher.snapshot()[i].status == sim.status(i) for i in ids),
                    # An id that failed four times in a row rests 8 intervals before it looks again.
                    within=8 * interval + 5,
                    what="the catch-up",
                )
                caught_up = time.monotonic() - recovered_at
                await asyncio.sleep(10 * interval)  # and nothing else comes after it
    after = changes[outage_started[0] :]
    print(
        f"\noutage ({sweep}): {len(during)} errors during {20 * interval:.1f} s down, "
        f"caught up {caught_up:.2f} s after resume with {len(after)} changes"
    )
    assert sorted((c.instance_id, c.previous, c.current, c.seq) for c in after) == sorted(
        (instance_id, W, status, 2) for instance_id, status in moved.items()
    )
    assert {c.instance_id: c.skipped for c in after if c.current == R} == dict.fromkeys(
        ids[10:20], (D,)
    )


# -- 3. retry budgets when everything fails ----------------------------------------------------


async def _failing_simulator(mode: str) -> Simulator:
    sim = Simulator(instances=0, seed=1, frozen=True)
    await sim.start()
    if mode == "refused":
        await sim.suspend()
    else:
        sim.set_fault_rate(1.0, kinds=[mode])
    return sim


@pytest.mark.soak
@pytest.mark.parametrize(
    ("mode", "error"),
    [("refused", "TransportError"), ("http_503", "HTTPStatusError"), ("hang", "TransportError")],
)
async def test_total_failure_costs_at_most_max_attempts_per_id(mode: str, error: str) -> None:
    n, max_attempts = 64, 4
    # Only hanging requests need a short timeout. The simulator counts a request when its handler
    # runs, so an attempt that timed out before then (64 connections opened at once on a busy
    # loop) is one the client sent and the server never saw: with answers that come at once, a
    # long timeout keeps the server's count exact too.
    timeout = 0.3 if mode == "hang" else 5.0
    run = await _look_up_against_failure(
        mode, n=n, timeout=timeout, max_attempts=max_attempts, max_retry_time=30.0
    )
    assert run.errors == {error}
    assert run.stats.requests == n * max_attempts
    assert run.stats.failures == n
    if mode == "http_503":
        assert run.served["total"] == n * max_attempts
        assert set(run.served["instances"].values()) == {max_attempts}
    elif mode == "hang":
        assert run.served["total"] <= n * max_attempts
    # Three waits of at most 0.05, 0.1 and 0.2 s, and four attempts of at most one timeout each.
    assert run.elapsed <= 0.35 + max_attempts * timeout + 1.0


@attrs.frozen
class _FailedRun:
    elapsed: float
    stats: ClientStats
    served: dict[str, Any]
    errors: set[str]


async def _look_up_against_failure(
    mode: str, *, n: int, timeout: float, max_attempts: int, max_retry_time: float
) -> _FailedRun:
    """Look ``n`` ids up, all at once, from a simulator that fails every request in ``mode``.

    With all ids in flight together, each lookup's budget runs from its own first attempt.
    """
    sim = await _failing_simulator(mode)
    ids = [f"{k:032x}" for k in range(n)]
    try:
        async with ContainerClient(
            sim.base_url,
            token=sim.token,
            concurrency=n,
            timeout=timeout,
            max_attempts=max_attempts,
            max_retry_time=max_retry_time,
            backoff_factor=0.05,
            backoff_max=0.2,
        ) as client:
            started = time.monotonic()
            results = await client.get_instances(ids)
            elapsed = time.monotonic() - started
            stats = client.stats
        served = sim.stats
    finally:
        await sim.close()
    print(f"\n{mode}: {stats.requests} requests for {n} ids in {elapsed:.2f} s")
    return _FailedRun(elapsed, stats, served, {type(r).__name__ for r in results.values()})


async def _run_out_the_clock(
    mode: str, *, n: int, max_retry_time: float, timeout: float
) -> _FailedRun:
    """Unlimited attempts: only ``max_retry_time`` ends each lookup."""
    return await _look_up_against_failure(
        mode, n=n, timeout=timeout, max_attempts=10_000, max_retry_time=max_retry_time
    )


@pytest.mark.soak
@pytest.mark.parametrize(
    ("mode", "error"), [("refused", "TransportError"), ("http_503", "HTTPStatusError")]
)
async def test_fast_total_failure_ends_within_max_retry_time(mode: str, error: str) -> None:
    n, max_retry_time, timeout = 64, 1.5, 0.5
    run = await _run_out_the_clock(mode, n=n, max_retry_time=max_retry_time, timeout=timeout)
    sent = run.stats.requests
    assert run.errors == {error}
    assert run.elapsed <= max_retry_time + timeout + 1.0
    assert sent > n * 5  # the time budget, not the attempts, ended each lookup
    assert mode == "refused" or run.served["total"] == sent


@pytest.mark.soak
async def test_attempts_that_time_out_end_within_max_retry_time_plus_one_timeout() -> None:
    # Each attempt hangs for the whole timeout: one starts at 0 s, the next at about 2.03 s,
    # within the 2.5 s budget; once it fails at about 4.03 s the budget is spent.
    n, max_retry_time, timeout = 8, 2.5, 2.0
    run = await _run_out_the_clock("hang", n=n, max_retry_time=max_retry_time, timeout=timeout)
    sent = run.stats.requests
    assert run.errors == {"TransportError"}
    assert run.served["total"] == sent
    assert sent == n * 2, "an attempt started after max_retry_time had passed"
    assert run.elapsed <= max_retry_time + timeout + 1.0
