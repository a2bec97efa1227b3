"""``ContainerClient``: the only place that talks HTTP.

Rule 1: every foreign exception (aiohttp, OSError, asyncio timeouts) becomes an
        ``AiocontainerError`` in ``_send``; it is chained with ``__cause__`` only when it does not
        reveal the token, and it is never left as ``__context__``.
Rule 2: an attempt is bounded by ``timeout`` from the moment it holds a concurrency slot;
        waiting for a slot or for the rate limiter does not count.
Rule 3: a request is retried only when ``_protocol.is_retryable`` says so, at most ``max_attempts``
        times and within ``max_retry_time``; cancellation is never caught.
Rule 4: concurrent ``get_instance`` calls for one id share one request.
Rule 5: the token appears only in the ``token`` request header.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as _ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final, TypeAlias

import aiohttp
import attrs
import backoff
from yarl import URL

from aiocontainer import __version__
from aiocontainer._convert import structure
from aiocontainer._protocol import (
    MAX_BODY_BYTES,
    detail_path,
    is_retryable,
    normalize_base_url,
    parse_detail_response,
    redact,
    require,
    retry_after_seconds,
    retry_delay,
    token_expiry,
    validate_instance_id,
)
from aiocontainer.errors import (
    AiocontainerError,
    ApiError,
    ClientClosedError,
    InvalidInstanceIdError,
    PermissionDeniedError,
    ResponseError,
    TokenError,
    TransportError,
)
from aiocontainer.models import InstanceDetail

__all__ = ["ClientStats", "ContainerClient", "Result", "TokenProvider"]

_log = logging.getLogger("aiocontainer")

#: An async callable returning a fresh token (a sync callable returning a str is accepted too).
TokenProvider: TypeAlias = Callable[[], Awaitable[str] | str]
#: What bulk lookups give per id: the detail, or the error that id ended with.
Result: TypeAlias = InstanceDetail | AiocontainerError

_FOREIGN_ERRORS: Final = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
_DEFAULT_REFRESH_MARGIN: Final = 60.0


@attrs.frozen(kw_only=True)
class ClientStats:
    """Counters of what a client has done since it was created."""

    #: HTTP requests sent (each attempt counts).
    requests: int = 0
    #: Attempts that were followed by another one.
    retries: int = 0
    #: Lookups that ended with an error after their last attempt.
    failures: int = 0
    #: Times the token provider was called.
    token_refreshes: int = 0


@attrs.define
class _Counters:
    requests: int = 0
    retries: int = 0
    failures: int = 0
    token_refreshes: int = 0


class _Cancelled:
    """Marks a shared lookup whose leader was cancelled; followers then fetch for themselves."""


_LEADER_CANCELLED: Final = _Cancelled()
_Outcome: TypeAlias = tuple[InstanceDetail | None, AiocontainerError | None] | _Cancelled


class _Secret:
    """The token, kept out of reprs and so out of frame locals an error reporter may record."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The token itself, for the request header only."""
        return self._value

    def __repr__(self) -> str:
        return "<token ***>"

    __str__ = __repr__


def _mentions(exc: BaseException, secret: str | None) -> bool:
    """True if the token shows up anywhere in ``exc``'s text or in what it chains to."""
    if not secret:
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if secret in repr(current) or secret in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


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
    Redirects are never followed.
    """

    def __init__(
        self,
        base_url: str,
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
    ) -> None:
        self._base_url = normalize_base_url(base_url)
        require(concurrency >= 1, "concurrency must be at least 1")
        require(timeout > 0, "timeout must be positive")
        require(max_attempts >= 1, "max_attempts must be at least 1")
        require(max_retry_time >= 0, "max_retry_time must not be negative")
        require(rate_limit is None or rate_limit > 0, "rate_limit must be positive")
        require(backoff_factor >= 0 and backoff_max >= 0, "backoff times must not be negative")
        require(max_body_bytes > 0, "max_body_bytes must be positive")
        require(ssl is None or isinstance(ssl, _ssl.SSLContext), "ssl must be an SSLContext")
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_seconds = timeout
        self._max_attempts = max_attempts
        self._max_retry_time = max_retry_time
        self._rate_limit = rate_limit
        self._ssl = ssl
        self._max_body_bytes = max_body_bytes
        self._refresh_margin = refresh_margin

        self._provider: TokenProvider | None = None
        self._token: _Secret | None = None
        self._token_expires: float | None = None
        if isinstance(token, str):
            self._set_token(token)
        elif callable(token):
            self._provider = token
        else:
            raise TypeError("token must be a string or a callable returning one")

        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._slots = asyncio.Semaphore(concurrency)
        self._limiter: Any = None
        self._refresh_lock = asyncio.Lock()
        self._inflight: dict[str, asyncio.Future[_Outcome]] = {}
        self._counters = _Counters()
        self._backoff_factor = backoff_factor
        self._backoff_max = backoff_max

    # -- lifecycle -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<ContainerClient {self._base_url} concurrency={self._concurrency} "
            f"token={'provider' if self._provider else '***'} {state}>"
        )

    async def __aenter__(self) -> ContainerClient:
        self._ensure_open()
        self._ensure_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client; our own session is closed exactly once, a borrowed one never."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._closed

    @property
    def base_url(self) -> str:
        """The API base URL, without a trailing slash."""
        return self._base_url

    @property
    def concurrency(self) -> int:
        """The most requests this client keeps in flight at once."""
        return self._concurrency

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the request, retry, failure and token-refresh counters."""
        return ClientStats(**attrs.asdict(self._counters))

    def _ensure_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this ContainerClient is closed; create a new one")

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._concurrency, ssl=self._ssl if self._ssl is not None else True
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": f"aiocontainer/{__version__}"},
                # The API authenticates by header; keeping cookies would only cost time (a
                # sixth of a request's CPU, measured) and carry state between requests.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # aiohttp silently resends an idempotent request once when a reused connection drops.
            # Our own retry policy must be the only one, so that every request sent is counted
            # against max_attempts and waits its backoff. A borrowed session keeps its behaviour.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._session = session
        return self._session

    # -- single lookups ------------------------------------------------------------------------

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        """Return the detail of one instance; ``InvalidInstanceIdError`` before any I/O."""
        self._ensure_open()
        validate_instance_id(instance_id)
        while (shared := self._inflight.get(instance_id)) is not None:
            outcome = await asyncio.shield(shared)
            if isinstance(outcome, _Cancelled):
                continue  # the leader was cancelled; lead a new lookup
            detail, error = outcome
            if error is not None:
                raise error
            assert detail is not None
            return detail
        return await self._lead(instance_id)

    async def _lead(self, instance_id: str) -> InstanceDetail:
        shared = asyncio.get_running_loop().create_future()
        self._inflight[instance_id] = shared
        outcome: _Outcome = _LEADER_CANCELLED
        try:
            detail = await self._fetch(instance_id)
            outcome = (detail, None)
            return detail
        except AiocontainerError as exc:
            outcome = (None, exc)
            self._counters.failures += 1
            raise
        finally:
            del self._inflight[instance_id]
            shared.set_result(outcome)

    async def _fetch(self, instance_id: str) -> InstanceDetail:
        """Attempt a lookup until it succeeds or the retry policy gives up.

        The loop is explicit, on a monotonic deadline taken when the lookup starts: the
        ``backoff`` decorator measures its budget from the start of the failed attempt, which let
        one more attempt begin after ``max_retry_time``. ``backoff`` still supplies the
        exponential steps; ``_protocol.retry_delay`` adds the jitter, the floor and the cap.
        """
        renewal = _Renewal()
        deadline = time.monotonic() + self._max_retry_time
        steps: Iterator[float] | None = None  # made on the first failure: most lookups need none
        attempt = 1
        while True:
            failure: AiocontainerError
            try:
                return await self._attempt(instance_id, renewal)
            except AiocontainerError as exc:
                failure = exc
            remaining = deadline - time.monotonic()
            if attempt >= self._max_attempts or remaining <= 0 or not is_retryable(failure):
                raise failure
            if steps is None:
                steps = backoff.expo(factor=self._backoff_factor, max_value=self._backoff_max)
                next(steps)  # the generator's first value only primes it
            delay = retry_delay(next(steps), failure.retry_after, remaining)
            self._counters.retries += 1
            _log.warning(
                "retrying instance %s in %.2fs after attempt %d failed: %s",
                instance_id,
                delay,
                attempt,
                str(failure),  # text only: a kept record must not keep the error's frames
            )
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, instance_id: str, renewal: _Renewal) -> InstanceDetail:
        token = await self._current_token()
        try:
            return await self._send(instance_id, token)
        except PermissionDeniedError:
            # 10008 also means "token expired": renew once per lookup, never in a loop.
            if self._provider is None or renewal.used:
                raise
            renewal.used = True
            token = await self._renew(stale=token)
            return await self._send(instance_id, token)

    async def _send(self, instance_id: str, token: _Secret) -> InstanceDetail:
        self._ensure_open()
        session = self._ensure_session()
        path = detail_path(instance_id)
        url = URL(self._base_url + path, encoded=True)
        failure: AiocontainerError | None = None
        async with self._slots:
            if self._rate_limit is not None:
                await self._rate_limiter().acquire()
            started = time.perf_counter()
            self._counters.requests += 1
            try:
                async with session.get(
                    url,
                    headers={"token": token.reveal()},
                    allow_redirects=False,
                    timeout=self._timeout,
                    ssl=self._ssl if self._ssl is not None else True,
                ) as response:
                    status = response.status
                    body = await self._read_body(response, instance_id)
                    retry_after = retry_after_seconds(response.headers)
            except _FOREIGN_ERRORS as exc:
                failure = self._transport_error(exc, instance_id, token)
        if failure is not None:
            # Raised outside the except block so the foreign exception is not kept as __context__.
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("GET %s failed: %s", path, failure)
            raise failure
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("GET %s -> %d (%.3fs)", path, status, time.perf_counter() - started)
        try:
            data = parse_detail_response(
                status, body, instance_id=instance_id, secret=token.reveal()
            )
            detail = structure(data, InstanceDetail)
        except (ApiError, ResponseError) as exc:
            exc.instance_id = instance_id
            exc.retry_after = retry_after
            if isinstance(exc, ResponseError) and exc.http_status is None:
                exc.http_status = status
            raise
        if detail.id.lower() != instance_id.lower():
            # Ids are hex and may be typed in either case; any other mismatch would file one
            # instance's status under another's id.
            raise ResponseError(
                f"asked for instance {instance_id}, the answer describes {detail.id[:40]!r}",
                http_status=status,
                instance_id=instance_id,
            )
        return detail

    async def _read_body(self, response: aiohttp.ClientResponse, instance_id: str) -> bytes:
        limit = self._max_body_bytes
        length = response.content_length
        if length is not None and length > limit:
            raise ResponseError(
                f"response of {length} bytes exceeds the {limit}-byte limit",
                http_status=response.status,
                instance_id=instance_id,
            )
        if length is not None:
            return await response.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise ResponseError(
                    f"response exceeds the {limit}-byte limit",
                    http_status=response.status,
                    instance_id=instance_id,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _transport_error(
        self, exc: BaseException, instance_id: str, token: _Secret
    ) -> AiocontainerError:
        if self._closed:
            return ClientClosedError("the client was closed during the request")
        if isinstance(exc, asyncio.TimeoutError):
            text = f"no complete answer within {self._timeout_seconds:g}s"
        else:
            text = redact(f"{type(exc).__name__}: {exc}", token.reveal()) or type(exc).__name__
        error = TransportError(f"{text} (instance {instance_id})", instance_id=instance_id)
        if not _mentions(exc, token.reveal()):
            error.__cause__ = exc
        return error

    def _rate_limiter(self) -> Any:
        if self._limiter is None:
            from aiolimiter import AsyncLimiter

            assert self._rate_limit is not None
            # A bucket of one spaces requests evenly instead of allowing a burst each period.
            self._limiter = AsyncLimiter(1, 1.0 / self._rate_limit)
        return self._limiter

    # -- tokens --------------------------------------------------------------------------------

    def _set_token(self, token: object) -> _Secret:
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise TokenError("the token must be a non-empty string without line breaks")
        secret = _Secret(token)
        self._token = secret
        self._token_expires = token_expiry(token)
        return secret

    async def _current_token(self) -> _Secret:
        token = self._token
        if token is not None and (
            self._provider is None
            or self._token_expires is None
            or time.time() < self._token_expires - self._refresh_margin
        ):
            return token
        return await self._renew(stale=token)

    async def _renew(self, *, stale: _Secret | None) -> _Secret:
        """Ask the provider for a token once, however many lookups asked at the same time."""
        async with self._refresh_lock:
            if self._token is not None and self._token is not stale:
                return self._token  # another lookup renewed it while this one waited
            provider = self._provider
            assert provider is not None
            self._counters.token_refreshes += 1
            failure: TokenError | None = None
            try:
                result = provider()
                if inspect.isawaitable(result):
                    result = await result
                return self._set_token(result)
            except TokenError:
                raise
            except Exception as exc:
                failure = TokenError(f"the token provider failed: {type(exc).__name__}")
                if not _mentions(exc, stale.reveal() if stale else None):
                    failure.__cause__ = exc
            raise failure

    # -- bulk lookups --------------------------------------------------------------------------

    def _bulk_ids(self, ids: Iterable[str], concurrency: int | None) -> tuple[list[str], int]:
        """Distinct ids in first-seen order, and this call's bound on lookups in flight."""
        self._ensure_open()
        limit = self._concurrency if concurrency is None else concurrency
        require(limit >= 1, "concurrency must be at least 1")
        return list(dict.fromkeys(ids)), limit

    async def _lookup_all(
        self,
        ids: list[str],
        limit: int,
        deliver: Callable[[str, Result], None],
    ) -> None:
        """Look ``ids`` up with at most ``limit`` in flight, handing each outcome to ``deliver``.

        Lookup failures are outcomes; anything else (a bug) cancels the rest and propagates.
        """
        todo = iter(ids)

        async def worker() -> None:
            for instance_id in todo:
                try:
                    detail = await self.get_instance(instance_id)
                except AiocontainerError as exc:
                    deliver(instance_id, exc)
                else:
                    deliver(instance_id, detail)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(ids)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _split_invalid(
        self, order: list[str]
    ) -> tuple[list[str], list[tuple[str, InvalidInstanceIdError]]]:
        """The ids that may be sent, and the refused ones with their errors."""
        valid, refused = [], []
        for instance_id in order:
            try:
                valid.append(validate_instance_id(instance_id))
            except InvalidInstanceIdError as exc:
                refused.append((instance_id, exc))
        return valid, refused

    async def iter_instances(
        self, ids: Iterable[str], *, concurrency: int | None = None
    ) -> AsyncIterator[tuple[str, Result]]:
        """Yield ``(id, detail or error)`` as each lookup finishes; each distinct id once.

        Invalid ids are yielded first, with their ``InvalidInstanceIdError``, and never sent.
        ``concurrency`` bounds this call's lookups in flight (the client's own bound still holds).
        Leaving the loop early stops the remaining lookups once the generator is closed; use
        ``contextlib.aclosing`` to close it at once.
        """
        order, limit = self._bulk_ids(ids, concurrency)
        pending, refused = self._split_invalid(order)
        for item in refused:
            yield item
        if not pending:
            return
        results: asyncio.Queue[tuple[str, Result]] = asyncio.Queue()
        run = asyncio.ensure_future(
            self._lookup_all(pending, limit, lambda i, r: results.put_nowait((i, r)))
        )
        try:
            for _ in range(len(pending)):
                if results.empty():
                    getter = asyncio.ensure_future(results.get())
                    await asyncio.wait([getter, run], return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        run.result()  # the lookups stopped early: raise what stopped them
                    yield getter.result()
                else:
                    yield results.get_nowait()
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)

    async def get_instances(
        self, ids: Iterable[str], *, concurrency: int | None = None
    ) -> dict[str, Result]:
        """Look up many ids; return ``{id: detail or error}`` in first-seen input order.

        Each distinct id is fetched once and one id's failure never aborts the others; invalid
        ids get their ``InvalidInstanceIdError`` and are never sent.
        """
        order, limit = self._bulk_ids(ids, concurrency)
        pending, refused = self._split_invalid(order)
        outcomes: dict[str, Result] = dict(refused)
        await self._lookup_all(pending, limit, outcomes.__setitem__)
        return {instance_id: outcomes[instance_id] for instance_id in order}


@attrs.define
class _Renewal:
    """Whether one lookup already renewed the token after a 10008."""

    used: bool = False
