"""OpenTelemetry: one span per lookup, metrics, no secret in any attribute; nothing without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import aiohttp
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiocontainer import ContainerClient, InstanceWatcher
from aiocontainer import _telemetry as telemetry
from aiocontainer.errors import InvalidParameterError
from aiocontainer.simulator import Simulator
from tests.conftest import eventually

UNKNOWN = "0" * 32


class Sdk:
    """The SDK's in-memory exporters, installed once for the process (the API allows one)."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Every metric's data points: (attributes, value or histogram count)."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # type: ignore[attr-defined]
                        found.setdefault(metric.name, []).append((dict(point.attributes), value))
        return found

    def total(self, name: str, **attributes: str) -> float:
        return sum(
            value
            for attrs, value in self.points().get(name, [])
            if all(attrs.get(k) == v for k, v in attributes.items())
        )


_SDK: list[Sdk] = []


@pytest.fixture
def sdk() -> Sdk:
    if not _SDK:
        _SDK.append(Sdk())
    _SDK[0].spans.clear()
    return _SDK[0]


def lookups(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith("aiocontainer GET")]


async def test_one_span_per_lookup_with_attempts_code_and_status(sdk: Sdk) -> None:
    async with Simulator(instances=2, seed=5, frozen=True, include_seed_instance=False) as sim:
        first, second = list(sim.instance_ids())
        sim.fail_times(first, 2, kind="http_503")
        before = sdk.total("aiocontainer.client.requests")
        retries_before = sdk.total("aiocontainer.client.retries")
        async with ContainerClient(
            sim.base_url, token=sim.token, backoff_factor=0, max_attempts=4
        ) as client:
            await client.get_instance(first)  # two 503s, then the answer
            await client.get_instance(second)
            with pytest.raises(InvalidParameterError):
                await client.get_instance(UNKNOWN)
        token = sim.token
    finished = lookups(sdk.spans.get_finished_spans())
    spans = {(s.attributes or {})["aiocontainer.instance_id"]: s for s in finished}
    assert set(spans) == {first, second, UNKNOWN}  # one span per lookup, not per attempt
    retried = spans[first].attributes
    assert retried is not None
    assert (retried["aiocontainer.attempts"], retried["aiocontainer.api_code"]) == (3, "0")
    assert retried["http.response.status_code"] == 200
    assert retried["aiocontainer.endpoint"] == "/ai/openapi/v2/instance-service/{id}/detail"
    failed = spans[UNKNOWN]
    assert failed.attributes is not None
    assert failed.attributes["aiocontainer.api_code"] == "10004"
    assert failed.attributes["error.type"] == "InvalidParameterError"
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert spans[second].kind is trace.SpanKind.CLIENT
    assert sdk.total("aiocontainer.client.requests") - before == 5
    assert sdk.total("aiocontainer.client.retries") - retries_before == 2
    durations = sdk.points()["aiocontainer.client.lookup.duration"]
    assert any(a.get("aiocontainer.outcome") == "InvalidParameterError" for a, _ in durations)
    everything = json.dumps(
        [dict(s.attributes or {}) for s in sdk.spans.get_finished_spans()]
        + [[s.name, [e.attributes for e in s.events]] for s in sdk.spans.get_finished_spans()],
        default=str,
    ) + json.dumps(sdk.points(), default=str)
    assert token not in everything and token[:16] not in everything


async def test_the_watcher_counts_changes_and_staleness(sdk: Sdk) -> None:
    changes_before = sdk.total("aiocontainer.watcher.changes")
    stale_before = sdk.total("aiocontainer.watcher.stale")
    async with Simulator(instances=3, seed=9, frozen=True, include_seed_instance=False) as sim:
        ids = list(sim.instance_ids())
        async with ContainerClient(
            sim.base_url, token=sim.token, timeout=0.5, max_attempts=1
        ) as client:
            watcher = InstanceWatcher(client, ids, interval=0.1, stale_after=0.3, max_backoff=1)
            watcher.on_error(lambda i, e: None)
            async with watcher:
                await watcher.wait_synced(timeout=5)
                await sim.suspend()
                stale = lambda: sdk.total("aiocontainer.watcher.stale") - stale_before  # noqa: E731
                await eventually(lambda: stale() == 3, within=5)
                await sim.resume()
                await eventually(lambda: stale() == 0, within=5)
    assert sdk.total("aiocontainer.watcher.changes") - changes_before == 3


async def test_trace_configs_reach_the_clients_own_session_inside_the_lookup_span(
    sdk: Sdk,
) -> None:
    seen: list[tuple[str, trace.Span]] = []

    async def on_start(session: Any, context: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append((params.url.path, trace.get_current_span()))

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_start)
    async with Simulator(instances=1, seed=1, frozen=True, include_seed_instance=False) as sim:
        (only,) = sim.instance_ids()
        async with ContainerClient(sim.base_url, token=sim.token, trace_configs=[config]) as c:
            await c.get_instance(only)
        async with aiohttp.ClientSession() as borrowed:
            with pytest.raises(ValueError, match="trace_configs"):
                ContainerClient(sim.base_url, token="t", session=borrowed, trace_configs=[config])
    ((path, current),) = seen
    assert path == f"/ai/openapi/v2/instance-service/{only}/detail"
    (span,) = lookups(sdk.spans.get_finished_spans())
    assert span.context is not None
    assert current.get_span_context().span_id == span.context.span_id  # the lookup's span
    assert trace.get_current_span() is trace.INVALID_SPAN  # and detached afterwards


def test_without_opentelemetry_nothing_is_imported_and_hooks_do_nothing() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "opentelemetry":
                    raise ImportError("blocked for the test")
                return None

        sys.meta_path.insert(0, Block())
        from aiocontainer import ContainerClient, _telemetry
        from aiocontainer.simulator import Simulator

        async def main():
            async with Simulator(instances=1, seed=1, frozen=True) as sim:
                async with ContainerClient(sim.base_url, token=sim.token) as client:
                    for i in sim.instance_ids():
                        await client.get_instance(i)
            lookup = _telemetry.start_lookup("/x", None)
            assert lookup is _telemetry.start_lookup("/y", "a" * 32)  # one shared no-op
            assert type(lookup) is _telemetry.Lookup
            assert type(_telemetry.watcher_metrics()) is _telemetry.WatcherMetrics

        asyncio.run(main())
        print(_telemetry.ENABLED, sorted(m for m in sys.modules if "opentelemetry" in m))
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False []"


def test_with_opentelemetry_the_hooks_are_live() -> None:
    assert telemetry.ENABLED
    assert type(telemetry.watcher_metrics()) is not telemetry.WatcherMetrics


@pytest.mark.parametrize("provider", ["tracer", "meter"])
def test_the_api_without_a_provider_costs_a_no_op_until_one_is_set(provider: str) -> None:
    script = textwrap.dedent(
        f"""
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from aiocontainer import _telemetry

        assert _telemetry.ENABLED
        before = _telemetry.start_lookup("/x", None)
        assert before is _telemetry._NO_LOOKUP, type(before)
        if {provider!r} == "tracer":
            trace.set_tracer_provider(TracerProvider())
        else:
            metrics.set_meter_provider(MeterProvider())
        after = _telemetry.start_lookup("/x", None)
        assert type(after) is not _telemetry.Lookup, type(after)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
