"""An embedded stand-in for the SCNet container-instance API, served by aiohttp.web.

It speaks raw JSON dicts and imports nothing from the client side of aiocontainer (models,
converter, errors): it is an independent oracle, so one misreading cannot hide on both sides.

Rule 1: status is computed from a clock when asked; no task runs per instance. Simulated seconds
are clock seconds times ``speed``, and timestamps are a fixed epoch plus simulated seconds.
Rule 2: the platform's endpoints answer HTTP 200 with an envelope whose ``code`` is a string,
unless a fault says otherwise; faults hit the detail and list endpoints only.
Rule 3: ``history(id)`` lists every status an instance has been in, in order, with no two equal
neighbours; it is what a perfect observer would have seen.
Rule 4: the control surface lives under ``/_sim/``; it needs no token and is never faulted,
delayed or counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import random
import secrets
import socket
import struct
import sys
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from aiocontainer._simdata import (
    DEFAULT_FAULT_MIX,
    EPOCH,
    FAULT_KINDS,
    RUNNING,
    SEED_DETAIL,
    SEED_INSTANCE_ID,
    TERMINAL,
    WAITING,
    Fault,
    ListQuery,
    Segment,
    TokenBook,
    draw_phases,
    format_fault,
    generate_instance,
    generate_ip,
    held_segment,
    latency_range,
    lifecycle_fields,
    lifecycle_segment,
    parse_duration,
    parse_fault,
    parse_list_query,
    shown_times,
)

__all__ = [
    "DEFAULT_FAULT_MIX",
    "FAULT_KINDS",
    "LIST_FAULT_KEY",
    "SEED_INSTANCE_ID",
    "Simulator",
    "main",
]


def _json_dumps_factory() -> Callable[[Any], bytes]:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is an optional speed-up
        return lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    dumps: Callable[[Any], bytes] = orjson.dumps
    return dumps


_dumps = _json_dumps_factory()

# Scripted faults for the list endpoint are queued under this key instead of an instance id.
LIST_FAULT_KEY = "list"

_MESSAGES: Mapping[str, str] = {
    "0": "SUCCESS",
    "10001": "内部异常",
    "10003": "参数不全",
    "10004": "参数无效",
    "10008": "权限不足",
    "10012": "连接中断",
}
_OK_PREFIX = b'{"code":"0","msg":"SUCCESS","data":'
_OK_SUFFIX = b"}"
TOKEN_VALID_MESSAGE = "token is valid"
DAY_SECONDS = 24 * 3600.0

_AI = "/ai/openapi/v2/instance-service"
_AC = "/ac/openapi/v2"

_Answer = Callable[[web.Request], Awaitable[bytes]]


def _error_body(code: str) -> bytes:
    return _dumps({"code": code, "msg": _MESSAGES[code], "data": None})


_ERRORS: Mapping[str, bytes] = {code: _error_body(code) for code in _MESSAGES if code != "0"}


def _ok_body(data: Any) -> bytes:
    return _OK_PREFIX + _dumps(data) + _OK_SUFFIX


def _json_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", charset="utf-8")


@dataclass(slots=True, eq=False)
class _Instance:
    base: dict[str, Any]
    segment: Segment
    prefix: tuple[str, ...]
    timeout: float | None
    ip: str | None
    runs: int = 0
    version: int = 0
    order: tuple[str, str] = ("", "")  # the list endpoint sorts on (createTime, id)
    cache_key: tuple[int, int, bool, bool, int] | None = None
    cache_data: bytes = b""
    cache_envelope: bytes = b""


def _query_params(request: web.Request) -> dict[str, Any]:
    query = request.query
    params: dict[str, Any] = {
        key: query[key] for key in ("start", "limit", "sort", "status", "taskType") if key in query
    }
    names = query.getall("instanceServiceName", []) + query.getall("instanceServiceName[]", [])
    if names:
        params["instanceServiceName"] = names
    return params


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body, None when there is none; ValueError when it is not JSON."""
    if not request.body_exists:
        return None
    raw = await request.read()
    return json.loads(raw) if raw.strip() else None


def _abort_with_reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 makes close() send RST, which is what a crashed proxy looks like.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


_REASONS: Mapping[int, str] = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    429: "Too Many Requests",
}
_MAINTENANCE_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>超算互联网</title></head>"
    "<body><h1>系统维护中</h1><p>The service is under maintenance.</p></body></html>"
)


def _http_error(status: int, *, retry_after: float | None = None) -> web.Response:
    reason = _REASONS[status]
    headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
    if status == 500:
        return web.Response(status=status, text=reason, headers=headers)
    page = (
        f"<html><head><title>{status} {reason}</title></head><body>"
        f"<center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>"
    )
    return web.Response(status=status, text=page, content_type="text/html", headers=headers)


class Simulator:
    """The SCNet container-instance API on 127.0.0.1, with moving lifecycles and faults."""

    def __init__(
        self,
        *,
        instances: int = 10,
        seed: int = 0,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        token_ttl: float = DAY_SECONDS,
        secret: bytes | None = None,
        include_seed_instance: bool = True,
        frozen: bool = False,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] | Mapping[str, float] = DEFAULT_FAULT_MIX,
        latency: float | Sequence[float] = 0.0,
        slow_latency: float | Sequence[float] = 0.5,
        retry_after: float = 1,
        epoch: datetime = EPOCH,
        user: str = "magic2",
    ) -> None:
        if instances < 0:
            raise ValueError("instances must be >= 0")
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError("speed must be a positive number")
        self._seed = seed
        self._speed = float(speed)
        self._clock = clock
        self._clock_base = clock()
        self._sim_base = 0.0
        self._frozen = frozen
        self._epoch = epoch
        self._user = user
        self._host = host
        self._port = port
        self._token_ttl = token_ttl
        self._tokens = TokenBook(
            secret=secret if secret is not None else secrets.token_bytes(32),
            wall_clock=wall_clock,
            claims={
                "computeUser": user,
                "accountStatus": "Trial",
                "creator": "ac",
                "role": "1",
                "clusterId": "11112",
                "invoker": f"{random.Random(f'{seed}:invoker').getrandbits(128):032x}",
                "user": user,
                "userId": "11655048541",
            },
            fixed=token,
        )
        self._token = token if token is not None else self._tokens.issue(token_ttl)
        self._generator = random.Random(seed)
        self._fault_rng = random.Random(f"{seed}:faults")
        self._latency_rng = random.Random(f"{seed}:latency")
        self._instances: dict[str, _Instance] = {}
        self._scripted: dict[str, deque[Fault]] = {}
        self._fault_rate = 0.0
        self._fault_mix: list[Fault] = []
        self._fault_weights: list[float] = []
        self.set_fault_rate(fault_rate, kinds=fault_kinds)
        self._latency = latency_range(latency)
        self._slow_latency = latency_range(slow_latency)
        self._retry_after = retry_after
        self._stalled: dict[asyncio.Future[None], asyncio.Transport | None] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._requests = 0
        self._by_endpoint: dict[str, int] = {}
        self._by_instance: dict[str, int] = {}
        self._by_fault: dict[str, int] = {}
        self._populate(instances, include_seed=include_seed_instance)

    # ----- clock -----------------------------------------------------------------------------

    @property
    def sim_time(self) -> float:
        """Simulated seconds since the simulator was made (stands still while frozen)."""
        if self._frozen:
            return self._sim_base
        return self._sim_base + (self._clock() - self._clock_base) * self._speed

    @property
    def sim_datetime(self) -> datetime:
        """The simulated wall time that timestamps are written in."""
        return self._epoch + timedelta(seconds=self.sim_time)

    @property
    def frozen(self) -> bool:
        """Whether lifecycles (and the simulated clock) stand still."""
        return self._frozen

    @property
    def speed(self) -> float:
        """Simulated seconds per clock second."""
        return self._speed

    def freeze(self) -> None:
        """Stop every lifecycle where it stands."""
        if not self._frozen:
            self._sim_base = self.sim_time
            self._frozen = True

    def unfreeze(self) -> None:
        """Let lifecycles move again from where they stood."""
        if self._frozen:
            self._clock_base = self._clock()
            self._frozen = False

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds``, frozen or not."""
        if not seconds >= 0:
            raise ValueError("simulated time only moves forward")
        self._sim_base += seconds

    # ----- instances -------------------------------------------------------------------------

    def _populate(self, count: int, *, include_seed: bool) -> None:
        if include_seed and count > 0:
            self._insert(dict(copy.deepcopy(SEED_DETAIL)), now=0.0, ip=None)
            count -= 1
        for number in range(1, count + 1):
            # Queued before the simulator started; waiting is counted from the start.
            created = self._epoch - timedelta(seconds=self._generator.randint(1, 900))
            self._insert(self._generate(created, number), now=0.0, ip=generate_ip(self._generator))

    def _generate(self, created: datetime, number: int) -> dict[str, Any]:
        return generate_instance(self._generator, created=created, user=self._user, number=number)

    def _insert(self, data: dict[str, Any], *, now: float, ip: str | None) -> _Instance:
        instance_id = data["id"]
        timeout = parse_duration(data.get("timeoutLimit"))
        phases = draw_phases(self._seed, instance_id, 0, timeout=timeout)
        instance = _Instance(
            base=data,
            segment=lifecycle_segment(WAITING, now, phases),
            prefix=(),
            timeout=timeout,
            ip=ip,
            order=(str(data.get("createTime") or ""), instance_id),
        )
        self._instances[instance_id] = instance
        return instance

    def _get(self, instance_id: str) -> _Instance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise KeyError(instance_id) from None

    @property
    def instance_ids(self) -> list[str]:
        """Ids of all instances, in the order they were added."""
        return list(self._instances)

    def status(self, instance_id: str) -> str:
        """The instance's status now."""
        return self._get(instance_id).segment.status_at(self.sim_time)

    def history(self, instance_id: str) -> list[str]:
        """Every status the instance has been in up to now, oldest first."""
        instance = self._get(instance_id)
        segment = instance.segment
        return [*instance.prefix, *segment.path[: segment.index_at(self.sim_time) + 1]]

    def schedule(self, instance_id: str) -> list[tuple[str, float]]:
        """The current run's statuses with the simulated second each begins (past and future)."""
        return self._get(instance_id).segment.schedule()

    def instance(self, instance_id: str) -> dict[str, Any]:
        """The instance as the detail endpoint would serve it now (a fresh copy)."""
        data: dict[str, Any] = json.loads(self._data(self._get(instance_id), self.sim_time))
        return data

    def add_instances(self, count: int = 1) -> list[str]:
        """Generate ``count`` new instances, created now and starting in Waiting."""
        now = self.sim_time
        created = self._epoch + timedelta(seconds=math.floor(now))
        ids = []
        for _ in range(count):
            data = self._generate(created, len(self._instances) + 1)
            self._insert(data, now=now, ip=generate_ip(self._generator))
            ids.append(data["id"])
        return ids

    def add_instance(self, data: Mapping[str, Any], *, hold: bool = True) -> str:
        """Serve ``data`` as an instance: verbatim while held, else running on from its status."""
        instance_id = data.get("id")
        if not isinstance(instance_id, str) or not instance_id:
            raise ValueError("an instance needs a string 'id'")
        if instance_id in self._instances:
            raise ValueError(f"instance {instance_id} already exists")
        status = data.get("status", WAITING)
        if not isinstance(status, str):
            raise ValueError("'status' must be a string")
        now = self.sim_time
        instance = self._insert(copy.deepcopy(dict(data)), now=now, ip=None)
        if hold:
            instance.segment = Segment(now, (status,), (), verbatim=True)
        elif status != WAITING:
            instance.segment = self._next_segment(instance, status, now, hold=False)
        return instance_id

    def remove_instance(self, instance_id: str) -> None:
        """Forget an instance; the detail endpoint then answers 10004 for it."""
        self._get(instance_id)
        del self._instances[instance_id]

    def set_status(self, instance_id: str, status: str, *, hold: bool = True) -> None:
        """Put an instance in ``status`` now (any string); held there, or running on from it.

        Running on from Waiting, Deploying or Running follows the usual path with fresh phase
        lengths; from a status off that path it lasts one deploying phase and then runs; a
        terminal status stays.
        """
        instance = self._get(instance_id)
        now = self.sim_time
        self._switch(instance, self._next_segment(instance, status, now, hold=hold), now)

    def restart(self, instance_id: str) -> None:
        """Send a terminal instance back to Waiting for a fresh run, like the restart endpoint."""
        instance = self._get(instance_id)
        now = self.sim_time
        current = instance.segment.status_at(now)
        if current not in TERMINAL:
            raise ValueError(f"instance {instance_id} is {current}, not stopped")
        self._switch(instance, self._next_segment(instance, WAITING, now, hold=False), now)

    def _next_segment(self, instance: _Instance, status: str, now: float, *, hold: bool) -> Segment:
        segment = instance.segment
        start, end = (None, None) if segment.verbatim else shown_times(segment, now)
        if hold or status in TERMINAL:
            return held_segment(status, now, start_at=start, end_at=end)
        instance.runs += 1
        phases = draw_phases(
            self._seed, instance.base["id"], instance.runs, timeout=instance.timeout
        )
        running = status == RUNNING and start is not None and end is None
        return lifecycle_segment(status, now, phases, start_at=start if running else None)

    def _switch(self, instance: _Instance, segment: Segment, now: float) -> None:
        old = instance.segment
        seen = [*instance.prefix, *old.path[: old.index_at(now) + 1]]
        if seen and seen[-1] == segment.path[0]:
            seen.pop()
        instance.prefix = tuple(seen)
        instance.segment = segment
        instance.version += 1
        instance.cache_key = None

    def _data(self, instance: _Instance, now: float) -> bytes:
        """The instance's JSON at ``now``, re-encoded only when its phase or second changes."""
        segment = instance.segment
        start, end = segment.start_at, segment.end_at
        started = start is not None and start <= now
        ended = end is not None and end <= now
        key = (
            instance.version,
            bisect_right(segment.ends, now),
            started,
            ended,
            math.floor(now) if started and not ended else 0,
        )
        if key != instance.cache_key:
            data = dict(instance.base)
            if not segment.verbatim:
                data.update(
                    lifecycle_fields(
                        segment, now, epoch=self._epoch, timeout=instance.timeout, ip=instance.ip
                    )
                )
            instance.cache_data = _dumps(data)
            instance.cache_envelope = _OK_PREFIX + instance.cache_data + _OK_SUFFIX
            instance.cache_key = key
        return instance.cache_data

    # ----- tokens ----------------------------------------------------------------------------

    @property
    def token(self) -> str:
        """A token the simulator accepts: the fixed one if given, else one issued at start."""
        return self._token

    def issue_token(self, *, ttl: float | None = None) -> str:
        """A new signed token valid for ``ttl`` wall-clock seconds (negative: already expired)."""
        return self._tokens.issue(self._token_ttl if ttl is None else ttl)

    def expire_token(self, token: str) -> None:
        """Make ``token`` expired from now on (it stays renewable for 24 h)."""
        self._tokens.expire(token)

    def token_is_valid(self, token: str) -> bool:
        """Whether the API would accept ``token`` now."""
        return self._tokens.is_valid(token)

    # ----- faults and latency ----------------------------------------------------------------

    def script_faults(self, key: str, faults: Iterable[str]) -> None:
        """Queue faults for the next requests about an instance id (or ``"list"``), in order."""
        # Any key is accepted: an id the simulator does not know can be faulted too.
        parsed = [parse_fault(spec) for spec in faults]
        if parsed:
            self._scripted.setdefault(key, deque()).extend(parsed)

    def fail_times(self, key: str, times: int, *, kind: str = "http_503") -> None:
        """Fault the next ``times`` requests about ``key`` with ``kind``."""
        self.script_faults(key, [kind] * times)

    def pending_faults(self, key: str) -> list[str]:
        """Scripted faults not yet served for ``key``."""
        return [format_fault(fault) for fault in self._scripted.get(key, ())]

    def clear_faults(self, key: str | None = None) -> None:
        """Drop scripted faults for ``key``, or for everything."""
        if key is None:
            self._scripted.clear()
        else:
            self._scripted.pop(key, None)

    def set_fault_rate(
        self, rate: float, *, kinds: Sequence[str] | Mapping[str, float] | None = None
    ) -> None:
        """Fault each detail and list request with probability ``rate``, kinds drawn from a mix."""
        if not 0 <= rate <= 1:
            raise ValueError("fault rate must be within [0, 1]")
        if kinds is not None:
            weighted = kinds.items() if isinstance(kinds, Mapping) else ((k, 1.0) for k in kinds)
            pairs = [(parse_fault(spec), float(weight)) for spec, weight in weighted]
            if not pairs or any(w < 0 for _, w in pairs) or sum(w for _, w in pairs) <= 0:
                raise ValueError("the fault mix needs at least one kind with a positive weight")
            self._fault_mix = [fault for fault, _ in pairs]
            self._fault_weights = [weight for _, weight in pairs]
        self._fault_rate = float(rate)

    @property
    def fault_rate(self) -> float:
        """Probability that a detail or list request is faulted."""
        return self._fault_rate

    @property
    def fault_kinds(self) -> dict[str, float]:
        """The mix random faults are drawn from, kind -> weight."""
        pairs = zip(self._fault_mix, self._fault_weights, strict=True)
        return {format_fault(fault): weight for fault, weight in pairs}

    def set_latency(self, latency: float | Sequence[float]) -> None:
        """Delay every API answer by ``latency`` seconds, or uniformly within (low, high)."""
        self._latency = latency_range(latency)

    @staticmethod
    def _draw(rng: random.Random, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if low == high else rng.uniform(low, high)

    def _take_fault(self, key: str) -> Fault | None:
        queue = self._scripted.get(key)
        if queue:
            fault = queue.popleft()
            if not queue:
                del self._scripted[key]
            return fault
        if self._fault_rate and self._fault_rng.random() < self._fault_rate:
            return self._fault_rng.choices(self._fault_mix, weights=self._fault_weights)[0]
        return None

    # ----- stats -----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counts: ``total``, per ``endpoints``, per ``instances`` id and ``faults`` by kind."""
        return {
            "total": self._requests,
            "endpoints": dict(self._by_endpoint),
            "instances": dict(self._by_instance),
            "faults": dict(self._by_fault),
        }

    def reset_stats(self) -> None:
        """Zero every counter."""
        self._requests = 0
        self._by_endpoint.clear()
        self._by_instance.clear()
        self._by_fault.clear()

    def _count(self, endpoint: str, instance_id: str | None = None) -> None:
        self._requests += 1
        self._by_endpoint[endpoint] = self._by_endpoint.get(endpoint, 0) + 1
        if instance_id is not None:
            self._by_instance[instance_id] = self._by_instance.get(instance_id, 0) + 1

    # ----- the platform's endpoints ------------------------------------------------------------

    async def _serve(self, request: web.Request, key: str, answer: _Answer) -> web.StreamResponse:
        await self._delay()
        fault = self._take_fault(key) if self._scripted or self._fault_rate else None
        if fault is None:
            return _json_response(await answer(request))
        return await self._faulted(request, fault, answer)

    async def _faulted(
        self, request: web.Request, fault: Fault, answer: _Answer
    ) -> web.StreamResponse:
        kind, arg = fault
        self._by_fault[kind] = self._by_fault.get(kind, 0) + 1
        if kind == "slow":
            delay = arg if arg is not None else self._draw(self._latency_rng, self._slow_latency)
            await asyncio.sleep(delay)
            return _json_response(await answer(request))
        if kind == "truncated":
            body = await answer(request)
            return _json_response(body[: len(body) // 2])
        if kind.startswith("code_"):
            return _json_response(_ERRORS[kind.removeprefix("code_")])
        if kind == "http_429":
            return _http_error(429, retry_after=self._retry_after if arg is None else arg)
        if kind.startswith("http_"):
            return _http_error(int(kind.removeprefix("http_")))
        if kind == "html":
            return web.Response(text=_MAINTENANCE_PAGE, content_type="text/html")
        return await self._stall(request, reset=kind == "reset")

    async def _stall(self, request: web.Request, *, reset: bool) -> web.StreamResponse:
        """Never answer: drop the connection (``reset``) or wait until someone gives up."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        transport = request.transport
        self._stalled[waiter] = transport
        try:
            if reset and transport is not None:
                _abort_with_reset(transport)
            # Ends by cancellation: the client leaving, suspend() or close().
            await waiter
        finally:
            self._stalled.pop(waiter, None)
        raise ConnectionResetError("dropped by the simulator")  # pragma: no cover

    async def _detail(self, request: web.Request) -> web.StreamResponse:
        instance_id = request.match_info["id"]
        self._count("detail", instance_id)
        return await self._serve(request, instance_id, self._detail_body)

    async def _detail_body(self, request: web.Request) -> bytes:
        if not self._tokens.is_valid(request.headers.get("token")):
            return _ERRORS["10008"]
        instance = self._instances.get(request.match_info["id"])
        if instance is None:
            return _ERRORS["10004"]
        self._data(instance, self.sim_time)
        return instance.cache_envelope

    async def _list(self, request: web.Request) -> web.StreamResponse:
        self._count("list")
        return await self._serve(request, LIST_FAULT_KEY, self._list_body)

    async def _list_body(self, request: web.Request) -> bytes:
        if not self._tokens.is_valid(request.headers.get("token")):
            return _ERRORS["10008"]
        params = _query_params(request)
        try:
            body = await _json_body(request)
        except ValueError:
            return _ERRORS["10004"]
        if body is not None:
            if not isinstance(body, dict):
                return _ERRORS["10004"]
            params.update(body)
        query = parse_list_query(params)
        if isinstance(query, str):
            return _ERRORS[query]
        return self._list_envelope(query)

    def _list_envelope(self, query: ListQuery) -> bytes:
        now = self.sim_time
        chosen = [
            instance
            for instance in self._instances.values()
            if (query.status is None or instance.segment.status_at(now) == query.status)
            and (query.task_type is None or instance.base.get("taskType") == query.task_type)
            and (not query.names or instance.base.get("instanceServiceName") in query.names)
        ]
        chosen.sort(key=lambda i: i.order, reverse=query.descending)
        page = chosen[query.start : query.start + query.limit]
        return _OK_PREFIX + b"[" + b",".join(self._data(i, now) for i in page) + b"]" + _OK_SUFFIX

    async def _restart(self, request: web.Request) -> web.StreamResponse:
        instance_id = request.query.get("instanceServiceId")
        self._count("restart", instance_id or None)
        await self._delay()
        if not self._tokens.is_valid(request.headers.get("token")):
            return _json_response(_ERRORS["10008"])
        if not instance_id:
            return _json_response(_ERRORS["10003"])
        instance = self._instances.get(instance_id)
        if instance is None or instance.segment.status_at(self.sim_time) not in TERMINAL:
            return _json_response(_ERRORS["10004"])
        self.restart(instance_id)
        return _json_response(_ok_body(instance_id))

    async def _tokens_next(self, request: web.Request) -> web.StreamResponse:
        self._count("tokens_next")
        await self._delay()
        if not self._tokens.is_renewable(request.headers.get("token")):
            return _json_response(_ERRORS["10008"])
        return _json_response(_ok_body(self.issue_token()))

    async def _tokens_state(self, request: web.Request) -> web.StreamResponse:
        self._count("tokens_state")
        await self._delay()
        if not self._tokens.is_valid(request.headers.get("token")):
            return _json_response(_ERRORS["10008"])
        return _json_response(_ok_body(TOKEN_VALID_MESSAGE))

    async def _center(self, request: web.Request) -> web.StreamResponse:
        self._count("center")
        await self._delay()
        if not self._tokens.is_valid(request.headers.get("token")):
            return _json_response(_ERRORS["10008"])
        return _json_response(_ok_body({"aiUrls": [{"enable": "true", "url": self.base_url}]}))

    async def _delay(self) -> None:
        if self._latency[1] > 0:
            await asyncio.sleep(self._draw(self._latency_rng, self._latency))

    # ----- control surface -------------------------------------------------------------------

    def _routes(self) -> list[web.AbstractRouteDef]:
        control = _control  # keeps the table below one line per route
        return [
            web.get(f"{_AI}/{{id}}/detail", self._detail),
            web.get(f"{_AI}/task", self._list),
            web.post(f"{_AI}/task/actions/restart", self._restart),
            web.post(f"{_AC}/tokens/next", self._tokens_next),
            web.get(f"{_AC}/tokens/state", self._tokens_state),
            web.get(f"{_AC}/center", self._center),
            web.get("/_sim/stats", control(self._c_stats)),
            web.post("/_sim/stats/reset", control(self._c_reset_stats)),
            web.get("/_sim/clock", control(self._c_clock)),
            web.post("/_sim/advance", control(self._c_advance)),
            web.post("/_sim/freeze", control(self._c_freeze)),
            web.post("/_sim/unfreeze", control(self._c_unfreeze)),
            web.get("/_sim/instances", control(self._c_instances)),
            web.post("/_sim/instances", control(self._c_add)),
            web.get("/_sim/instances/{id}", control(self._c_instance)),
            web.delete("/_sim/instances/{id}", control(self._c_remove)),
            web.post("/_sim/instances/{id}/status", control(self._c_set_status)),
            web.post("/_sim/instances/{id}/restart", control(self._c_restart)),
            web.post("/_sim/instances/{id}/faults", control(self._c_script_faults)),
            web.post("/_sim/faults", control(self._c_faults)),
            web.post("/_sim/latency", control(self._c_latency)),
            web.post("/_sim/tokens", control(self._c_issue_token)),
            web.post("/_sim/tokens/expire", control(self._c_expire_token)),
        ]

    async def _c_stats(self, request: web.Request) -> Any:
        return self.stats

    async def _c_reset_stats(self, request: web.Request) -> Any:
        self.reset_stats()
        return self.stats

    async def _c_clock(self, request: web.Request) -> Any:
        return {
            "simTime": self.sim_time,
            "simDatetime": self.sim_datetime.strftime("%Y-%m-%d %H:%M:%S"),
            "speed": self._speed,
            "frozen": self._frozen,
        }

    async def _c_advance(self, request: web.Request) -> Any:
        self.advance(_number(await _control_body(request), "seconds"))
        return await self._c_clock(request)

    async def _c_freeze(self, request: web.Request) -> Any:
        self.freeze()
        return await self._c_clock(request)

    async def _c_unfreeze(self, request: web.Request) -> Any:
        self.unfreeze()
        return await self._c_clock(request)

    async def _c_instances(self, request: web.Request) -> Any:
        now = self.sim_time
        return {
            "ids": self.instance_ids,
            "statuses": {i: inst.segment.status_at(now) for i, inst in self._instances.items()},
        }

    async def _c_add(self, request: web.Request) -> Any:
        body = await _control_body(request)
        if "instance" in body:
            data = body["instance"]
            if not isinstance(data, dict):
                raise ValueError("'instance' must be an object")
            return {"ids": [self.add_instance(data, hold=_flag(body, "hold", default=True))]}
        count = int(_number(body, "count", default=1))
        return {"ids": self.add_instances(count)}

    async def _c_instance(self, request: web.Request) -> Any:
        instance_id = request.match_info["id"]
        return {
            "data": self.instance(instance_id),
            "status": self.status(instance_id),
            "history": self.history(instance_id),
            "schedule": self.schedule(instance_id),
            "pendingFaults": self.pending_faults(instance_id),
        }

    async def _c_remove(self, request: web.Request) -> Any:
        self.remove_instance(request.match_info["id"])
        return {"removed": request.match_info["id"]}

    async def _c_set_status(self, request: web.Request) -> Any:
        body = await _control_body(request)
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise ValueError("'status' must be a non-empty string")
        hold = _flag(body, "hold", default=True)
        self.set_status(request.match_info["id"], status, hold=hold)
        return await self._c_instance(request)

    async def _c_restart(self, request: web.Request) -> Any:
        self.restart(request.match_info["id"])
        return await self._c_instance(request)

    async def _c_script_faults(self, request: web.Request) -> Any:
        body = await _control_body(request)
        faults = body.get("faults")
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            raise ValueError("'faults' must be a list of fault kinds")
        key = request.match_info["id"]
        self.script_faults(key, faults)
        return {"pending": self.pending_faults(key)}

    async def _c_faults(self, request: web.Request) -> Any:
        body = await _control_body(request)
        kinds = body.get("kinds")
        if kinds is not None and not isinstance(kinds, (list, dict)):
            raise ValueError("'kinds' must be a list or an object of weights")
        self.set_fault_rate(_number(body, "rate", default=self._fault_rate), kinds=kinds)
        return {"rate": self._fault_rate, "kinds": self.fault_kinds}

    async def _c_latency(self, request: web.Request) -> Any:
        body = await _control_body(request)
        latency = body.get("latency", 0.0)
        if isinstance(latency, bool) or not isinstance(latency, (int, float, list)):
            raise ValueError("'latency' must be seconds or [low, high]")
        self.set_latency(latency)
        return {"latency": list(self._latency)}

    async def _c_issue_token(self, request: web.Request) -> Any:
        body = await _control_body(request)
        return {"token": self.issue_token(ttl=_number(body, "ttl", default=self._token_ttl))}

    async def _c_expire_token(self, request: web.Request) -> Any:
        token = (await _control_body(request)).get("token")
        if not isinstance(token, str):
            raise ValueError("'token' must be a string")
        self.expire_token(token)
        return {"expired": True}

    # ----- serving ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (0 until started with an ephemeral port)."""
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port``, no trailing slash."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Listen on host:port (an ephemeral port when 0)."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application()
        app.add_routes(self._routes())
        # handler_cancellation: a request whose client went away (or was reset) is cancelled
        # at once instead of lingering until shutdown.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        self._runner = runner
        try:
            await self._listen()
        except BaseException:
            self._runner = None
            await runner.cleanup()
            raise

    async def _listen(self) -> None:
        assert self._runner is not None
        sock = socket.create_server((self._host, self._port))
        self._port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        try:
            await site.start()
        except BaseException:
            sock.close()
            raise
        self._site = site

    def _cut_stalled(self) -> None:
        for waiter, transport in list(self._stalled.items()):
            if transport is not None:
                transport.abort()
            waiter.cancel()

    def _drop_connections(self) -> None:
        self._cut_stalled()
        server = None if self._runner is None else self._runner.server
        for handler in server.connections if server is not None else ():
            if handler.transport is not None:
                handler.transport.abort()

    async def suspend(self) -> None:
        """Stop listening and drop every connection, as if the process died; state is kept."""
        if self._site is None:
            raise RuntimeError("the simulator is not listening")
        site, self._site = self._site, None
        await _stop_listening(site)
        self._drop_connections()
        # Let the dropped connections deliver connection_lost before anyone reconnects.
        await asyncio.sleep(0)

    async def resume(self) -> None:
        """Listen again on the same port after :meth:`suspend`."""
        if self._runner is None:
            raise RuntimeError("the simulator was never started")
        if self._site is not None:
            raise RuntimeError("the simulator is already listening")
        await self._listen()

    async def close(self) -> None:
        """Stop serving; stalled requests are cut off rather than waited for."""
        runner, site = self._runner, self._site
        self._runner = self._site = None
        if runner is None:
            return
        # Stop listening before cutting stalled requests: a client that retries the cut request
        # must be refused, not accepted by a listener that is half closed.
        if site is not None:
            await _stop_listening(site)
        self._cut_stalled()
        await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _stop_listening(site: web.SockSite) -> None:
    # A connection accepted in this loop iteration is attached to the listener in the next one;
    # closing the listener in between trips an assertion inside asyncio and leaks the socket.
    await asyncio.sleep(0)
    await site.stop()


def _control(
    handler: Callable[[web.Request], Awaitable[Any]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def respond(request: web.Request) -> web.StreamResponse:
        try:
            result = await handler(request)
        except KeyError as exc:
            return web.json_response({"error": f"unknown instance id {exc.args[0]}"}, status=404)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result)

    return respond


async def _control_body(request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)  # ValueError (bad JSON) becomes a 400
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _number(body: Mapping[str, Any], name: str, *, default: float | None = None) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name!r} must be a number")
    return float(value)


def _flag(body: Mapping[str, Any], name: str, *, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{name!r} must be true or false")
    return value


# ----- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground until SIGINT or SIGTERM (``aiocontainer simulate``)."""
    from aiocontainer.cli.simulate import main as simulate

    return simulate(argv)


if __name__ == "__main__":
    sys.exit(main())
