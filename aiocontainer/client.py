"""``ContainerClient``: lookups, listing and bulk calls over one retry policy and one token.

Rule 1: a request is retried only when ``_protocol.is_retryable`` says so, or once after a
        10008 with a renewed token; every request counts against ``max_attempts`` and no attempt
        starts after ``max_retry_time``; cancellation is never caught.
Rule 2: concurrent ``get_instance`` calls for one id share one request.
Rule 3: time is read only through the injected ``clock``, ``sleep`` and ``wall_clock``.

The HTTP exchange itself (session, slots, rate limit, base URLs, bodies, foreign errors) is
``_transport.Transport``; the answers are read by ``_protocol``; the token is ``_tokens``'s.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl as _ssl
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Final, NoReturn, Protocol, TypeAlias, TypeVar

import aiohttp
import attrs
import backoff

from aiocontainer._bulk import Result, as_completed, lookup_all, sort_ids
from aiocontainer._options import require
from aiocontainer._paging import DetailCache, ListPage, Pager, walk
from aiocontainer._protocol import (
    DETAIL_PATH,
    LIST_PATH,
    MAX_BODY_BYTES,
    after_failure,
    ai_base_urls,
    list_filters,
    list_request,
    read_detail,
    read_list_page,
    retry_delay,
    validate_instance_id,
)
from aiocontainer._telemetry import endpoint_of, error_fields, start_lookup
from aiocontainer._tokens import TokenKeeper, TokenProvider, raise_unchained
from aiocontainer._transport import Params, Transport
from aiocontainer.errors import (
    AiocontainerError,
    ClientClosedError,
)
from aiocontainer.models import InstanceDetail

__all__ = ["ClientStats", "ContainerClient", "Result", "TokenProvider"]

_log = logging.getLogger("aiocontainer")

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)

_FOREIGN_ERRORS: Final = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
_DEFAULT_REFRESH_MARGIN: Final = 60.0


@attrs.define(kw_only=True)
class ClientStats:
    """Counters of what a client has done since it was created (``client.stats`` is a copy)."""

    #: HTTP requests sent (each attempt counts).
    requests: int = 0
    #: Attempts that were followed by another one.
    retries: int = 0
    #: Lookups that ended with an error after their last attempt.
    failures: int = 0
    #: Times the token provider was called.
    token_refreshes: int = 0


class _Cancelled:
    """Marks a shared lookup whose leader was cancelled; followers then fetch for themselves."""


_LEADER_CANCELLED: Final = _Cancelled()
_Outcome: TypeAlias = tuple[InstanceDetail | None, AiocontainerError | None] | _Cancelled
_Filters: TypeAlias = tuple[tuple[str, str], ...]
_Cache: TypeAlias = DetailCache | None


class _Reader(Protocol[_T_co]):
    """Turns one answer into a result, or raises the one error it amounts to. Readers are
    ``functools.partial`` objects of ``_protocol``'s functions: a call is one Python frame."""

    def __call__(
        self, status: int, headers: Mapping[str, str], body: bytes, *, secret: str
    ) -> _T_co: ...


def _check_options(given: Mapping[str, Any]) -> None:
    """``ValueError`` for the first option of ``ContainerClient(...)`` that is out of range."""
    require(given["concurrency"] >= 1, "concurrency must be at least 1")
    require(given["timeout"] > 0, "timeout must be positive")
    require(given["max_attempts"] >= 1, "max_attempts must be at least 1")
    require(given["max_retry_time"] >= 0, "max_retry_time must not be negative")
    rate_limit, ssl = given["rate_limit"], given["ssl"]
    require(rate_limit is None or rate_limit > 0, "rate_limit must be positive")
    require(
        given["backoff_factor"] >= 0 and given["backoff_max"] >= 0,
        "backoff times must not be negative",
    )
    require(given["max_body_bytes"] > 0, "max_body_bytes must be positive")
    require(given["refresh_margin"] >= 0, "refresh_margin must not be negative")
    require(ssl is None or isinstance(ssl, _ssl.SSLContext), "ssl must be an SSLContext")
    # A borrowed session has its own trace configs; silently ignoring these would hide it.
    require(
        given["session"] is None or not given["trace_configs"],
        "trace_configs need the client's own session",
    )


class ContainerClient:
    """Async client of the container-instance API; use it as ``async with ContainerClient(...)``.

    ``concurrency`` bounds the requests in flight across the whole client; ``timeout`` bounds
    each attempt. Failed attempts are retried (transport errors, HTTP 5xx/429, codes
    10001/10012) with exponential backoff and full jitter: ``backoff_factor * 2**n`` seconds,
    capped at ``backoff_max``, floored by a ``Retry-After``, at most ``max_attempts`` attempts
    within ``max_retry_time`` seconds. ``rate_limit`` spaces requests evenly at
    ``1 / rate_limit`` seconds. ``token`` is a string or a provider callable; with a provider,
    a JWT is renewed ``refresh_margin`` seconds before its ``expireTime``, and a 10008 answer
    triggers one shared renewal and one more attempt. A ``session`` you pass stays yours: it is
    never closed here. ``ssl`` takes an ``ssl.SSLContext``; verification is on by default.
    Redirects are never followed. ``clock`` (monotonic seconds), ``sleep`` and ``wall_clock``
    (epoch seconds, compared with a token's ``expireTime``) can be replaced, for tests.
    ``trace_configs`` (aiohttp ``TraceConfig`` objects) go to the client's own session.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        token: str | TokenProvider,
        concurrency: int = 32,
        timeout: float = 10.0,
        max_attempts: int = 4,
        max_retry_time: float = 30.0,
        rate_limit: float | None = None,
        session: aiohttp.ClientSession | None = None,
        ssl: _ssl.SSLContext | None = None,
        backoff_factor: float = 0.5,
        backoff_max: float = 8.0,
        refresh_margin: float = _DEFAULT_REFRESH_MARGIN,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    ) -> None:
        urls = ai_base_urls(base_url)
        _check_options(locals())
        self._concurrency = concurrency
        self._timeout_seconds = timeout
        self._max_attempts = max_attempts
        self._max_retry_time = max_retry_time
        self._backoff_factor = backoff_factor
        self._backoff_max = backoff_max
        self._clock = clock
        self._sleep = sleep
        self._tokens = TokenKeeper(
            token, refresh_margin=refresh_margin, wall_clock=wall_clock, clock=clock
        )
        self._transport = Transport(
            urls,
            concurrency=concurrency,
            timeout=timeout,
            rate_limit=rate_limit,
            session=session,
            ssl=ssl,
            max_body_bytes=max_body_bytes,
            trace_configs=trace_configs,
        )
        self._closed = False
        # Lookups in flight by id, with the future joiners wait on (made by the first joiner).
        self._inflight: dict[str, asyncio.Future[_Outcome] | None] = {}
        self._stats = ClientStats()

    # -- lifecycle -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        urls = self._transport.base_urls
        more = f" (+{len(urls) - 1} more)" if len(urls) > 1 else ""
        return (
            f"<ContainerClient {self.base_url}{more} concurrency={self._concurrency} "
            f"token={'provider' if self._tokens.has_provider else '***'} {state}>"
        )

    async def __aenter__(self) -> ContainerClient:
        self._ensure_open()
        self._transport.session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client; our own session is closed exactly once, a borrowed one never."""
        if self._closed:
            return
        self._closed = True
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._closed

    @property
    def base_url(self) -> str:
        """The API base URL in use (the last that worked), without a trailing slash or ``/ai``."""
        return self._transport.base_url

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Every base URL the client may use, in the order it tries them."""
        return self._transport.base_urls

    @property
    def concurrency(self) -> int:
        """The most requests this client keeps in flight at once."""
        return self._concurrency

    @property
    def stats(self) -> ClientStats:
        """A copy of the request, retry, failure and token-refresh counters."""
        return attrs.evolve(
            self._stats, requests=self._transport.requests, token_refreshes=self._tokens.refreshes
        )

    def _ensure_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this ContainerClient is closed; create a new one")

    # -- single lookups ------------------------------------------------------------------------

    async def get_instance(self, instance_id: str, *, cache: _Cache = None) -> InstanceDetail:
        """Return the detail of one instance; ``InvalidInstanceIdError`` before any I/O.

        With a ``DetailCache``, an answer the same as the last one for the id is not read again.
        """
        self._ensure_open()
        return await self._get_valid(validate_instance_id(instance_id), cache)

    def _checked_lookup(self, cache: _Cache) -> Callable[[str], Awaitable[InstanceDetail]] | None:
        """``get_instance`` with ``cache`` for ids already checked (the watcher's), without the
        check; None when a subclass replaces ``get_instance`` (then that is what is called)."""
        if type(self).get_instance is not ContainerClient.get_instance:
            return None
        return functools.partial(self._get_valid, cache=cache)

    async def _get_valid(self, instance_id: str, cache: _Cache = None) -> InstanceDetail:
        """``get_instance`` for a valid id: join a lookup in flight or lead one (inline, not a
        call: every frame between caller and socket is crossed again at each resume)."""
        self._ensure_open()
        while instance_id in self._inflight:
            joined = self._inflight[instance_id]
            if joined is None:  # the first to join makes the future the others wait on
                joined = self._inflight[instance_id] = asyncio.get_running_loop().create_future()
            outcome = await asyncio.shield(joined)
            if isinstance(outcome, _Cancelled):
                continue  # the leader was cancelled; lead a new lookup
            detail, error = outcome
            if error is not None:
                raise_unchained(error)
            assert detail is not None
            return detail
        self._inflight[instance_id] = None  # nobody waits on it yet: no future is made
        outcome = _LEADER_CANCELLED
        try:
            detail = await self._fetch(
                DETAIL_PATH.format(id=instance_id),
                None,
                functools.partial(read_detail, asked_id=instance_id, cache=cache),
                instance_id=instance_id,
                label=f"instance {instance_id}",
            )
            outcome = (detail, None)
            return detail
        except AiocontainerError as exc:
            outcome = (None, exc)
            raise
        finally:
            shared = self._inflight.pop(instance_id)
            if shared is not None:
                shared.set_result(outcome)

    async def _fetch(
        self,
        path: str,
        params: Params,
        reader: _Reader[_T],
        *,
        instance_id: str | None,
        label: str,
        body: dict[str, Any] | None = None,
    ) -> _T:
        """Send one request until it succeeds or the retry policy gives up, in one telemetry span.

        ``instance_id`` is what a transport error is about; ``label`` names the request in logs
        and errors. The deadline is taken from ``clock`` when the call starts (the ``backoff``
        decorator let one attempt begin after ``max_retry_time``); ``backoff`` gives the steps,
        ``_protocol`` the decision, jitter, floor and cap. The span is opened here, not in a
        wrapper: every frame between a lookup and its socket is crossed at each resume.
        """
        with start_lookup(path, instance_id) as lookup:
            deadline = self._clock() + self._max_retry_time
            steps: Iterator[float] | None = None  # made on the first failure: most calls need none
            renewed = False
            attempt = 1
            while True:
                failure: AiocontainerError
                token = self._tokens.ready()
                try:
                    if token is None:
                        token = await self._tokens.current(self._provider_bound(deadline))
                    lookup.sent(attempt)
                    status, headers, raw = await self._transport.exchange(
                        path, params, body, token, instance_id, label
                    )
                    lookup.answered(status)
                    return reader(status, headers, raw, secret=token.reveal())
                except AiocontainerError as exc:
                    failure = exc
                remaining = deadline - self._clock()
                step = after_failure(
                    failure,
                    attempt=attempt,
                    max_attempts=self._max_attempts,
                    remaining=remaining,
                    can_renew=self._tokens.has_provider and not renewed,
                )
                if step == "renew":
                    # 10008 also means "token expired": renew once per call, never in a loop.
                    renewed = True
                    try:
                        await self._tokens.renew(stale=token, bound=self._provider_bound(deadline))
                    except AiocontainerError as exc:
                        self._give_up(exc)  # the 10008 is the reason, not a bug
                    if self._clock() >= deadline:
                        self._give_up(failure)  # the renewal used the budget up
                    delay = 0.0
                elif step == "retry":
                    if steps is None:
                        steps = backoff.expo(
                            factor=self._backoff_factor, max_value=self._backoff_max
                        )
                        next(steps)  # the generator's first value only primes it
                    delay = retry_delay(next(steps), failure.retry_after, remaining)
                else:
                    self._give_up(failure)
                self._stats.retries += 1
                _log_retry(label, delay, attempt, failure, path, instance_id)
                if delay > 0:
                    await self._sleep(delay)
                attempt += 1

    def _give_up(self, failure: AiocontainerError) -> NoReturn:
        """Count a call that ended with ``failure`` after its last attempt; raise it unchained."""
        self._stats.failures += 1
        raise_unchained(failure)

    def _provider_bound(self, deadline: float) -> float:
        """How long a token provider may take: what is left of the budget, at least one timeout."""
        return max(deadline - self._clock(), self._timeout_seconds)

    # -- listing -------------------------------------------------------------------------------

    async def list_page(
        self,
        *,
        start: int,
        limit: int,
        status: str | None = None,
        task_type: str | None = None,
        names: Iterable[str] | None = None,
        cache: DetailCache | None = None,
    ) -> ListPage:
        """One page of the list endpoint: ``limit`` entries (or fewer) from offset ``start``.

        One request, with the retries, token handling and redaction of a detail lookup. An
        entry that does not parse is a ``ListEntryError`` in ``errors``; the others are in
        ``details``. Bad option values raise ``ValueError`` before anything is sent. With a
        ``cache`` kept across calls, an entry whose JSON has not changed is not built again.
        """
        self._ensure_open()
        return await self._page(start, limit, list_filters(status, task_type, names), cache)

    async def _page(self, start: int, limit: int, filters: _Filters, cache: _Cache) -> ListPage:
        params, body = list_request(start, limit, filters)
        return await self._fetch(
            LIST_PATH,
            params,
            functools.partial(read_list_page, start=start, cache=cache),
            instance_id=None,
            label=f"list page at offset {start}",
            body=body,
        )

    def list_instances(
        self,
        *,
        status: str | None = None,
        task_type: str | None = None,
        names: Iterable[str] | None = None,
        page_size: int = 100,
    ) -> AsyncGenerator[InstanceDetail, None]:
        """Every instance the list endpoint shows, page after page, each id once.

        Bad option values raise ``ValueError`` here, at the call. The listing ends on an empty
        page (a short page is not taken for the last). Offsets shift while instances are
        created or deleted, so an id that comes again is dropped and an instance the listing
        missed is not gone: look it up with ``get_instance``. An entry that does not parse is
        raised as ``ListEntryError`` after the good entries before it were yielded.
        """
        self._ensure_open()
        filters = list_filters(status, task_type, names)
        return walk(Pager(page_size), lambda start, limit: self._page(start, limit, filters, None))

    # -- bulk lookups --------------------------------------------------------------------------

    def _bulk_limit(self, concurrency: int | None) -> int:
        self._ensure_open()
        limit = self._concurrency if concurrency is None else concurrency
        require(limit >= 1, "concurrency must be at least 1")
        return limit

    async def iter_instances(
        self, ids: Iterable[str], *, concurrency: int | None = None
    ) -> AsyncGenerator[tuple[str, Result], None]:
        """Yield ``(id, detail or error)`` as each lookup finishes; each distinct id once.

        Invalid ids are yielded first, with their ``InvalidInstanceIdError``, and never sent.
        ``concurrency`` bounds this call's lookups in flight (the client's own bound still holds).
        Leaving the loop early stops the remaining lookups once the generator is closed; use
        ``contextlib.aclosing`` to close it at once.
        """
        limit = self._bulk_limit(concurrency)
        _, pending, refused = sort_ids(ids)
        for refusal in refused:
            yield refusal
        stream = as_completed(pending, limit, self._get_valid)
        try:
            async for outcome in stream:
                yield outcome
        finally:
            await stream.aclose()

    async def get_instances(
        self, ids: Iterable[str], *, concurrency: int | None = None
    ) -> dict[str, Result]:
        """Look up many ids; return ``{id: detail or error}`` in first-seen input order.

        Each distinct id is fetched once and one id's failure never aborts the others; invalid
        ids get their ``InvalidInstanceIdError`` and are never sent.
        """
        limit = self._bulk_limit(concurrency)
        order, pending, refused = sort_ids(ids)
        outcomes: dict[str, Result] = dict(refused)
        await lookup_all(pending, limit, self._get_valid, outcomes.__setitem__)
        return {instance_id: outcomes[instance_id] for instance_id in order}


def _log_retry(
    label: str,
    delay: float,
    attempt: int,
    failure: AiocontainerError,
    path: str,
    instance_id: str | None,
) -> None:
    """The WARNING line of one retry; the error's text only, never the error itself."""
    _log.warning(
        "retrying %s in %.2fs after attempt %d failed: %s",
        label,
        delay,
        attempt,
        str(failure),  # a kept record must not keep the error's frames
        extra=error_fields(
            instance_id,
            failure,
            attempt=attempt,
            delay=delay,
            endpoint=endpoint_of(path, instance_id),
        ),
    )
