"""The simulator over HTTP: the platform's endpoints, its faults, and the ``/_sim/`` controls.

Rule 1: the platform's endpoints answer HTTP 200 with an envelope whose ``code`` is a string,
unless a fault says otherwise; random faults hit the detail and list endpoints only, scripted
ones also the token endpoints (key ``"tokens"``) and the center (key ``"center"``).
Rule 2: counting, latency and faults are middleware of the platform's sub-applications only;
the control surface is a sub-application of its own, so it is never faulted, delayed or counted
by construction, not by a check in each handler.
Rule 3: only :class:`UnknownInstanceError` becomes a 404 on the control surface; any other
``KeyError`` is a bug and answers 500 like every other unexpected exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from aiocontainer._sim_auth import AUTH_MESSAGES, Login, Region, TokenBook, center_data
from aiocontainer._sim_faults import (
    CENTER_FAULT_KEY,
    LIST_FAULT_KEY,
    TOKENS_FAULT_KEY,
    Fault,
    FaultPlan,
    Latency,
)
from aiocontainer._sim_lifecycle import TERMINAL, format_timestamp
from aiocontainer._sim_world import (
    Stats,
    UnknownInstanceError,
    World,
    error_body,
    ok_body,
    parse_list_query,
)

__all__ = ["Parts", "build_app", "control_route"]

TOKEN_VALID_MESSAGE = "token is valid"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(eq=False)
class Parts:
    """Everything the HTTP layer serves from, shared with the :class:`Simulator` facade."""

    world: World
    faults: FaultPlan
    latency: Latency
    stats: Stats
    tokens: TokenBook
    login: Login
    regions: tuple[Region, ...]
    user: str
    token_ttl: float
    retry_after: float
    page_cap: int | None = None
    churn: int = 0
    list_total: bool = False  # whether list answers send a "total" beside "data"
    keep: frozenset[str] = frozenset()  # never deleted by churn
    base_url: Callable[[], str] = lambda: ""
    # Requests held open by a hang or reset fault, cut off by suspend() and close().
    stalled: dict[asyncio.Future[None], asyncio.Transport | None] = field(default_factory=dict)

    def set_listing(
        self, *, page_cap: int | None = None, churn: int | None = None, total: bool | None = None
    ) -> None:
        """Change the list endpoint's page cap, churn or total; None leaves one as it is.

        Nothing changes unless every value given is valid.
        """
        if page_cap is not None and (isinstance(page_cap, bool) or page_cap < 1):
            raise ValueError("page_cap must be >= 1")
        if churn is not None and (isinstance(churn, bool) or churn < 0):
            raise ValueError("churn must be >= 0")
        if total is not None and not isinstance(total, bool):
            raise ValueError("total must be true or false")
        self.page_cap = self.page_cap if page_cap is None else page_cap
        self.churn = self.churn if churn is None else churn
        self.list_total = self.list_total if total is None else total

    def cut_stalled(self) -> None:
        """Abort every request held open by a fault."""
        for waiter, transport in list(self.stalled.items()):
            if transport is not None:
                transport.abort()
            waiter.cancel()


def _json_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json", charset="utf-8")


_ERRORS: Mapping[str, bytes] = {
    **{code: error_body(code) for code in ("10001", "10003", "10004", "10008", "10012")},
    **{code: error_body(code, message) for code, message in AUTH_MESSAGES.items()},
}

# ----- faults ----------------------------------------------------------------------------------

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


def _abort_with_reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 makes close() send RST, which is what a crashed proxy looks like.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _stall(parts: Parts, request: web.Request, *, reset: bool) -> web.StreamResponse:
    """Never answer: drop the connection (``reset``) or wait until someone gives up."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    transport = request.transport
    parts.stalled[waiter] = transport
    try:
        if reset and transport is not None:
            _abort_with_reset(transport)
        # Ends by cancellation: the client leaving, suspend() or close().
        await waiter
    finally:
        parts.stalled.pop(waiter, None)
    raise ConnectionResetError("dropped by the simulator")  # pragma: no cover


async def _faulted(
    parts: Parts, request: web.Request, fault: Fault, handler: _Handler
) -> web.StreamResponse:
    kind, arg = fault
    parts.stats.count_fault(kind)
    if kind == "slow":
        await asyncio.sleep(parts.latency.draw_slow(fault))
        return await handler(request)
    if kind == "truncated":
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else b""
        assert isinstance(body, bytes)
        return _json_response(body[: len(body) // 2])
    if kind.startswith("code_"):
        return _json_response(_ERRORS[kind.removeprefix("code_")])
    if kind == "http_429":
        return _http_error(429, retry_after=parts.retry_after if arg is None else arg)
    if kind.startswith("http_"):
        return _http_error(int(kind.removeprefix("http_")))
    if kind == "html":
        return web.Response(text=_MAINTENANCE_PAGE, content_type="text/html")
    return await _stall(parts, request, reset=kind == "reset")


# ----- the platform's endpoints -----------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    """How the middleware treats one platform route: its counter, its fault key, its id."""

    name: str
    fault_keys: Callable[[web.Request], tuple[str, ...]] | None = None
    instance_id: Callable[[web.Request], str | None] = lambda request: None
    scripted_only: bool = False


def _path_id(request: web.Request) -> str:
    return request.match_info["id"]


def _restart_id(request: web.Request) -> str | None:
    return request.query.get("instanceServiceId") or None


def _detail_keys(request: web.Request) -> tuple[str, ...]:
    return (request.match_info["id"],)


def _list_keys(request: web.Request) -> tuple[str, ...]:
    # A page's own key comes first; a start given only in a JSON body counts as the list's.
    start = request.query.get("start", "0")
    return (f"{LIST_FAULT_KEY}:{start}", LIST_FAULT_KEY)


def _tokens_keys(request: web.Request) -> tuple[str, ...]:
    return (TOKENS_FAULT_KEY,)


def _center_keys(request: web.Request) -> tuple[str, ...]:
    return (CENTER_FAULT_KEY,)


_ENDPOINTS: Mapping[str, _Endpoint] = {
    "detail": _Endpoint("detail", fault_keys=_detail_keys, instance_id=_path_id),
    "list": _Endpoint("list", fault_keys=_list_keys),
    "restart": _Endpoint("restart", instance_id=_restart_id),
    "tokens": _Endpoint("tokens", fault_keys=_tokens_keys, scripted_only=True),
    "tokens_password": _Endpoint("tokens_password", fault_keys=_tokens_keys, scripted_only=True),
    "tokens_next": _Endpoint("tokens_next", fault_keys=_tokens_keys, scripted_only=True),
    "tokens_state": _Endpoint("tokens_state"),
    "center": _Endpoint("center", fault_keys=_center_keys, scripted_only=True),
}


def _platform_middleware(parts: Parts) -> Any:
    @web.middleware
    async def platform(request: web.Request, handler: _Handler) -> web.StreamResponse:
        endpoint = _ENDPOINTS.get(request.match_info.route.name or "")
        if endpoint is None:  # no such route: aiohttp's own 404 / 405
            return await handler(request)
        parts.stats.count(endpoint.name, endpoint.instance_id(request))
        delay = parts.latency.draw()
        if delay > 0:
            await asyncio.sleep(delay)
        if endpoint.fault_keys is not None:
            keys = endpoint.fault_keys(request)
            fault = parts.faults.take(*keys, scripted_only=endpoint.scripted_only)
            if fault is not None:
                return await _faulted(parts, request, fault, handler)
        return await handler(request)

    return platform


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


class _Platform:
    """The platform's handlers; each returns the envelope the platform would."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._world = parts.world
        self._tokens = parts.tokens

    def ai_routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/openapi/v2/instance-service/{id}/detail", self.detail, name="detail"),
            web.get("/openapi/v2/instance-service/task", self.list, name="list"),
            web.post(
                "/openapi/v2/instance-service/task/actions/restart", self.restart, name="restart"
            ),
        ]

    def api_routes(self) -> list[web.AbstractRouteDef]:
        return [web.post("/user/v3/tokens", self.tokens_with_keys, name="tokens")]

    def ac_routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post("/openapi/v2/tokens", self.tokens_with_password, name="tokens_password"),
            web.post("/openapi/v2/tokens/next", self.tokens_next, name="tokens_next"),
            web.get("/openapi/v2/tokens/state", self.tokens_state, name="tokens_state"),
            web.get("/openapi/v2/center", self.center, name="center"),
        ]

    async def detail(self, request: web.Request) -> web.StreamResponse:
        if not self._tokens.is_region_token(request.headers.get("token")):
            return _json_response(_ERRORS["10008"])
        envelope = self._world.detail_envelope(request.match_info["id"])
        return _json_response(_ERRORS["10004"] if envelope is None else envelope)

    async def list(self, request: web.Request) -> web.StreamResponse:
        if not self._tokens.is_region_token(request.headers.get("token")):
            return _json_response(_ERRORS["10008"])
        params = _query_params(request)
        try:
            body = await _json_body(request)
        except ValueError:
            return _json_response(_ERRORS["10004"])
        if body is not None:
            if not isinstance(body, dict):
                return _json_response(_ERRORS["10004"])
            params.update(body)
        query = parse_list_query(params)
        if isinstance(query, str):
            return _json_response(_ERRORS[query])
        if self._parts.churn:
            # Other users at work between two pages: the later pages shift under the listing.
            self._world.churn(self._parts.churn, keep=self._parts.keep)
        parts = self._parts
        return _json_response(
            self._world.list_envelope(query, cap=parts.page_cap, total=parts.list_total)
        )

    async def restart(self, request: web.Request) -> web.StreamResponse:
        if not self._tokens.is_region_token(request.headers.get("token")):
            return _json_response(_ERRORS["10008"])
        instance_id = request.query.get("instanceServiceId")
        if not instance_id:
            return _json_response(_ERRORS["10003"])
        try:
            if self._world.status(instance_id) not in TERMINAL:
                return _json_response(_ERRORS["10004"])
        except UnknownInstanceError:
            return _json_response(_ERRORS["10004"])
        self._world.restart(instance_id)
        return _json_response(ok_body(instance_id))

    async def tokens_with_keys(self, request: web.Request) -> web.StreamResponse:
        answer = self._parts.login.with_keys(request.headers)
        return _json_response(_ERRORS[answer] if isinstance(answer, str) else ok_body(answer))

    async def tokens_with_password(self, request: web.Request) -> web.StreamResponse:
        answer = self._parts.login.with_password(request.headers)
        return _json_response(_ERRORS[answer] if isinstance(answer, str) else ok_body(answer))

    async def tokens_next(self, request: web.Request) -> web.StreamResponse:
        renewed = self._tokens.renew(request.headers.get("token"), self._parts.token_ttl)
        return _json_response(_ERRORS["10008"] if renewed is None else ok_body(renewed))

    async def tokens_state(self, request: web.Request) -> web.StreamResponse:
        if not self._tokens.is_valid(request.headers.get("token")):
            return _json_response(_ERRORS["10008"])
        return _json_response(ok_body(TOKEN_VALID_MESSAGE))

    async def center(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("token")
        if token is None or not self._tokens.is_valid(token):
            return _json_response(_ERRORS["10008"])
        parts = self._parts
        data = center_data(
            self._tokens.cluster_of(token),
            regions=parts.regions,
            base_url=parts.base_url(),
            user=parts.user,
        )
        return _json_response(ok_body(data))


# ----- the control surface ----------------------------------------------------------------------


def control_route(
    handler: Callable[[web.Request], Awaitable[Any]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a control handler: its result as JSON; bad input a 400, an unknown id a 404."""

    async def respond(request: web.Request) -> web.StreamResponse:
        try:
            result = await handler(request)
        except UnknownInstanceError as exc:
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


class _Controls:
    """The ``/_sim/`` handlers: the facade's methods over HTTP, for tests in other processes."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._world = parts.world
        self._clock = parts.world.clock

    def routes(self) -> list[web.AbstractRouteDef]:
        c = control_route  # keeps the table below one line per route
        return [
            web.get("/stats", c(self.stats)),
            web.post("/stats/reset", c(self.reset_stats)),
            web.get("/clock", c(self.clock)),
            web.post("/advance", c(self.advance)),
            web.post("/freeze", c(self.freeze)),
            web.post("/unfreeze", c(self.unfreeze)),
            web.get("/instances", c(self.instances)),
            web.post("/instances", c(self.add)),
            web.get("/instances/{id}", c(self.instance)),
            web.delete("/instances/{id}", c(self.remove)),
            web.post("/instances/{id}/status", c(self.set_status)),
            web.post("/instances/{id}/restart", c(self.restart)),
            web.post("/instances/{id}/faults", c(self.script_faults)),
            web.post("/faults", c(self.faults)),
            web.post("/latency", c(self.latency)),
            web.post("/listing", c(self.listing)),
            web.post("/tokens", c(self.issue_token)),
            web.post("/tokens/expire", c(self.expire_token)),
        ]

    async def stats(self, request: web.Request) -> Any:
        return self._parts.stats.snapshot()

    async def reset_stats(self, request: web.Request) -> Any:
        self._parts.stats.reset()
        return self._parts.stats.snapshot()

    async def clock(self, request: web.Request) -> Any:
        now = self._clock.now()
        return {
            "simTime": now,
            "simDatetime": format_timestamp(self._world.epoch, now),
            "speed": self._clock.speed,
            "frozen": self._clock.frozen,
        }

    async def advance(self, request: web.Request) -> Any:
        self._clock.advance(_number(await _control_body(request), "seconds"))
        return await self.clock(request)

    async def freeze(self, request: web.Request) -> Any:
        self._clock.freeze()
        return await self.clock(request)

    async def unfreeze(self, request: web.Request) -> Any:
        self._clock.unfreeze()
        return await self.clock(request)

    async def instances(self, request: web.Request) -> Any:
        world = self._world
        return {"ids": world.ids(), "statuses": world.statuses(), "deleted": world.deleted_ids()}

    async def add(self, request: web.Request) -> Any:
        body = await _control_body(request)
        if "instance" in body:
            data = body["instance"]
            if not isinstance(data, dict):
                raise ValueError("'instance' must be an object")
            hold = _flag(body, "hold", default=True)
            return {"ids": [self._world.add_instance(data, hold=hold)]}
        count = int(_number(body, "count", default=1))
        return {"ids": self._world.add_instances(count)}

    async def instance(self, request: web.Request) -> Any:
        instance_id = request.match_info["id"]
        world = self._world
        return {
            "data": world.instance(instance_id),
            "status": world.status(instance_id),
            "history": world.history(instance_id),
            "schedule": world.schedule(instance_id),
            "pendingFaults": self._parts.faults.pending(instance_id),
        }

    async def remove(self, request: web.Request) -> Any:
        self._world.remove_instance(request.match_info["id"])
        return {"removed": request.match_info["id"]}

    async def set_status(self, request: web.Request) -> Any:
        body = await _control_body(request)
        status = body.get("status")
        if not isinstance(status, str) or not status:
            raise ValueError("'status' must be a non-empty string")
        hold = _flag(body, "hold", default=True)
        self._world.set_status(request.match_info["id"], status, hold=hold)
        return await self.instance(request)

    async def restart(self, request: web.Request) -> Any:
        self._world.restart(request.match_info["id"])
        return await self.instance(request)

    async def script_faults(self, request: web.Request) -> Any:
        body = await _control_body(request)
        faults = body.get("faults")
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            raise ValueError("'faults' must be a list of fault kinds")
        key = request.match_info["id"]
        self._parts.faults.script(key, faults)
        return {"pending": self._parts.faults.pending(key)}

    async def faults(self, request: web.Request) -> Any:
        body = await _control_body(request)
        kinds = body.get("kinds")
        if kinds is not None and not isinstance(kinds, (list, dict)):
            raise ValueError("'kinds' must be a list or an object of weights")
        plan = self._parts.faults
        plan.set_rate(_number(body, "rate", default=plan.rate), kinds=kinds)
        return {"rate": plan.rate, "kinds": plan.kinds}

    async def latency(self, request: web.Request) -> Any:
        body = await _control_body(request)
        latency = body.get("latency", 0.0)
        if isinstance(latency, bool) or not isinstance(latency, (int, float, list)):
            raise ValueError("'latency' must be seconds or [low, high]")
        self._parts.latency.set(latency)
        return {"latency": list(self._parts.latency.every)}

    async def listing(self, request: web.Request) -> Any:
        body = await _control_body(request)
        parts = self._parts
        parts.set_listing(
            page_cap=int(_number(body, "pageCap", default=parts.page_cap or 1)),
            churn=int(_number(body, "churn", default=parts.churn)),
            total=_flag(body, "total", default=parts.list_total),
        )
        return {"pageCap": parts.page_cap, "churn": parts.churn, "total": parts.list_total}

    async def issue_token(self, request: web.Request) -> Any:
        body = await _control_body(request)
        ttl = _number(body, "ttl", default=self._parts.token_ttl)
        cluster = body.get("clusterId")
        if cluster is not None and not isinstance(cluster, str):
            raise ValueError("'clusterId' must be a string")
        return {"token": self._parts.tokens.issue(ttl, cluster_id=cluster)}

    async def expire_token(self, request: web.Request) -> Any:
        token = (await _control_body(request)).get("token")
        if not isinstance(token, str):
            raise ValueError("'token' must be a string")
        self._parts.tokens.expire(token)
        return {"expired": True}


def build_app(parts: Parts) -> web.Application:
    """The whole server: the platform's sub-applications (with middleware) and the controls."""
    platform = _Platform(parts)
    middleware = _platform_middleware(parts)
    ai = web.Application(middlewares=[middleware])
    ai.add_routes(platform.ai_routes())
    ac = web.Application(middlewares=[middleware])
    ac.add_routes(platform.ac_routes())
    api = web.Application(middlewares=[middleware])
    api.add_routes(platform.api_routes())
    controls = web.Application()
    controls.add_routes(_Controls(parts).routes())
    app = web.Application()
    app.add_subapp("/ai/", ai)
    app.add_subapp("/ac/", ac)
    app.add_subapp("/api/", api)
    app.add_subapp("/_sim/", controls)
    return app
