"""The benchmark script keeps working: run it with tiny sizes. It asserts nothing about time."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).parent / "benchmarks" / "bench.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Every part of the benchmark, in three runs side by side: each waits on its simulator's latency
#: much of the time, so together they take about half as long as one run of every part.
GROUPS = ("simulator,bulk,sequential,decode,memory", "watch,otel", "sweep,listing")


def run_groups(tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Run the benchmark with tiny sizes, its parts in ``GROUPS``; the figures and the output."""
    runs = []
    for n, parts in enumerate(GROUPS):
        out = tmp_path / f"results-{n}.json"
        command = [sys.executable, str(BENCH), "--smoke", "--parts", parts, "--json", str(out)]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        runs.append((process, out))
    figures: dict[str, Any] = {}
    printed = []
    try:
        for process, out in runs:
            stdout, stderr = process.communicate(timeout=240)
            assert process.returncode == 0, stderr[-3000:]
            figures.update(json.loads(out.read_text()))
            printed.append(stdout)
    finally:
        for process, _ in runs:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return figures, "\n".join(printed)


def test_the_groups_cover_every_part() -> None:
    default = load_bench().parse_args([]).parts.split(",")
    grouped = [part for parts in GROUPS for part in parts.split(",")]
    assert sorted(grouped) == sorted(default)


def test_benchmark_runs_with_tiny_sizes(tmp_path: Path) -> None:
    figures, stdout = run_groups(tmp_path)
    assert set(figures) >= {
        "simulator",
        "bulk",
        "sequential",
        "decode",
        "watch",
        "listing",
        "memory",
    }
    assert figures["simulator"]["answered"] > 0
    assert figures["bulk"]["ids"] == 200
    assert figures["watch"]["missed"] == 0
    assert figures["watch"]["polls"] > 0
    # The watcher alternates with the bare pollers: one ratio per round.
    assert figures["watch"]["rounds"] == 2
    assert len(figures["watch"]["cpu_ratio_vs_batched_per_round"]) == 2
    assert "(2 rounds)" in stdout
    assert figures["memory"][0]["ids"] == 200
    listing = figures["listing"]
    assert set(listing) >= {
        "ids",
        "page_cap",
        "page_size",
        "found",
        "distinct",
        "equals_simulator_ids",
        "requests",
        "min_requests",
        "wall_s",
        "cpu_s",
        "churn",
    }
    # Every id of the simulator found once, across pages all shorter than asked for.
    assert (listing["ids"], listing["page_cap"], listing["page_size"]) == (300, 7, 100)
    assert listing["found"] == listing["distinct"] == 300
    assert listing["equals_simulator_ids"] is True
    assert listing["min_requests"] == 300 // 7 + 1 + 1  # ceil(300 / 7) pages, then the empty one
    assert listing["requests"] >= listing["min_requests"]
    churn = listing["churn"]
    assert churn["created"] > 0 and churn["deleted"] > 0
    assert churn["duplicates"] == 0 and churn["found"] == churn["distinct"]
    assert churn["never_existed"] == 0
    assert churn["throughout_found"] == churn["existed_throughout"] > 0
    for name in ("wall vs bare aiohttp", "client CPU", "decode + model", "watch", "memory"):
        assert name in stdout
    assert "all found once" in stdout
    assert "<= 1.15x" in stdout
    # The sweep's figures depend on how often instances change: its rows say how fast they do,
    # and how far the simulator's clock was moved on before watching.
    assert (figures["sweep"]["speed"], figures["sweep"]["age"]) == (1.0, 120.0)
    assert ", aged 120 s" in stdout
    assert "list, every 0.5 s, speed 1x" in stdout
    assert "<= 0.02 req/id/interval, <= 0.06 cores, 0 missed/invented" in stdout
    # List mode's floor: a bare loop sent as many pages (and lookups) and took some CPU for them.
    swept = figures["sweep"]["all_list"]
    assert swept["pages"] > 0 and swept["bare_cpu_cores"] > 0
    assert figures["sweep"]["all_detail"]["bare_cpu_cores"] is None
    assert "bare aiohttp, same pages and lookups, decode only" in stdout
    # Each bulk round's own ratio, one per round.
    assert len(figures["bulk"]["cpu_ratio_per_round"]) == figures["bulk"]["rounds"] == 1
    assert "each round's own CPU ratio" in stdout
    assert "each round's own ratio to the batched poller" in stdout


def test_listing_check_refuses_a_missing_a_doubled_or_an_unknown_id() -> None:
    check_listing = load_bench().check_listing
    expected = {"a", "b", "c"}
    check_listing(["c", "a", "b"], expected)
    with pytest.raises(RuntimeError, match="1 ids missing, 0 doubled"):
        check_listing(["a", "b"], expected)
    with pytest.raises(RuntimeError, match="0 ids missing, 1 doubled"):
        check_listing(["a", "b", "c", "a"], expected)
    with pytest.raises(RuntimeError, match="1 not in the simulator's list"):
        check_listing(["a", "b", "c", "d"], expected)
