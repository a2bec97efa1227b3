"""Optional OpenTelemetry spans and metrics, and the fields every log record carries.

Rule 1: the OpenTelemetry API is imported here, once, when this module is imported, and only if
        it is installed (the ``otel`` extra). Without it nothing else is imported and every hook
        is a shared no-op: a lookup costs one attribute read and a few empty method calls. With
        it, lookups take the same no-op until an application sets a tracer or meter provider.
Rule 2: only the API is used: which SDK, exporter or sampler runs is the application's choice.
        Instruments are made once; the API's proxies pick up a provider set later.
Rule 3: one span per lookup (``get_instance``, one list page), however many attempts it took.
Rule 4: no span attribute, metric attribute or log field ever holds a token, key or password:
        only instance ids, endpoint templates, counts, codes, HTTP statuses and class names.
        An endpoint's instance id is replaced by ``{id}`` so metrics stay low in cardinality.
Rule 5: every log record of the library carries the same six fields in ``extra=``
        (``LOG_FIELDS``), None where one does not apply, so formatters can rely on them.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from aiocontainer._version import __version__

__all__ = [
    "ENABLED",
    "LOG_FIELDS",
    "Lookup",
    "WatcherMetrics",
    "error_fields",
    "log_fields",
    "start_lookup",
    "watcher_metrics",
]

#: The ``extra=`` fields of every log record.
LOG_FIELDS: Final = ("instance_id", "attempt", "delay", "code", "http_status", "endpoint")

try:
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace
except ImportError:
    ENABLED = False
else:
    ENABLED = True


def log_fields(
    *,
    instance_id: str | None = None,
    attempt: int | None = None,
    delay: float | None = None,
    code: str | None = None,
    http_status: int | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """The ``extra=`` of a log record: all six fields, None where one does not apply."""
    return {
        "instance_id": instance_id,
        "attempt": attempt,
        "delay": delay,
        "code": code,
        "http_status": http_status,
        "endpoint": endpoint,
    }


def error_fields(
    instance_id: str | None, exc: BaseException | None, **fields: Any
) -> dict[str, Any]:
    """``log_fields`` for a record about ``exc``: its API code and HTTP status when it has them."""
    code = getattr(exc, "code", None)
    status = getattr(exc, "http_status", None)
    return log_fields(
        instance_id=instance_id,
        code=code if isinstance(code, str) else None,
        http_status=status if isinstance(status, int) else None,
        **fields,
    )


def endpoint_of(path: str, instance_id: str | None) -> str:
    """The endpoint template of a request path: its instance id replaced by ``{id}``."""
    return path.replace(instance_id, "{id}") if instance_id else path


class Lookup:
    """One lookup's telemetry; this base does nothing (OpenTelemetry absent)."""

    __slots__ = ()

    def __enter__(self) -> Lookup:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        """A subclass that records calls ``end`` here (this one has nothing to end)."""

    def sent(self, attempt: int) -> None:
        """Attempt number ``attempt`` is being sent."""

    def answered(self, http_status: int) -> None:
        """The last attempt got an HTTP answer with this status."""

    def end(self, error: BaseException | None) -> None:
        """The lookup ended, with ``error`` or (None) a result."""


_NO_LOOKUP: Final = Lookup()


class WatcherMetrics:
    """Where a watcher's changes, drops and stale count go; this base does nothing."""

    __slots__ = ()

    def changes(self, count: int) -> None:
        """``count`` changes were emitted."""

    def drops(self, count: int) -> None:
        """``count`` changes were dropped because a consumer fell behind."""

    def stale(self, delta: int) -> None:
        """The number of stale instances moved by ``delta``."""


_NO_WATCHER_METRICS: Final = WatcherMetrics()


if ENABLED:
    _tracer = _otel_trace.get_tracer("aiocontainer", __version__)
    _meter = _otel_metrics.get_meter("aiocontainer", __version__)
    _requests = _meter.create_counter(
        "aiocontainer.client.requests", unit="{request}", description="HTTP requests sent"
    )
    _retries = _meter.create_counter(
        "aiocontainer.client.retries", unit="{request}", description="attempts that were retried"
    )
    _duration = _meter.create_histogram(
        "aiocontainer.client.lookup.duration",
        unit="s",
        description="time of one lookup, all its attempts and waits included",
    )
    _changes = _meter.create_counter(
        "aiocontainer.watcher.changes", unit="{change}", description="status changes emitted"
    )
    _drops = _meter.create_counter(
        "aiocontainer.watcher.drops",
        unit="{change}",
        description="changes dropped because a consumer fell behind",
    )
    _stale = _meter.create_up_down_counter(
        "aiocontainer.watcher.stale",
        unit="{instance}",
        description="watched instances not observed for longer than stale_after",
    )

    from opentelemetry import context as _otel_context

    class _TracedLookup(Lookup):
        """A span for the lookup, current while it runs (so spans of the request nest in it)."""

        __slots__ = ("_attempts", "_endpoint", "_http_status", "_span", "_started", "_token")

        def __init__(self, endpoint: str, instance_id: str | None) -> None:
            attributes: dict[str, str] = {"aiocontainer.endpoint": endpoint}
            if instance_id is not None:
                attributes["aiocontainer.instance_id"] = instance_id
            self._span = _tracer.start_span(
                f"aiocontainer GET {endpoint}",
                kind=_otel_trace.SpanKind.CLIENT,
                attributes=attributes,
            )
            self._endpoint = endpoint
            self._attempts = 0
            self._http_status: int | None = None
            self._started = time.perf_counter()
            self._token: object = None

        def __enter__(self) -> Lookup:
            self._token = _otel_context.attach(_otel_trace.set_span_in_context(self._span))
            return self

        def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
            try:
                self.end(exc)
            finally:
                _otel_context.detach(self._token)  # type: ignore[arg-type]

        def sent(self, attempt: int) -> None:
            self._attempts = attempt

        def answered(self, http_status: int) -> None:
            self._http_status = http_status

        def end(self, error: BaseException | None) -> None:
            seconds = time.perf_counter() - self._started
            labels: Mapping[str, str] = {
                "aiocontainer.endpoint": self._endpoint,
                "aiocontainer.outcome": "ok" if error is None else type(error).__name__,
            }
            if self._attempts:
                _requests.add(self._attempts, {"aiocontainer.endpoint": self._endpoint})
            if self._attempts > 1:
                _retries.add(self._attempts - 1, {"aiocontainer.endpoint": self._endpoint})
            _duration.record(seconds, labels)
            span = self._span
            if span.is_recording():
                span.set_attribute("aiocontainer.attempts", self._attempts)
                code = "0" if error is None else getattr(error, "code", None)
                if isinstance(code, str):
                    span.set_attribute("aiocontainer.api_code", code)
                if self._http_status is not None:
                    span.set_attribute("http.response.status_code", self._http_status)
                if error is not None:
                    span.set_attribute("error.type", type(error).__name__)
                    span.set_status(_otel_trace.StatusCode.ERROR, type(error).__name__)
            span.end()

    class _OtelWatcherMetrics(WatcherMetrics):
        __slots__ = ()

        def changes(self, count: int) -> None:
            _changes.add(count)

        def drops(self, count: int) -> None:
            _drops.add(count)

        def stale(self, delta: int) -> None:
            _stale.add(delta)

    _WATCHER_METRICS: WatcherMetrics = _OtelWatcherMetrics()

    import os

    from opentelemetry.metrics import _internal as _otel_metrics_state

    # Where the API keeps the providers an application set: None until one is. Reading the two
    # globals costs two dict reads; the public getters each look at the environment first.
    _TRACE_STATE: dict[str, Any] = vars(_otel_trace)
    _METRICS_STATE: dict[str, Any] = vars(_otel_metrics_state)
    _FROM_ENVIRONMENT = any(
        name in os.environ for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")
    )
    _SET: list[bool] = []
    if _FROM_ENVIRONMENT or not (
        "_TRACER_PROVIDER" in _TRACE_STATE and "_METER_PROVIDER" in _METRICS_STATE
    ):  # pragma: no cover - a provider named in the environment, or an API keeping them elsewhere
        _SET.append(True)

    def _providers_set() -> bool:
        """True once an application set a tracer or a meter provider (it cannot be unset)."""
        if not _SET and (
            _TRACE_STATE["_TRACER_PROVIDER"] is not None
            or _METRICS_STATE["_METER_PROVIDER"] is not None
        ):
            _SET.append(True)
        return bool(_SET)

else:
    _WATCHER_METRICS = _NO_WATCHER_METRICS

    def _providers_set() -> bool:
        return False


def start_lookup(path: str, instance_id: str | None) -> Lookup:
    """The telemetry of one lookup of ``path``: a span and metrics, or a no-op without them.

    The API without an SDK (no provider set) records nothing, so it gets the no-op as well: a
    span and four instrument calls per lookup would cost a tenth of its CPU for nothing.
    """
    if not ENABLED or not _providers_set():
        return _NO_LOOKUP
    return _TracedLookup(endpoint_of(path, instance_id), instance_id)


def watcher_metrics() -> WatcherMetrics:
    """Where a watcher reports its metrics: OpenTelemetry instruments, or a no-op."""
    return _WATCHER_METRICS
