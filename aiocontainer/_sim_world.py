"""The simulated world: its clock, its instances and their lifecycles, their rendering, and counts.

Rule 1: status is computed from a clock when asked; nothing runs per instance. Simulated seconds
are clock seconds times ``speed``, and timestamps are a fixed epoch plus simulated seconds.
Rule 2: ``history(id)`` lists every status an instance has been in, in order, with no two equal
neighbours; it is what a perfect observer would have seen.
Rule 3: no I/O and no event loop: this module is plain data and arithmetic, so it is tested
without sockets; the HTTP layer asks it questions and serves the bytes it renders.
Rule 4: an unknown id raises :class:`UnknownInstanceError` (a ``KeyError``), and only that error
means "no such instance" to the layers above.
Rule 5: a list page is an offset into the instances as they are when it is asked for, so an
instance created or deleted between two pages shifts the later ones (as on the platform); a
page is never longer than the page cap, whatever ``limit`` asked for.
"""

from __future__ import annotations

import copy
import json
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiocontainer._sim_lifecycle import (
    RUNNING,
    SEED_DETAIL,
    STATUSES,
    TASK_TYPES,
    TERMINAL,
    WAITING,
    Segment,
    draw_phases,
    generate_instance,
    generate_ip,
    held_segment,
    lifecycle_fields,
    lifecycle_segment,
    parse_duration,
    shown_times,
)

__all__ = [
    "ListQuery",
    "SimClock",
    "Stats",
    "UnknownInstanceError",
    "World",
    "error_body",
    "ok_body",
    "parse_list_query",
]


def _json_dumps_factory() -> Callable[[Any], bytes]:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is an optional speed-up
        return lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    dumps: Callable[[Any], bytes] = orjson.dumps
    return dumps


dumps = _json_dumps_factory()

MESSAGES: Mapping[str, str] = {
    "0": "SUCCESS",
    "10001": "内部异常",
    "10003": "参数不全",
    "10004": "参数无效",
    "10008": "权限不足",
    "10012": "连接中断",
}
_OK_PREFIX = b'{"code":"0","msg":"SUCCESS","data":'
_OK_SUFFIX = b"}"


def error_body(code: str, message: str | None = None) -> bytes:
    """The platform's envelope for an error ``code`` (``data`` is null)."""
    return dumps(
        {"code": code, "msg": MESSAGES[code] if message is None else message, "data": None}
    )


def ok_body(data: Any) -> bytes:
    """The platform's success envelope around ``data``."""
    return _OK_PREFIX + dumps(data) + _OK_SUFFIX


class UnknownInstanceError(KeyError):
    """No instance has this id (the only error the control surface turns into a 404)."""


class SimClock:
    """Simulated seconds since the simulator was made: clock seconds times ``speed``."""

    def __init__(self, clock: Callable[[], float], *, speed: float, frozen: bool) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError("speed must be a positive number")
        self._clock = clock
        self._base = clock()
        self._sim_base = 0.0
        self.speed = float(speed)
        self.frozen = frozen

    def now(self) -> float:
        """Simulated seconds now (standing still while frozen)."""
        if self.frozen:
            return self._sim_base
        return self._sim_base + (self._clock() - self._base) * self.speed

    def freeze(self) -> None:
        """Stop simulated time where it stands."""
        if not self.frozen:
            self._sim_base = self.now()
            self.frozen = True

    def unfreeze(self) -> None:
        """Let simulated time move again from where it stood."""
        if self.frozen:
            self._base = self._clock()
            self.frozen = False

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds``, frozen or not."""
        if not seconds >= 0:
            raise ValueError("simulated time only moves forward")
        self._sim_base += seconds


class Stats:
    """Request counts: in total, per endpoint, per instance id and per fault kind."""

    def __init__(self) -> None:
        self.total = 0
        self.endpoints: dict[str, int] = {}
        self.instances: dict[str, int] = {}
        self.faults: dict[str, int] = {}

    def count(self, endpoint: str, instance_id: str | None = None) -> None:
        """Count one request to ``endpoint`` (about ``instance_id`` when it names one)."""
        self.total += 1
        self.endpoints[endpoint] = self.endpoints.get(endpoint, 0) + 1
        if instance_id is not None:
            self.instances[instance_id] = self.instances.get(instance_id, 0) + 1

    def count_fault(self, kind: str) -> None:
        """Count one fault served."""
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """The counts as plain JSON-ready data."""
        return {
            "total": self.total,
            "endpoints": dict(self.endpoints),
            "instances": dict(self.instances),
            "faults": dict(self.faults),
        }

    def reset(self) -> None:
        """Zero every count."""
        self.total = 0
        self.endpoints.clear()
        self.instances.clear()
        self.faults.clear()


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


class World:
    """Every instance of the simulated account, its lifecycle and its JSON as of now."""

    def __init__(
        self,
        *,
        clock: SimClock,
        seed: int,
        epoch: datetime,
        user: str,
        instances: int,
        include_seed: bool,
    ) -> None:
        if instances < 0:
            raise ValueError("instances must be >= 0")
        self.clock = clock
        self.epoch = epoch
        self._seed = seed
        self._user = user
        self._generator = random.Random(seed)
        self._churn_rng = random.Random(f"{seed}:churn")
        self._instances: dict[str, _Instance] = {}
        # The instances in the list endpoint's order, kept until one is added or deleted: a
        # listing of a large account sorts once, not once per page.
        self._listed: list[_Instance] | None = None
        # The history of every deleted instance, as it stood when it was deleted.
        self._deleted: dict[str, list[str]] = {}
        if include_seed and instances > 0:
            self._insert(dict(copy.deepcopy(SEED_DETAIL)), now=0.0, ip=None)
            instances -= 1
        for number in range(1, instances + 1):
            # Queued before the simulator started; waiting is counted from the start.
            created = epoch - timedelta(seconds=self._generator.randint(1, 900))
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
        self._listed = None
        return instance

    def _get(self, instance_id: str) -> _Instance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise UnknownInstanceError(instance_id) from None

    # ----- questions ---------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Ids of all instances, in the order they were added."""
        return list(self._instances)

    def __len__(self) -> int:
        return len(self._instances)

    def status(self, instance_id: str) -> str:
        """The instance's status now."""
        return self._get(instance_id).segment.status_at(self.clock.now())

    def statuses(self) -> dict[str, str]:
        """Every instance's status now, by id."""
        now = self.clock.now()
        return {i: instance.segment.status_at(now) for i, instance in self._instances.items()}

    def history(self, instance_id: str) -> list[str]:
        """Every status the instance has been in up to now (or until deleted), oldest first."""
        if instance_id in self._deleted and instance_id not in self._instances:
            return list(self._deleted[instance_id])
        instance = self._get(instance_id)
        segment = instance.segment
        return [*instance.prefix, *segment.path[: segment.index_at(self.clock.now()) + 1]]

    def schedule(self, instance_id: str) -> list[tuple[str, float]]:
        """The current run's statuses with the simulated second each begins (past and future)."""
        return self._get(instance_id).segment.schedule()

    def instance(self, instance_id: str) -> dict[str, Any]:
        """The instance as the detail endpoint would serve it now (a fresh copy)."""
        data: dict[str, Any] = json.loads(self._render(self._get(instance_id), self.clock.now()))
        return data

    # ----- changes -----------------------------------------------------------------------------

    def add_instances(self, count: int = 1) -> list[str]:
        """Generate ``count`` new instances, created now and starting in Waiting."""
        now = self.clock.now()
        created = self.epoch + timedelta(seconds=math.floor(now))
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
        now = self.clock.now()
        instance = self._insert(copy.deepcopy(dict(data)), now=now, ip=None)
        if hold:
            instance.segment = Segment(now, (status,), (), verbatim=True)
        elif status != WAITING:
            instance.segment = self._next_segment(instance, status, now, hold=False)
        return instance_id

    def remove_instance(self, instance_id: str) -> None:
        """Delete an instance; the detail endpoint then answers 10004 for it.

        Its history stays readable through :meth:`history`, so an observer can be checked
        against what the instance went through before it disappeared.
        """
        self._get(instance_id)  # a deleted or unknown id is refused, not deleted twice
        history = self.history(instance_id)
        del self._instances[instance_id]
        self._listed = None
        self._deleted[instance_id] = history

    def deleted_ids(self) -> list[str]:
        """Ids of deleted instances, oldest deletion first."""
        return [i for i in self._deleted if i not in self._instances]

    def churn(
        self, count: int, *, keep: frozenset[str] = frozenset()
    ) -> tuple[list[str], list[str]]:
        """Create ``count`` instances and delete ``count`` others (never one in ``keep``).

        Deletions are drawn from the instances that existed before this call, with the world's
        own seeded generator; the created ones are the newest, so a listing sorted newest first
        sees every later page shift. Returns (created ids, deleted ids).
        """
        if count < 0:
            raise ValueError("churn must be >= 0")
        candidates = [i for i in self._instances if i not in keep]
        deleted = self._churn_rng.sample(candidates, min(count, len(candidates)))
        created = self.add_instances(count)
        for instance_id in deleted:
            self.remove_instance(instance_id)
        return created, deleted

    def set_status(self, instance_id: str, status: str, *, hold: bool = True) -> None:
        """Put an instance in ``status`` now; held there, or running on from it."""
        instance = self._get(instance_id)
        now = self.clock.now()
        self._switch(instance, self._next_segment(instance, status, now, hold=hold), now)

    def restart(self, instance_id: str) -> None:
        """Send a terminal instance back to Waiting for a fresh run."""
        instance = self._get(instance_id)
        now = self.clock.now()
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

    # ----- rendering ---------------------------------------------------------------------------

    def _render(self, instance: _Instance, now: float) -> bytes:
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
                        segment, now, epoch=self.epoch, timeout=instance.timeout, ip=instance.ip
                    )
                )
            instance.cache_data = dumps(data)
            instance.cache_envelope = _OK_PREFIX + instance.cache_data + _OK_SUFFIX
            instance.cache_key = key
        return instance.cache_data

    def detail_envelope(self, instance_id: str) -> bytes | None:
        """The detail endpoint's success envelope for the instance now, None if it is unknown."""
        instance = self._instances.get(instance_id)
        if instance is None:
            return None
        self._render(instance, self.clock.now())
        return instance.cache_envelope

    def list_envelope(
        self, query: ListQuery, *, cap: int | None = None, total: bool = False
    ) -> bytes:
        """The list endpoint's success envelope: one page, at most ``cap`` entries long; with
        ``total``, the size of the whole (filtered) list beside ``data``."""
        now = self.clock.now()
        if self._listed is None:
            self._listed = sorted(self._instances.values(), key=lambda i: i.order)
        chosen = self._listed
        if query.status is not None or query.task_type is not None or query.names:
            chosen = [
                instance
                for instance in chosen
                if (query.status is None or instance.segment.status_at(now) == query.status)
                and (query.task_type is None or instance.base.get("taskType") == query.task_type)
                and (not query.names or instance.base.get("instanceServiceName") in query.names)
            ]
        limit = query.limit if cap is None else min(query.limit, cap)
        if query.descending:  # the same page of the reversed list, without reversing it all
            end = max(len(chosen) - query.start, 0)
            page = chosen[max(end - limit, 0) : end][::-1]
        else:
            page = chosen[query.start : query.start + limit]
        closing = b',"total":%d' % len(chosen) + _OK_SUFFIX if total else _OK_SUFFIX
        return _OK_PREFIX + b"[" + b",".join(self._render(i, now) for i in page) + b"]" + closing


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The list endpoint's parameters once checked."""

    start: int
    limit: int
    descending: bool
    status: str | None
    task_type: str | None
    names: frozenset[str]


def _int_param(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _names_param(value: Any) -> frozenset[str] | None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        return None
    return frozenset(part for item in items for part in item.split(",") if part)


def parse_list_query(params: Mapping[str, Any]) -> ListQuery | str:
    """The list endpoint's parameters checked, or the envelope code that rejects them."""
    if params.get("limit") in (None, ""):
        return "10003"
    limit = _int_param(params["limit"])
    start = _int_param(params.get("start", 0))
    sort = params.get("sort") or "desc"
    status = params.get("status") or None
    task_type = params.get("taskType") or None
    names = _names_param(params.get("instanceServiceName", []))
    if (
        limit is None
        or limit < 1
        or start is None
        or start < 0
        or not isinstance(sort, str)
        or sort.lower() not in ("asc", "desc")
        or (status is not None and status not in STATUSES)
        or (task_type is not None and task_type not in TASK_TYPES)
        or names is None
    ):
        return "10004"
    return ListQuery(start, limit, sort.lower() == "desc", status, task_type, names)
