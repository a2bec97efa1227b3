"""The HTTP exchange under ``ContainerClient``: session, slots, rate limit, base URLs, bodies.

Rule 1: every foreign exception (aiohttp, OSError, asyncio timeouts) becomes an
        ``AiocontainerError`` in ``exchange``; it is chained with ``__cause__`` only when it does
        not reveal the token or a piece of it, and it is never left as ``__context__``.
Rule 2: an exchange is bounded by ``timeout`` from the moment it holds a concurrency slot;
        waiting for a slot or for the rate limiter does not count.
Rule 3: a body is refused as soon as it passes ``max_body_bytes`` decoded bytes.
Rule 4: a transport failure moves the client to its next base URL; nothing else does.
Rule 5: the token appears only in the ``token`` request header.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import aiohttp
from yarl import URL

from aiocontainer._slots import Slots
from aiocontainer._telemetry import endpoint_of, error_fields, log_fields
from aiocontainer._tokens import Secret, leaks, mentions, redact, scrub, unchained
from aiocontainer._version import __version__
from aiocontainer.errors import (
    AiocontainerError,
    ClientClosedError,
    ResponseError,
    TransportError,
)

__all__ = ["Transport"]

_log = logging.getLogger("aiocontainer")

_FOREIGN_ERRORS: Final = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
#: The query parameters of a request, as pairs (a name may repeat), or None.
Params: TypeAlias = "list[tuple[str, str]] | None"

# aiohttp silently resends an idempotent request once when a reused connection drops. Our own
# retry policy must be the only one, so every request sent is counted against max_attempts and
# waits its backoff; the switch is a private attribute, so its absence must fail loudly here
# rather than let requests be doubled unnoticed.
if "_retry_connection" not in getattr(aiohttp.ClientSession, "ATTRS", ()):  # pragma: no cover
    raise ImportError(
        f"aiocontainer cannot switch off the silent resend of aiohttp {aiohttp.__version__}: "
        "ClientSession._retry_connection is gone; install a supported aiohttp"
    )


class Transport:
    """Sends one request at a time per concurrency slot and reads its answer.

    ``base_urls`` are tried in order: one is used until a transport failure moves to the next.
    A ``session`` given is borrowed (never closed, its behaviour kept); else one is made on
    first use, with no cookie jar and aiohttp's silent resend switched off.
    """

    def __init__(
        self,
        base_urls: tuple[str, ...],
        *,
        concurrency: int,
        timeout: float,
        rate_limit: float | None,
        session: aiohttp.ClientSession | None,
        ssl: _ssl.SSLContext | None,
        max_body_bytes: int,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self.base_urls = base_urls
        self._current = 0  # the base URL in use: the last one that worked
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_seconds = timeout
        self._rate_limit = rate_limit
        self._ssl = ssl
        self._max_body_bytes = max_body_bytes
        self._trace_configs = list(trace_configs or ())
        # The same options on every request: built once, not per request.
        self._request_options: dict[str, Any] = {"allow_redirects": False, "timeout": self._timeout}
        if ssl is not None:
            self._request_options["ssl"] = ssl
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._slots = Slots(concurrency)
        self._limiter: Any = None
        #: HTTP requests sent (each attempt counts).
        self.requests = 0

    @property
    def base_url(self) -> str:
        """The base URL in use."""
        return self.base_urls[self._current]

    async def aclose(self) -> None:
        """Refuse further requests; close our own session, never a borrowed one."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def session(self) -> aiohttp.ClientSession:
        """The session requests go through; our own is made on first use."""
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
                trace_configs=self._trace_configs or None,
            )
            # See the import-time check above; a borrowed session keeps its behaviour.
            session._retry_connection = False
            self._session = session
        return self._session

    async def exchange(
        self,
        path: str,
        params: Params,
        json_body: dict[str, Any] | None,
        token: Secret,
        instance_id: str | None,
        label: str,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one request and read its answer: status, headers and body, or a transport error.

        Every foreign exception becomes an ``AiocontainerError`` here, raised ``unchained``
        so the foreign one is not kept as ``__context__``.
        """
        if self._closed:
            raise ClientClosedError("this ContainerClient is closed; create a new one")
        session = self.session()
        using = self._current
        url = URL(self.base_urls[using] + path, encoded=True)
        failure: AiocontainerError | None = None
        slots = self._slots
        if not slots.take_now():
            await slots.take()
        try:
            if self._rate_limit is not None:
                await self._rate_limiter().acquire()
            started = time.perf_counter()
            self.requests += 1
            try:
                async with session.get(
                    url,
                    params=params,
                    json=json_body,
                    headers={"token": token.reveal()},
                    **self._request_options,
                ) as response:
                    status = response.status
                    headers = response.headers
                    length = response.content_length
                    if (
                        length is not None
                        and length <= self._max_body_bytes
                        and "Content-Encoding" not in headers
                    ):
                        body = await response.read()  # the usual answer, one frame less
                    else:
                        body = await self._read_body(response, instance_id)
            except _FOREIGN_ERRORS as exc:
                failure = self._transport_error(exc, instance_id, label, token)
                self._fail_over(using)
        finally:
            slots.give()
        if failure is not None:
            if _log.isEnabledFor(logging.DEBUG):
                where = endpoint_of(path, instance_id)
                fields = error_fields(instance_id, failure, endpoint=where)
                _log.debug("GET %s failed: %s", path, failure, extra=fields)
            with unchained:  # the foreign exception is not kept as __context__
                raise failure
        if _log.isEnabledFor(logging.DEBUG):
            fields = log_fields(
                instance_id=instance_id, http_status=status, endpoint=endpoint_of(path, instance_id)
            )
            _log.debug(
                "GET %s -> %d (%.3fs)", path, status, time.perf_counter() - started, extra=fields
            )
        return status, headers, body

    async def _read_body(self, response: aiohttp.ClientResponse, instance_id: str | None) -> bytes:
        """The decoded body, refused as soon as it passes ``max_body_bytes`` decoded bytes."""
        limit = self._max_body_bytes
        try:
            return await read_bounded(response, limit)
        except BodyTooLarge as exc:
            declared = exc.content_length
            message = (
                f"response exceeds the {limit}-byte limit once decoded"
                if declared is None
                else f"response of {declared} bytes exceeds the {limit}-byte limit"
            )
        with unchained:  # the internal signal is not kept as __context__
            raise ResponseError(message, http_status=response.status, instance_id=instance_id)

    def _fail_over(self, failed: int) -> None:
        """After a transport failure on base URL ``failed``, use the next one from now on.

        Only a transport failure moves the client (an HTTP or API answer shows the URL works),
        and only once however many requests in flight failed on that URL together.
        """
        if len(self.base_urls) > 1 and self._current == failed:
            self._current = (failed + 1) % len(self.base_urls)
            _log.warning(
                "base URL %s failed; using %s",
                self.base_urls[failed],
                self.base_url,
                extra=log_fields(),
            )

    def _transport_error(
        self, exc: BaseException, instance_id: str | None, label: str, token: Secret
    ) -> AiocontainerError:
        if self._closed:
            return ClientClosedError("the client was closed during the request")
        secret = token.reveal()
        if isinstance(exc, asyncio.TimeoutError):
            text = f"no complete answer within {self._timeout_seconds:g}s"
        else:
            text = redact(f"{type(exc).__name__}: {exc}", secret).strip().rstrip(":")
            if leaks(text, secret):
                # The foreign message quotes a cut excerpt of what the server sent, and a piece
                # of the token survives in it: only the kind of failure is kept.
                text = f"{type(exc).__name__} (its message quoted part of the token)"
        error = TransportError(f"{text} ({label})", instance_id=instance_id)
        if not mentions(exc, secret):
            error.__cause__ = exc
        scrub(exc, secret)  # it may yet become the context of what is raised next (``scrub``)
        return error

    def _rate_limiter(self) -> Any:
        """aiolimiter is imported only by clients that set ``rate_limit``."""
        if self._limiter is None:
            from aiolimiter import AsyncLimiter

            assert self._rate_limit is not None
            # A bucket of one spaces requests evenly instead of allowing a burst each period.
            self._limiter = AsyncLimiter(1, 1.0 / self._rate_limit)
        return self._limiter


class BodyTooLarge(Exception):
    """A body passed the limit of :func:`read_bounded`; each caller raises its own error.

    ``content_length`` is the declared length when that alone refused the body (nothing was
    read), None when the decoded bytes passed the limit as they arrived.
    """

    def __init__(self, limit: int, content_length: int | None) -> None:
        super().__init__(limit, content_length)
        self.limit = limit
        self.content_length = content_length


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The decoded body of ``response``, or ``BodyTooLarge`` as soon as it passes ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading. A compressed body can
    inflate a thousandfold, so its size on the wire says nothing: it is read in the bounded
    pieces aiohttp's decompressor hands out and counted as it grows. Only an uncompressed body
    with a Content-Length is read in one go, because its length then is its decoded size.
    """
    length = response.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(limit, length)
    encoding = response.headers.get("Content-Encoding")
    if length is not None and (not encoding or encoding.strip().lower() == "identity"):
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, None)
        chunks.append(chunk)
    return b"".join(chunks)
