"""The benchmark script keeps working: run it with tiny sizes. It asserts nothing about time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent / "benchmarks" / "bench.py"


def test_benchmark_runs_with_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures) >= {"simulator", "bulk", "sequential", "decode", "watch", "memory"}
    assert figures["simulator"]["answered"] > 0
    assert figures["bulk"]["ids"] == 200
    assert figures["watch"]["missed"] == 0
    assert figures["watch"]["polls"] > 0
    assert figures["memory"][0]["ids"] == 200
    for name in ("wall vs bare aiohttp", "client CPU", "decode + model", "watch", "memory"):
        assert name in result.stdout
