"""aiocontainer benchmarks: run with ``make bench`` (or ``python tests/benchmarks/bench.py``).

The simulator always runs in a separate process, so the CPU time of this process is the client's.
Contenders that are compared run in the same process, alternating, several rounds; the figures
are medians. Each figure that depends on a high-water mark (peak RSS) is measured in a fresh
subprocess. Nothing here asserts a time: the table reports, the reader judges.

Parts:
  simulator   detail answers per second of the simulator process (aiohttp client here)
  bulk        get_instances vs a bare aiohttp loop: wall and CPU ratios
  sequential  a sequential requests.Session loop vs get_instances: throughput ratio
  decode      envelope parse + InstanceDetail build, stdlib json and orjson, in microseconds
  watch       InstanceWatcher at scale: polls/s vs target, CPU cores, peak RSS, missed changes
  sweep       list sweep vs detail polling (all ids), auto vs detail (1 % of the ids): requests
              per id per interval, CPU cores, changes missed or invented against the history;
              list mode beside a bare aiohttp loop that only fetches and decodes its requests
  listing     list_instances over a whole account whose page cap is below the page size asked
              for: every id once, the requests against the least possible; then under churn
  memory      RSS per watched id
  otel        bulk client CPU with OpenTelemetry absent vs its API installed without an SDK,
              and the cost of the no-op hooks per lookup
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiocontainer import (  # noqa: E402
    ContainerClient,
    InstanceDetail,
    _protocol,
)
from aiocontainer.watcher import _COALESCE  # noqa: E402  (how close slots start together)

TOKEN = "bench-token"
DETAIL = "/ai/openapi/v2/instance-service/{}/detail"
LIST = "/ai/openapi/v2/instance-service/task"


# -- the simulator process ---------------------------------------------------------------------


@contextlib.contextmanager
def simulator(
    *,
    instances: int,
    latency: float,
    speed: float = 1.0,
    frozen: bool = True,
    page_cap: int | None = None,
    churn: int = 0,
) -> Iterator[str]:
    """Start ``python -m aiocontainer.simulator`` on 127.0.0.1 and yield its base URL.

    ``page_cap`` is the most entries one list page holds (the simulator's default when None);
    ``churn`` instances are created, and as many deleted, before each list page is answered.
    """
    cmd = [
        sys.executable,
        "-m",
        "aiocontainer.simulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--instances",
        str(instances),
        "--seed",
        "7",
        "--speed",
        str(speed),
        "--latency",
        str(latency),
        "--churn",
        str(churn),
    ]
    if page_cap is not None:
        cmd += ["--page-cap", str(page_cap)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        base_url = None
        deadline = time.monotonic() + 120
        while base_url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the simulator exited before printing its base URL")
            if line.startswith("base_url:"):
                base_url = line.split(":", 1)[1].strip()
        if base_url is None:
            raise RuntimeError("the simulator did not start in time")
        if frozen:
            _control("POST", base_url, "/_sim/freeze")
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _control(method: str, base_url: str, path: str, body: Any = None) -> Any:
    import requests

    response = requests.request(method, base_url + path, json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def instance_ids(base_url: str) -> list[str]:
    ids: list[str] = _control("GET", base_url, "/_sim/instances")["ids"]
    return ids


# -- measuring ---------------------------------------------------------------------------------


class Meter:
    """Wall time and this process's CPU time (user + system) of a block.

    The block starts after a full garbage collection, unless ``collect`` is false: a block that
    begins while a watcher runs must not stall it (its rotation would catch up inside the
    block, with more polls than its rate) nor spare it the collections it owes.
    """

    def __init__(self, *, collect: bool = True) -> None:
        self.collect = collect

    def __enter__(self) -> Meter:
        if self.collect:
            gc.collect()
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- part 1: bulk ------------------------------------------------------------------------------


async def bulk_aiocontainer(base_url: str, ids: list[str], concurrency: int) -> int:
    async with ContainerClient(base_url, token=TOKEN, concurrency=concurrency) as client:
        results = await client.get_instances(ids, concurrency=concurrency)
    return sum(isinstance(r, InstanceDetail) for r in results.values())


async def bulk_bare(base_url: str, ids: list[str], concurrency: int) -> int:
    results: dict[str, Any] = {}
    todo = iter(ids)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for instance_id in todo:
                url = base_url + DETAIL.format(instance_id)
                async with session.get(url, headers={"token": TOKEN}) as response:
                    results[instance_id] = await response.json()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sum(r.get("code") == "0" for r in results.values())


def run_bulk(args: argparse.Namespace) -> dict[str, Any]:
    with simulator(instances=args.ids, latency=args.latency) as base_url:
        ids = instance_ids(base_url)[: args.ids]
        rows: dict[str, list[Meter]] = {"aiocontainer": [], "bare aiohttp": []}
        # One warm-up of each, then alternate so drift on a shared machine hits both alike.
        asyncio.run(bulk_aiocontainer(base_url, ids[:200], args.concurrency))
        asyncio.run(bulk_bare(base_url, ids[:200], args.concurrency))
        for _ in range(args.rounds):
            for name, fn in (("aiocontainer", bulk_aiocontainer), ("bare aiohttp", bulk_bare)):
                with Meter() as meter:
                    ok = asyncio.run(fn(base_url, ids, args.concurrency))
                if ok != len(ids):
                    raise RuntimeError(f"{name} fetched {ok} of {len(ids)}")
                rows[name].append(meter)
    ours = rows["aiocontainer"]
    bare = rows["bare aiohttp"]
    wall = statistics.median(m.wall for m in ours)
    cpu = statistics.median(m.cpu for m in ours)
    bare_wall = statistics.median(m.wall for m in bare)
    bare_cpu = statistics.median(m.cpu for m in bare)
    # Each round's own ratio as well: a round and its pair run seconds apart, so a drift of the
    # host's speed over the run moves both sides of one, and the spread shows what noise remains.
    per_round = sorted(a.cpu / b.cpu for a, b in zip(ours, bare, strict=True))
    return {
        "cpu_ratio_per_round": per_round,
        "ids": len(ids),
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "rounds": args.rounds,
        "aiocontainer_wall_s": wall,
        "aiocontainer_cpu_s": cpu,
        "bare_wall_s": bare_wall,
        "bare_cpu_s": bare_cpu,
        "wall_ratio": wall / bare_wall,
        "cpu_ratio": cpu / bare_cpu,
        "cpu_us_per_request": cpu / len(ids) * 1e6,
        "ids_per_s": len(ids) / wall,
    }


# -- part 0: the simulator's own throughput -----------------------------------------------------


async def hammer(base_url: str, ids: list[str], seconds: float, concurrency: int) -> int:
    """Keep ``concurrency`` keep-alive GETs going for ``seconds``; the answers counted."""
    done = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(offset: int) -> None:
            nonlocal done
            n = offset
            while time.monotonic() < stop_at:
                url = base_url + DETAIL.format(ids[n % len(ids)])
                async with session.get(url, headers={"token": TOKEN}) as response:
                    await response.read()
                done += 1
                n += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done


def run_simulator(args: argparse.Namespace) -> dict[str, Any]:
    with simulator(instances=1000, latency=0.0, frozen=False) as base_url:
        ids = instance_ids(base_url)
        asyncio.run(hammer(base_url, ids, 1.0, args.concurrency))  # warm-up
        with Meter() as meter:
            answered = asyncio.run(hammer(base_url, ids, args.simulator_seconds, args.concurrency))
    return {
        "seconds": meter.wall,
        "answered": answered,
        "requests_per_s": answered / meter.wall,
        "concurrency": args.concurrency,
    }


# -- part 2: sequential ------------------------------------------------------------------------


def sequential_requests(base_url: str, ids: list[str]) -> int:
    import requests

    ok = 0
    with requests.Session() as session:
        for instance_id in ids:
            response = session.get(
                base_url + DETAIL.format(instance_id), headers={"token": TOKEN}, timeout=30
            )
            ok += response.json().get("code") == "0"
    return ok


def run_sequential(args: argparse.Namespace, bulk: dict[str, Any]) -> dict[str, Any]:
    with simulator(instances=args.sequential_ids, latency=args.latency) as base_url:
        ids = instance_ids(base_url)[: args.sequential_ids]
        sequential_requests(base_url, ids[:10])
        with Meter() as meter:
            ok = sequential_requests(base_url, ids)
        if ok != len(ids):
            raise RuntimeError(f"sequential fetched {ok} of {len(ids)}")
    rate = len(ids) / meter.wall
    return {
        "ids": len(ids),
        "latency_s": args.latency,
        "wall_s": meter.wall,
        "ids_per_s": rate,
        "aiocontainer_ids_per_s": bulk["ids_per_s"],
        "speedup": bulk["ids_per_s"] / rate,
    }


# -- part 3: decode ----------------------------------------------------------------------------


def decode_cost_us(bodies: list[bytes], loads: Any, repeat: int) -> float:
    """Best-of-five mean microseconds to parse the envelope and build the model, per body."""
    original = _protocol._loads
    _protocol._loads = loads
    try:
        best = float("inf")
        rounds = max(1, repeat // len(bodies))
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(rounds):
                for body in bodies:
                    InstanceDetail.from_api(_protocol.parse_detail_response(200, body))
            best = min(best, (time.perf_counter() - started) / (rounds * len(bodies)))
        return best * 1e6
    finally:
        _protocol._loads = original


def run_decode(args: argparse.Namespace, bulk: dict[str, Any]) -> dict[str, Any]:
    import requests

    # The same generator and seed as the bulk run, so the mix of bodies is the one whose
    # per-request CPU the share is taken of; the richest body is reported too.
    with simulator(instances=args.decode_bodies, latency=0.0) as base_url:
        bodies = [
            requests.get(base_url + DETAIL.format(i), headers={"token": TOKEN}, timeout=30).content
            for i in instance_ids(base_url)
        ]
    richest = max(bodies, key=len)
    result: dict[str, Any] = {
        "bodies": len(bodies),
        "mean_body_bytes": sum(map(len, bodies)) / len(bodies),
        "richest_body_bytes": len(richest),
        "stdlib_us": decode_cost_us(bodies, json.loads, args.decode_repeat),
    }
    try:
        import orjson

        result["orjson_us"] = decode_cost_us(bodies, orjson.loads, args.decode_repeat)
        result["richest_us"] = decode_cost_us([richest], orjson.loads, args.decode_repeat)
    except ImportError:
        result["orjson_us"] = None
        result["richest_us"] = decode_cost_us([richest], json.loads, args.decode_repeat)
    used = result["orjson_us"] if result["orjson_us"] is not None else result["stdlib_us"]
    result["in_use_us"] = used
    result["share_of_request_cpu"] = used / bulk["cpu_us_per_request"]
    return result


# -- part 4: the watcher at scale (in a fresh process, so peak RSS is the watcher's own) --------


async def watch_child(
    base_url: str, seconds: float, interval: float, concurrency: int, rounds: int
) -> dict[str, Any]:
    """The watcher against two bare pollers at the same rate, in alternating segments.

    Each of ``rounds`` rounds runs a fresh watcher, then the bare poller one by one, then the
    batched one, for ``seconds / rounds`` each, so a drift of the host's speed over the part
    hits all three alike. A watcher's segment is measured from the end of its first interval:
    that round of polls builds every model (a running watcher has done it long before).
    CPU figures are medians over the rounds, each round's own ratio given too; polls, changes
    and missed changes are summed over the watcher's segments.
    """
    ids = instance_ids(base_url)
    segment = seconds / rounds
    rate = len(ids) / interval
    # Per segment, only the statuses are kept (seen, or inferred as skipped), not the change
    # objects, so the measured memory is the watcher's and not this bookkeeping's.
    segments: list[dict[str, list[str]]] = []
    counts = {"delivered": 0, "skipped": 0, "errors": 0, "polls": 0}
    watched: list[Meter] = []
    bare: list[float] = []
    batched: list[float] = []
    rss_before = current_rss_mib()
    for _ in range(rounds):
        chains: dict[str, list[str]] = {}
        segments.append(chains)
        watched.append(
            await watcher_segment(base_url, ids, interval, segment, concurrency, chains, counts)
        )
        bare.append(await bare_poller(base_url, ids, rate, segment, concurrency))
        batched.append(
            await bare_poller(base_url, ids, rate, segment, concurrency, batch=_COALESCE)
        )
    peak = peak_rss_mib()
    histories = await fetch_histories(base_url, ids)
    missed = sum(not follows(histories[i], chains.get(i, [])) for chains in segments for i in ids)
    wall = sum(m.wall for m in watched)
    cores = statistics.median(m.cpu / m.wall for m in watched)
    per_round = [m.cpu / m.wall / b for m, b in zip(watched, batched, strict=True)]
    return {
        "ids": len(ids),
        "interval_s": interval,
        "rounds": rounds,
        "seconds": wall,
        "polls": counts["polls"],
        "polls_per_s": counts["polls"] / wall,
        "target_polls_per_s": rate,
        "poll_rate_share": counts["polls"] / wall / rate,
        "cpu_cores": cores,
        "bare_poller_cpu_cores": statistics.median(bare),
        "cpu_ratio_vs_bare_poller": cores / statistics.median(bare),
        "batched_bare_poller_cpu_cores": statistics.median(batched),
        "cpu_ratio_vs_batched_bare_poller": cores / statistics.median(batched),
        "cpu_ratio_vs_batched_per_round": sorted(per_round),
        "peak_rss_mib": peak,
        "rss_at_start_mib": rss_before,
        "delivered": counts["delivered"],
        "skipped": counts["skipped"],
        "missed": missed,
        "errors": counts["errors"],
    }


async def watcher_segment(
    base_url: str,
    ids: list[str],
    interval: float,
    seconds: float,
    concurrency: int,
    chains: dict[str, list[str]],
    counts: dict[str, int],
) -> Meter:
    """Watch ``ids`` for one interval, then for ``seconds`` measured; the measured window."""
    from aiocontainer import InstanceWatcher, StatusChange

    def record(change: StatusChange) -> None:
        chain = chains.setdefault(change.instance_id, [])
        chain.extend(change.skipped)
        chain.append(change.current)
        counts["delivered"] += change.previous is not None
        counts["skipped"] += len(change.skipped)

    def failed(instance_id: str | None, exc: Exception) -> None:
        counts["errors"] += 1

    async with ContainerClient(base_url, token=TOKEN, concurrency=concurrency) as client:
        # terminal_interval keeps terminal instances in the rotation, so the target rate holds for
        # the whole run: every id once per interval.
        watcher = InstanceWatcher(
            client, ids, interval=interval, terminal_interval=interval, sweep="detail"
        )
        watcher.on_change(record)
        watcher.on_error(failed)
        async with watcher:
            await asyncio.sleep(interval)
            requests0 = client.stats.requests
            with Meter(collect=False) as meter:
                await asyncio.sleep(seconds)
            counts["polls"] += client.stats.requests - requests0
    return meter


def follows(history: list[str], chain: list[str]) -> bool:
    """True if what the watcher reported is an unbroken stretch of what the simulator scripted.

    The first observation may come after the instance already moved (the watcher starts later
    than the simulator); from there on nothing may be missing, invented or reordered.
    """
    if not chain:
        return True
    size = len(chain)
    return any(history[start : start + size] == chain for start in range(len(history)))


async def bare_poller(
    base_url: str,
    ids: list[str],
    rate: float,
    seconds: float,
    concurrency: int,
    *,
    batch: float | None = None,
) -> float:
    """CPU cores of a bare aiohttp loop sending the same requests at the same steady rate.

    Without ``batch`` every request is sent at its own moment; with it, the requests that fell
    due are sent together every ``batch`` seconds, the way the watcher groups its slots. The
    second needs fewer wake-ups of both processes, and is the cheaper baseline.
    """
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(instance_id: str) -> None:
            async with (
                slots,
                session.get(
                    base_url + DETAIL.format(instance_id), headers={"token": TOKEN}
                ) as response,
            ):
                await response.json()

        sent = 0
        with Meter() as meter:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                task = asyncio.ensure_future(one(ids[sent % len(ids)]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
                due_at = started + sent / rate
                if batch is not None and due_at <= time.monotonic():
                    continue  # already due: goes out with this batch
                pause = max(0.0, due_at - time.monotonic())
                await asyncio.sleep(pause if batch is None else max(pause, batch))
            await asyncio.gather(*tasks)
    return meter.cpu / meter.wall


async def fetch_histories(base_url: str, ids: list[str]) -> dict[str, list[str]]:
    histories: dict[str, list[str]] = {}
    todo = iter(ids)
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for instance_id in todo:
                async with session.get(f"{base_url}/_sim/instances/{instance_id}") as response:
                    histories[instance_id] = (await response.json())["history"]

        await asyncio.gather(*(worker() for _ in range(16)))
    return histories


async def memory_child(base_url: str, count: int) -> dict[str, Any]:
    from aiocontainer import InstanceWatcher

    ids = instance_ids(base_url)[:count]
    async with ContainerClient(base_url, token=TOKEN, concurrency=64) as client:
        await client.get_instances(ids[:200])  # load every code path before the baseline
        gc.collect()
        before = current_rss_mib()
        watcher = InstanceWatcher(client, ids, interval=max(5.0, count / 2000))
        async with watcher:
            while len(watcher.snapshot()) < len(ids):
                await asyncio.sleep(0.2)
        gc.collect()
        after = current_rss_mib()
        held = len(watcher.snapshot())
    return {
        "ids": held,
        "rss_delta_mib": after - before,
        "bytes_per_id": (after - before) * 2**20 / held,
    }


async def sweep_child(
    base_url: str, seconds: float, interval: float, concurrency: int, mode: str, watched: int
) -> dict[str, Any]:
    """One watcher on the first ``watched`` ids in one sweep mode: requests, CPU, exactness;
    in list mode, then the CPU of ``bare_sweep`` sending the same pages and lookups."""
    from aiocontainer import InstanceWatcher, StatusChange

    ids = instance_ids(base_url)[:watched]
    chains: dict[str, list[str]] = {}
    counts = {"changes": 0, "errors": 0}

    def record(change: StatusChange) -> None:
        chain = chains.setdefault(change.instance_id, [])
        chain.extend(change.skipped)
        chain.append(change.current)
        counts["changes"] += change.previous is not None

    def failed(instance_id: str | None, exc: Exception) -> None:
        counts["errors"] += 1

    async with ContainerClient(base_url, token=TOKEN, concurrency=concurrency) as client:
        # terminal_interval: detail mode polls every id once per interval, as a list pass sees
        # every id once per interval (terminal ones included).
        watcher = InstanceWatcher(
            client, ids, interval=interval, terminal_interval=interval, sweep=mode
        )
        watcher.on_change(record)
        watcher.on_error(failed)
        async with watcher:
            # The first interval (first observations, the probe of "auto") is not measured.
            await asyncio.sleep(interval)
            requests0 = client.stats.requests
            before = watcher.stats
            with Meter(collect=False) as meter:
                await asyncio.sleep(seconds)
            requests = client.stats.requests - requests0
            after = watcher.stats
    histories = await fetch_histories(base_url, ids)
    mismatched = sum(not follows(histories[i], chains.get(i, [])) for i in ids)
    intervals = meter.wall / interval
    pages = after.pages - before.pages
    lookups = after.detail_polls - before.detail_polls
    floor = None
    if mode == "list" and pages > 0:
        rates = (pages / meter.wall, lookups / meter.wall)
        floor = await bare_sweep(base_url, ids, *rates, seconds=seconds, concurrency=concurrency)
    return {
        "pages": pages,
        "lookups": lookups,
        "bare_cpu_cores": floor,
        "mode": mode,
        "watched": len(ids),
        "interval_s": interval,
        "seconds": meter.wall,
        "requests": requests,
        "requests_per_id_per_interval": requests / len(ids) / intervals,
        "cpu_cores": meter.cpu / meter.wall,
        "changes": counts["changes"],
        "missed_or_invented": mismatched,
        "errors": counts["errors"],
    }


async def bare_sweep(
    base_url: str,
    ids: list[str],
    page_rate: float,
    lookup_rate: float,
    *,
    seconds: float,
    concurrency: int,
) -> float:
    """CPU cores of a bare aiohttp loop that only fetches and decodes what a list sweep did.

    List pages of 100 from offset 0 to the end and again, ``page_rate`` a second; after each
    page, the detail lookups owed by then at ``lookup_rate`` a second (of ``ids`` in turn), sent
    together as a sweep sends the lookups a page calls for. Each body is decoded by orjson (the
    standard library without it) and nothing more: no validation, no models, no diffing. The
    floor under list mode's CPU: what the same requests cost before any of the watcher's work.
    """
    try:
        import orjson

        loads: Callable[[bytes], Any] = orjson.loads
    except ImportError:  # pragma: no cover - the bench installs the speedups extra
        loads = json.loads
    headers = {"token": TOKEN}
    connector = aiohttp.TCPConnector(limit=concurrency)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lookup(instance_id: str) -> None:
            async with session.get(base_url + DETAIL.format(instance_id), headers=headers) as r:
                loads(await r.read())

        with Meter() as meter:
            began = time.monotonic()
            start = pages = lookups = 0
            while (elapsed := time.monotonic() - began) < seconds:
                params = {"start": str(start), "limit": "100", "sort": "desc"}
                async with session.get(base_url + LIST, params=params, headers=headers) as r:
                    count = len(loads(await r.read()).get("data") or ())
                start = start + count if count else 0
                pages += 1
                while lookups < elapsed * lookup_rate:
                    task = asyncio.ensure_future(lookup(ids[lookups % len(ids)]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    lookups += 1
                await asyncio.sleep(max(0.0, began + pages / page_rate - time.monotonic()))
            await asyncio.gather(*tasks)
    return meter.cpu / meter.wall


def run_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """List sweep against detail polling, each in its own process against a fresh simulator.

    Every run gets a new simulator with the same seed, so each mode sees the same lifecycles
    over the same stretch of simulated time.
    """
    results: dict[str, Any] = {}
    if not hasattr(ContainerClient, "list_page"):
        return {"skipped": "this client cannot list instances"}
    few = str(max(1, args.watch_ids // 100))
    runs = {
        "all_list": ("list", str(args.watch_ids)),
        "all_detail": ("detail", str(args.watch_ids)),
        "few_auto": ("auto", few),
        "few_detail": ("detail", few),
    }

    def run(label: str) -> None:
        mode, watched = runs[label]
        with simulator(
            instances=args.watch_ids, latency=args.latency, speed=args.sweep_speed, frozen=False
        ) as base_url:
            if args.sweep_age > 0:
                _control("POST", base_url, "/_sim/advance", {"seconds": args.sweep_age})
            extra = ("--sweep-mode", mode, "--sweep-watched", watched)
            results[label] = in_child("sweep", base_url, args, *extra)

    if args.smoke:  # only that it runs: side by side, the waits overlap
        with ThreadPoolExecutor(len(runs)) as pool:
            list(pool.map(run, runs))
    else:  # one at a time, so that no run's CPU figure pays for another's
        for label in runs:
            run(label)
    list_cpu = results["all_list"]["cpu_cores"]
    results["detail_over_list_cpu"] = results["all_detail"]["cpu_cores"] / max(list_cpu, 1e-9)
    results["speed"] = args.sweep_speed
    results["age"] = args.sweep_age
    results["auto_over_detail_requests"] = results["few_auto"]["requests"] / max(
        results["few_detail"]["requests"], 1
    )
    return results


# -- part: listing the whole account ----------------------------------------------------------


async def list_account(base_url: str, page_size: int) -> tuple[list[str], int, Meter]:
    """Every id ``list_instances`` yields, in order, the requests it sent, and its time."""
    async with ContainerClient(base_url, token=TOKEN) as client:
        requests0 = client.stats.requests
        with Meter() as meter:
            found = [detail.id async for detail in client.list_instances(page_size=page_size)]
        requests = client.stats.requests - requests0
    return found, requests, meter


def sim_state(base_url: str) -> tuple[set[str], set[str]]:
    """The simulator's live ids and its deleted ids, as ``/_sim/instances`` shows them now."""
    state = _control("GET", base_url, "/_sim/instances")
    return set(state["ids"]), set(state["deleted"])


def run_listing(args: argparse.Namespace) -> dict[str, Any]:
    """``list_instances`` over a whole frozen account whose page cap is below ``page_size``.

    Every page is shorter than asked for, so a client that took a short page for the last would
    stop after one page; the count must match the simulator's own id list exactly, or this
    raises. A second listing runs while instances are created and deleted before every page.
    """
    count, cap, page_size = args.listing_ids, args.listing_cap, args.listing_page_size
    with simulator(instances=count, latency=args.latency, page_cap=cap) as base_url:
        expected = set(instance_ids(base_url))
        asyncio.run(list_account(base_url, page_size))  # warm-up
        runs = []
        for _ in range(args.rounds):
            found, requests, meter = asyncio.run(list_account(base_url, page_size))
            check_listing(found, expected)
            runs.append((requests, meter))
    # The final page is the empty one that ends the listing.
    minimum = math.ceil(len(expected) / min(cap, page_size)) + 1
    result: dict[str, Any] = {
        "ids": len(expected),
        "page_cap": cap,
        "page_size": page_size,
        "latency_s": args.latency,
        "rounds": args.rounds,
        "found": len(found),
        "distinct": len(set(found)),
        "equals_simulator_ids": set(found) == expected,
        "requests": statistics.median(r for r, _ in runs),
        "min_requests": minimum,
        "wall_s": statistics.median(m.wall for _, m in runs),
        "cpu_s": statistics.median(m.cpu for _, m in runs),
    }
    result["churn"] = run_listing_churn(args)
    return result


def check_listing(found: list[str], expected: set[str]) -> None:
    """Raise unless ``found`` holds every id of ``expected`` exactly once, and nothing else."""
    doubled = len(found) - len(set(found))
    missing = expected - set(found)
    invented = set(found) - expected
    if doubled or missing or invented:
        raise RuntimeError(
            f"listing: {len(missing)} ids missing, {doubled} doubled, {len(invented)} not in "
            f"the simulator's list (of {len(expected)})"
        )


def run_listing_churn(args: argparse.Namespace) -> dict[str, Any]:
    """One listing while ``--listing-churn`` instances are created and deleted before each page.

    Pages are newest first and each comes after as many creations (at the head) as deletions,
    so the ids still to come move forward (some come again, and are dropped) or stay, never
    back: no id that existed for the whole listing can be skipped. So, against
    ``/_sim/instances`` before and after: no id twice, no id that never existed, and every id
    alive at both ends (nothing revives a deleted id) found; else raise.
    """
    count, cap, page_size = args.listing_ids, args.listing_cap, args.listing_page_size
    churn = args.listing_churn
    with simulator(instances=count, latency=args.latency, page_cap=cap, churn=churn) as base_url:
        alive0, deleted0 = sim_state(base_url)
        found, requests, meter = asyncio.run(list_account(base_url, page_size))
        alive1, deleted1 = sim_state(base_url)
    throughout = alive0 & alive1
    created = (alive1 | deleted1) - alive0 - deleted0
    deleted = deleted1 - deleted0
    distinct = set(found)
    result = {
        "churn_per_page": churn,
        "ids_at_start": len(alive0),
        "created": len(created),
        "deleted": len(deleted),
        "found": len(found),
        "distinct": len(distinct),
        "duplicates": len(found) - len(distinct),
        "existed_throughout": len(throughout),
        "throughout_found": len(throughout & distinct),
        "found_created": len(created & distinct),
        "found_deleted": len(deleted & distinct),
        "never_existed": len(distinct - alive0 - created),
        "requests": requests,
        "wall_s": meter.wall,
        "cpu_s": meter.cpu,
    }
    if result["duplicates"] or result["never_existed"] or throughout - distinct:
        raise RuntimeError(f"listing under churn: {json.dumps(result)}")
    return result


def in_child(part: str, base_url: str, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """Run one part in a fresh interpreter and return the figures it prints."""
    cmd = [sys.executable, __file__, "--child", part, "--base-url", base_url, *extra]
    cmd += [
        "--watch-seconds",
        str(args.watch_seconds),
        "--watch-interval",
        str(args.watch_interval),
        "--watch-rounds",
        str(args.watch_rounds),
    ]
    cmd += ["--concurrency", str(args.concurrency)]
    output = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    line = next(x for x in output.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def run_watch(args: argparse.Namespace) -> dict[str, Any]:
    with simulator(
        instances=args.watch_ids, latency=args.latency, speed=args.watch_speed, frozen=False
    ) as base_url:
        return in_child("watch", base_url, args)


def run_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for count in (int(x) for x in args.memory_ids.split(",")):
        with simulator(instances=count, latency=0.0) as base_url:
            results.append(in_child("memory", base_url, args, "--memory-count", str(count)))
    return results


# -- part: the cost of telemetry ------------------------------------------------------------

# Run in a fresh interpreter per measure: whether OpenTelemetry can be imported is decided when
# aiocontainer is imported, so "absent" is simulated by refusing the import before that.
OTEL_CHILD = """
import asyncio, json, sys, time
mode, root, base_url, token, concurrency = sys.argv[1:6]
ids = sys.stdin.read().split()
if mode == "absent":
    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                raise ImportError(name)
    sys.meta_path.insert(0, Refuse())
sys.path.insert(0, root)
from aiocontainer import ContainerClient, _telemetry
assert _telemetry.ENABLED is (mode == "api")

async def bulk(ids):
    async with ContainerClient(base_url, token=token, concurrency=int(concurrency)) as client:
        results = await client.get_instances(ids)
    assert all(not isinstance(r, Exception) for r in results.values())

asyncio.run(bulk(ids[:200]))
cpu0 = time.process_time()
asyncio.run(bulk(ids))
cpu = time.process_time() - cpu0
hooks = 20000
t0 = time.process_time()
for _ in range(hooks):
    with _telemetry.start_lookup("/ai/x/detail", "x") as lookup:
        lookup.sent(1)
        lookup.answered(200)
hook_us = (time.process_time() - t0) / hooks * 1e6
print("RESULT " + json.dumps({"cpu_s": cpu, "hook_us": hook_us}))
"""


def otel_child(mode: str, base_url: str, ids: list[str], concurrency: int) -> dict[str, Any]:
    cmd = [sys.executable, "-c", OTEL_CHILD, mode, str(ROOT), base_url, TOKEN, str(concurrency)]
    output = subprocess.run(
        cmd, input="\n".join(ids), capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    line = next(x for x in output.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def run_otel(args: argparse.Namespace) -> dict[str, Any]:
    with simulator(instances=args.ids, latency=args.latency) as base_url:
        ids = instance_ids(base_url)[: args.ids]
        runs: dict[str, list[dict[str, Any]]] = {"absent": [], "api": []}
        for _ in range(args.rounds):  # alternating, so drift on a shared machine hits both
            for mode in runs:
                runs[mode].append(otel_child(mode, base_url, ids, args.concurrency))
    absent = statistics.median(r["cpu_s"] for r in runs["absent"])
    api = statistics.median(r["cpu_s"] for r in runs["api"])
    noop_us = statistics.median(r["hook_us"] for r in runs["absent"])
    return {
        "ids": len(ids),
        "rounds": args.rounds,
        "absent_cpu_s": absent,
        "api_no_sdk_cpu_s": api,
        "api_vs_absent": api / absent,
        "noop_hook_us": noop_us,
        "api_hook_us": statistics.median(r["hook_us"] for r in runs["api"]),
        "noop_share_of_request_cpu": noop_us / (absent / len(ids) * 1e6),
    }


# -- report ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
    return f"{cpu}, {os.cpu_count()} cores, {versions}"


def spread(ratios: list[float]) -> str:
    """The range of sorted per-round ratios, as the table prints it."""
    return f"{ratios[0]:.2f}x to {ratios[-1]:.2f}x"


def table(results: dict[str, Any]) -> str:
    """The figures as an aligned text table: measure, result, target."""
    rows: list[tuple[str, str, str]] = []
    if m := results.get("simulator"):
        setting = f"aiohttp client, c={m['concurrency']}, {m['seconds']:.0f} s"
        rows.append(
            (f"simulator detail answers ({setting})", f"{m['requests_per_s']:.0f} /s", ">= 3000")
        )
    if b := results.get("bulk"):
        setting = f"{b['ids']} ids, c={b['concurrency']}, {b['latency_s'] * 1000:g} ms"
        wall = f"{b['aiocontainer_wall_s']:.2f} s vs {b['bare_wall_s']:.2f} s"
        cpu = f"{b['aiocontainer_cpu_s']:.2f} s vs {b['bare_cpu_s']:.2f} s"
        rows.append(
            (
                f"bulk {setting}: wall vs bare aiohttp",
                f"{b['wall_ratio']:.2f}x ({wall})",
                "<= 1.05x",
            )
        )
        rows.append(
            ("bulk: client CPU vs bare aiohttp", f"{b['cpu_ratio']:.2f}x ({cpu})", "<= 1.15x")
        )
        if per_round := b.get("cpu_ratio_per_round"):
            middle = f"median {statistics.median(per_round):.2f}x"
            rows.append(("  each round's own CPU ratio", f"{spread(per_round)}, {middle}", ""))
    if s := results.get("sequential"):
        setting = f"{s['ids']} ids, {s['latency_s'] * 1000:g} ms"
        rates = f"{s['aiocontainer_ids_per_s']:.0f} vs {s['ids_per_s']:.1f} ids/s"
        rows.append(
            (
                f"vs sequential requests ({setting})",
                f"{s['speedup']:.0f}x faster ({rates})",
                ">= 50x",
            )
        )
    if d := results.get("decode"):
        orjson = f"{d['orjson_us']:.1f} us" if d["orjson_us"] is not None else "n/a"
        share = f"{d['share_of_request_cpu'] * 100:.1f}% of request CPU"
        costs = f"stdlib {d['stdlib_us']:.1f} us, orjson {orjson}; {share}"
        setting = f"{d['bodies']} bodies, mean {d['mean_body_bytes']:.0f} B"
        rows.append((f"decode + model ({setting})", costs, "<= 10%"))
        richest = f"{d['richest_us']:.1f} us"
        rows.append((f"decode + model, richest body ({d['richest_body_bytes']} B)", richest, ""))
    if w := results.get("watch"):
        setting = f"{w['ids']} ids every {w['interval_s']:g} s for {w['seconds']:.0f} s"
        if w.get("rounds", 1) > 1:
            setting += f" ({w['rounds']} rounds)"
        rate = f"{w['polls_per_s']:.0f} polls/s = {w['poll_rate_share'] * 100:.1f}%"
        rows.append((f"watch {setting}", f"{rate} of {w['target_polls_per_s']:.0f}", ">= 95%"))
        cpu = f"{w['cpu_cores']:.3f} cores"
        rows.append(("watch: client CPU", cpu, "<= 0.35"))
        batches = f"{_COALESCE * 1000:g} ms batches"
        for label, key in (("one by one", "bare_poller"), (batches, "batched_bare_poller")):
            versus = f"{w[key + '_cpu_cores']:.3f} cores (watcher {w['cpu_ratio_vs_' + key]:.2f}x)"
            target = "<= 1.15x" if key == "batched_bare_poller" else ""
            rows.append((f"  bare aiohttp poller, same rate, {label}", versus, target))
        if per_round := w.get("cpu_ratio_vs_batched_per_round"):
            rows.append(("  each round's own ratio to the batched poller", spread(per_round), ""))
        rows.append(("watch: peak RSS", f"{w['peak_rss_mib']:.0f} MiB", "<= 150 MiB"))
        seen = f"{w['missed']} / {w['delivered']} ({w['skipped']})"
        rows.append(("watch: missed / delivered changes (skipped)", seen, "0 missed"))
    if (sw := results.get("sweep")) and "skipped" in sw:
        rows.append(("sweep", sw["skipped"], ""))
    elif sw:
        for label in ("all_list", "all_detail", "few_auto", "few_detail"):
            r = sw[label]
            setting = (
                f"{r['watched']} ids, {r['mode']}, every {r['interval_s']:g} s, "
                f"speed {sw['speed']:g}x" + (f", aged {sw['age']:g} s" if sw.get("age") else "")
            )
            cost = (
                f"{r['requests_per_id_per_interval']:.4f} req/id/interval, "
                f"{r['cpu_cores']:.3f} cores, {r['changes']} changes, "
                f"{r['missed_or_invented']} missed/invented"
            )
            target = "0 missed/invented"
            if label == "all_list":
                target = "<= 0.02 req/id/interval, <= 0.06 cores, 0 missed/invented"
            rows.append((f"sweep {setting}", cost, target))
            if r["pages"]:  # the requests split: a pass's pages, then one lookup per change
                per = r["watched"] * r["seconds"] / r["interval_s"]
                split = f"{r['pages'] / per:.4f} in pages + {r['lookups'] / per:.4f} in lookups"
                rows.append(("  requests per id per interval, of which", split, ""))
            if bare := r.get("bare_cpu_cores"):
                floor = f"{bare:.3f} cores (list mode {r['cpu_cores'] / bare:.1f}x)"
                rows.append(("  bare aiohttp, same pages and lookups, decode only", floor, ""))
        rows.append(("sweep: detail CPU / list CPU", f"{sw['detail_over_list_cpu']:.1f}x", ">= 8x"))
        ratio = f"{sw['auto_over_detail_requests']:.3f}"
        rows.append(("sweep: auto requests / detail requests, few ids", ratio, "<= 1"))
    if li := results.get("listing"):
        setting = (
            f"{li['ids']} ids, cap {li['page_cap']} < page_size {li['page_size']}, "
            f"{li['latency_s'] * 1000:g} ms"
        )
        same = "= the simulator's ids" if li["equals_simulator_ids"] else "!= the simulator's ids"
        found = (
            f"{li['found']} found, {li['distinct']} distinct, {same}; "
            f"{li['requests']:g} requests (min {li['min_requests']})"
        )
        rows.append((f"listing {setting}", found, "all found once"))
        cost = f"{li['wall_s']:.2f} s wall, {li['cpu_s']:.2f} s CPU"
        rows.append(("listing: time", cost, ""))
        c = li["churn"]
        moved = f"{c['created']} created, {c['deleted']} deleted"
        seen = (
            f"{c['found']} found, {c['distinct']} distinct, {c['duplicates']} twice; "
            f"{c['throughout_found']} / {c['existed_throughout']} lasting ids; "
            f"{c['requests']} requests"
        )
        rows.append(
            (
                f"listing, churn {c['churn_per_page']} per page ({moved})",
                seen,
                "no id twice, every lasting id found",
            )
        )
    for m in results.get("memory", []):
        per_id = f"{m['bytes_per_id'] / 1024:.2f} KiB ({m['rss_delta_mib']:.1f} MiB in all)"
        rows.append((f"memory per watched id, {m['ids']} ids", per_id, ""))
    if o := results.get("otel"):
        cpu = f"{o['api_no_sdk_cpu_s']:.2f} s vs {o['absent_cpu_s']:.2f} s"
        change = f"{(o['api_vs_absent'] - 1) * 100:+.1f}% ({cpu})"
        rows.append((f"otel API, no SDK: bulk {o['ids']} ids client CPU", change, "<= +3%"))
        hook = f"{o['noop_hook_us']:.2f} us = {o['noop_share_of_request_cpu'] * 100:.2f}%"
        rows.append(("otel absent: no-op hooks per lookup", f"{hook} of its CPU", "unmeasurable"))
    width = max(len(r[0]) for r in rows)
    width2 = max(len(r[1]) for r in rows)
    lines = [f"{'measure':<{width}}  {'result':<{width2}}  target", "-" * (width + width2 + 12)]
    lines += [f"{a:<{width}}  {b:<{width2}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts", default="simulator,bulk,sequential,decode,watch,sweep,listing,memory,otel"
    )
    parser.add_argument("--simulator-seconds", type=float, default=5.0)
    parser.add_argument("--ids", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sequential-ids", type=int, default=300)
    parser.add_argument("--decode-repeat", type=int, default=5000)
    parser.add_argument("--decode-bodies", type=int, default=200)
    parser.add_argument("--watch-ids", type=int, default=10_000)
    parser.add_argument("--watch-interval", type=float, default=5.0)
    # Seconds the watcher is measured for, split into --watch-rounds segments, each followed by
    # as long a segment of each bare poller.
    parser.add_argument("--watch-seconds", type=float, default=30.0)
    parser.add_argument("--watch-rounds", type=int, default=3)
    parser.add_argument("--watch-speed", type=float, default=1.0)
    parser.add_argument("--memory-ids", default="10000,50000")
    parser.add_argument("--child", choices=("watch", "memory", "sweep"), help=argparse.SUPPRESS)
    # Simulated seconds per second for the sweep part: each change costs a detail lookup in list
    # mode, so the figure depends on how often instances change; the table shows that rate.
    parser.add_argument("--sweep-speed", type=float, default=1.0)
    # Simulated seconds the simulator's clock is moved on before watching: at 120 every instance
    # has started, most run (their duration changes every second), and about 25 finish a second.
    parser.add_argument("--sweep-age", type=float, default=120.0)
    parser.add_argument("--sweep-mode", default="list", help=argparse.SUPPRESS)
    parser.add_argument("--sweep-watched", type=int, default=0, help=argparse.SUPPRESS)
    # The listing part: --ids instances by default, a page cap below the page size asked for.
    # 37 divides neither 100 nor 10,000: every page is short, the last shorter still.
    parser.add_argument("--listing-ids", type=int, default=None, help="default: --ids")
    parser.add_argument("--listing-cap", type=int, default=37)
    parser.add_argument("--listing-page-size", type=int, default=100)
    # Created and deleted before each page: every page shifts, yet brings at least cap - churn
    # new ids (a churn at or above the cap could answer only repeats, which ends a listing).
    parser.add_argument("--listing-churn", type=int, default=2)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--memory-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--json", default=str(ROOT / "bench-results.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.ids, args.rounds, args.sequential_ids, args.decode_repeat = 200, 1, 20, 50
        args.decode_bodies = 20
        args.simulator_seconds = 0.5
        args.watch_ids, args.watch_interval, args.watch_seconds = 100, 0.5, 1.0
        args.watch_rounds = 2  # more than one, so that a second watcher is checked as well
        args.memory_ids = "200"
        args.listing_ids, args.listing_cap = 300, 7
    if args.listing_ids is None:
        args.listing_ids = args.ids
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "watch":
        result = asyncio.run(
            watch_child(
                args.base_url,
                args.watch_seconds,
                args.watch_interval,
                args.concurrency,
                args.watch_rounds,
            )
        )
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.child == "sweep":
        result = asyncio.run(
            sweep_child(
                args.base_url,
                args.watch_seconds,
                args.watch_interval,
                args.concurrency,
                args.sweep_mode,
                args.sweep_watched,
            )
        )
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.child == "memory":
        result = asyncio.run(memory_child(args.base_url, args.memory_count))
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    parts = set(args.parts.split(","))
    results: dict[str, Any] = {"machine": machine(), "command": " ".join(["python", *sys.argv])}
    # In this order; sequential and decode read the bulk run's figures, so bulk runs for them too.
    runs: dict[str, Callable[[], Any]] = {
        "simulator": lambda: run_simulator(args),
        "bulk": lambda: run_bulk(args),
        "sequential": lambda: run_sequential(args, results["bulk"]),
        "decode": lambda: run_decode(args, results["bulk"]),
        "watch": lambda: run_watch(args),
        "sweep": lambda: run_sweep(args),
        "listing": lambda: run_listing(args),
        "memory": lambda: run_memory(args),
        "otel": lambda: run_otel(args),
    }
    needs_bulk = bool(parts & {"bulk", "sequential", "decode"})
    for name, run in runs.items():
        if name in parts or (name == "bulk" and needs_bulk):
            results[name] = run()
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    if "bulk" not in parts:
        results.pop("bulk", None)
    print()
    print(f"machine: {results['machine']}")
    print(table(results))
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
