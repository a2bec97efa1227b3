"""From an access key to a ``ContainerClient``: tokens, regions, center URLs and renewal.

``ScnetAuth`` is the I/O shell around the pure ``_credentials``, ``_signing`` and ``_regions``
modules. It talks to the platform's token and center endpoints (never to the AI API, which is the
client's); the clients it makes get a token provider bound to their region.

Rule 1: every call to a token endpoint (login, ``tokens/next``) holds one lock per ``ScnetAuth``:
        renewals are single-flight across every client and region of it, and a caller that
        waited re-reads the token instead of renewing again.
Rule 2: a token endpoint is never called in a loop: a login is one call (plus retries for
        transport failures and HTTP 5xx only); a renewal is one ``tokens/next`` call and, if it
        is refused or the token is more than 24 h past expiry, one login; the schedule and the
        refusal bound of ``_regions`` decide when.
Rule 3: the secret key, the password and the tokens appear only in request headers: never in a
        log line, repr, error message or error chain.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp
import attrs

from aiocontainer._credentials import Credentials, login_request, secrets_of
from aiocontainer._protocol import normalize_base_url, parse_envelope
from aiocontainer._regions import (
    Region,
    RegionToken,
    TokenState,
    can_renew,
    choose_region,
    decide,
    enabled_ai_urls,
    parse_token_list,
    regions_of,
    unavailable_error,
)
from aiocontainer._signing import check_header_value
from aiocontainer._telemetry import error_fields, log_fields
from aiocontainer._tokens import Secret, redact, scrub, token_expiry, unchained
from aiocontainer._transport import BodyTooLarge, read_bounded
from aiocontainer.client import ContainerClient
from aiocontainer.errors import (
    AiocontainerError,
    ApiError,
    AuthError,
    LoginError,
    PermissionDeniedError,
    RegionUnavailableError,
    ResponseError,
    TransportError,
)

__all__ = [
    "CENTER_PATH",
    "DEFAULT_AUTH_URL",
    "DEFAULT_PLATFORM_URL",
    "RENEW_PATH",
    "AuthStats",
    "Credentials",
    "Region",
    "ScnetAuth",
]

_log = logging.getLogger("aiocontainer")

#: The documented host of the access-key token endpoint (scnet-cli's ``api`` override).
DEFAULT_AUTH_URL: Final = "https://api.scnet.cn"
#: The documented platform host: center, ``tokens/next``, password login (``www`` override).
DEFAULT_PLATFORM_URL: Final = "https://www.scnet.cn"
CENTER_PATH: Final = "/ac/openapi/v2/center"
RENEW_PATH: Final = "/ac/openapi/v2/tokens/next"
_MAX_BODY: Final = 1024 * 1024
_FOREIGN_ERRORS: Final = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
_STAT_OF: Final = {"login": "logins", "renewal": "renewals", "center": "center_calls"}


@attrs.frozen(kw_only=True)
class AuthStats:
    """What a ``ScnetAuth`` has sent since it was created."""

    #: Login calls (access key or password), retries included.
    logins: int = 0
    #: ``tokens/next`` calls, retries included.
    renewals: int = 0
    #: Renewals the platform refused (each followed by one login).
    refused_renewals: int = 0
    #: Center calls, retries included.
    center_calls: int = 0


class ScnetAuth:
    """Tokens and regions for one set of ``Credentials``; use it as ``async with ScnetAuth(...)``.

    ``auth_url`` (the access-key token host) and ``platform_url`` (center, renewal, password
    login) default to the profile's ``base_overrides`` (``api``, ``www``), else the documented
    hosts. ``timeout`` bounds each request; transport failures and HTTP 5xx are tried up to
    ``max_attempts`` times, nothing else is retried. Tokens are renewed ``refresh_margin``
    seconds before their ``expireTime`` (a quarter of their lifetime at most), on ``clock``
    (epoch seconds; it also dates the signature). A ``session`` you pass is never closed here.
    Close the clients it made before closing it: they renew their tokens through it.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        auth_url: str | None = None,
        platform_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        ssl: _ssl.SSLContext | None = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise TypeError("credentials must be a Credentials instance")
        if timeout <= 0 or max_attempts < 1 or refresh_margin < 0:
            raise ValueError("timeout must be positive, max_attempts >= 1, refresh_margin >= 0")
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise ValueError("ssl must be an SSLContext")
        overrides = credentials.base_overrides
        self._credentials = credentials
        self._auth_url = normalize_base_url(auth_url or overrides.get("api") or DEFAULT_AUTH_URL)
        self._platform_url = normalize_base_url(
            platform_url or overrides.get("www") or DEFAULT_PLATFORM_URL
        )
        self._ai_override = overrides.get("ai")
        self._ssl = ssl
        self._http = _PlatformHttp(
            session=session,
            ssl=ssl,
            timeout=timeout,
            max_attempts=max_attempts,
            sleep=sleep,
            secrets=lambda headers: _secret_values(headers, credentials, self._states),
            count=self._count,
        )
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._lock = asyncio.Lock()
        self._catalog: tuple[RegionToken, ...] | None = None
        self._states: dict[str, TokenState] = {}
        self._centers: dict[str, tuple[str, ...]] = {}
        self._stats = AuthStats()

    def __repr__(self) -> str:
        state = "closed" if self._http.closed else "open"
        return f"<ScnetAuth user={self._credentials.user!r} {self._auth_url} {state}>"

    async def __aenter__(self) -> ScnetAuth:
        self._ensure_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close; our own session is closed exactly once, a borrowed one never."""
        if not self._http.closed:
            await self._http.aclose()

    @property
    def credentials(self) -> Credentials:
        """The credentials tokens are obtained with."""
        return self._credentials

    @property
    def stats(self) -> AuthStats:
        """A snapshot of the login, renewal and center call counters."""
        return self._stats

    def _count(self, field: str) -> None:
        stats = self._stats
        self._stats = attrs.evolve(stats, **{field: getattr(stats, field) + 1})

    def _ensure_open(self) -> None:
        if self._http.closed:
            raise AuthError("this ScnetAuth is closed; create a new one")

    # -- public ---------------------------------------------------------------------------------

    async def regions(self, *, refresh: bool = False) -> list[Region]:
        """The user's regions from the token answer (logging in if needed, or if ``refresh``).

        The platform's own token (cluster id ``"0"``, name ``"ac"``) is not listed.
        """
        async with self._lock:
            if refresh or self._catalog is None:
                await self._login()
            assert self._catalog is not None
            return regions_of(self._catalog)

    async def region(self, region: str | None = None) -> Region:
        """The region ``auth.client(region)`` would use (name, cluster id, or the default)."""
        entry = await self._choose(region)
        return Region(name=entry.name, cluster_id=entry.cluster_id, available=True)

    async def ai_urls(self, region: str | None = None) -> list[str]:
        """The region's enabled AI URLs as the center lists them (or the profile's ``ai``)."""
        entry = await self._choose(region)
        return list(await self._ai_urls(entry))

    async def client(self, region: str | None = None, **client_options: Any) -> ContainerClient:
        """A ``ContainerClient`` for ``region`` (a name or cluster id; None: the default).

        Its base URL comes from the center's enabled ``aiUrls`` and its token from a provider
        bound to the region. ``client_options`` go to ``ContainerClient`` (``base_url`` and
        ``token`` are chosen here). An unknown region raises ``RegionNotFoundError``; a region
        without a token raises ``RegionUnavailableError`` before any request to the AI API.
        """
        for reserved in ("base_url", "token"):
            if reserved in client_options:
                raise TypeError(f"{reserved} is chosen by ScnetAuth.client(); do not pass it")
        entry = await self._choose(region)
        urls = await self._ai_urls(entry)
        if self._ssl is not None:
            client_options.setdefault("ssl", self._ssl)
        # The client schedules its renewals on the same wall clock as ours.
        client_options.setdefault("wall_clock", self._clock)
        margin = float(client_options.get("refresh_margin", 60.0))
        provider = _RegionProvider(self, entry.cluster_id, client_margin=margin)
        # Every enabled URL, in the center's order: the client moves to the next one only when a
        # connection fails, and strips the trailing /ai the center's URLs may carry.
        return ContainerClient(urls, token=provider, **client_options)

    # -- regions --------------------------------------------------------------------------------

    async def _choose(self, region: str | None) -> RegionToken:
        async with self._lock:
            if self._catalog is None:
                await self._login()
            assert self._catalog is not None
            catalog = self._catalog
        return choose_region(catalog, region, self._credentials.default_region)

    async def _ai_urls(self, entry: RegionToken) -> tuple[str, ...]:
        if self._ai_override:
            return (self._ai_override,)
        cached = self._centers.get(entry.cluster_id)
        if cached is not None:
            return cached
        data = await self._center(entry.cluster_id)
        urls = enabled_ai_urls(data)
        if not urls:
            raise RegionUnavailableError(
                f"region {entry.label()} is unavailable: its center lists no enabled AI URL",
                region=entry.name,
                reason="no_ai_url",
            )
        self._centers[entry.cluster_id] = urls
        return urls

    async def _center(self, cluster_id: str) -> Any:
        token = await self._token_for(cluster_id, handed=None, client_margin=0.0)
        for retried in (False, True):
            try:
                return await self._http.call(
                    "GET", self._platform_url + CENTER_PATH, {"token": token}, kind="center"
                )
            except PermissionDeniedError:
                if retried:
                    raise
                # 10008: one renewal, then one more try, never a loop.
                token = await self._token_for(cluster_id, handed=token, client_margin=0.0)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- tokens ---------------------------------------------------------------------------------

    async def _token_for(self, cluster_id: str, *, handed: str | None, client_margin: float) -> str:
        """The region's token for a client last handed ``handed`` (Rule 1)."""
        async with self._lock:
            if self._catalog is None:
                await self._login()
            state = self._states.get(cluster_id)
            if state is None:
                raise self._no_token(cluster_id)
            action = decide(
                state,
                handed,
                self._clock(),
                refresh_margin=self._refresh_margin,
                client_margin=client_margin,
            )
            if action == "use":
                return state.token
            await self._renew(cluster_id, state, forced=action == "force")
            state = self._states.get(cluster_id)
            if state is None:
                raise self._no_token(cluster_id)
            return state.token

    def _no_token(self, cluster_id: str) -> AiocontainerError:
        entry = next((t for t in self._catalog or () if t.cluster_id == cluster_id), None)
        if entry is None:
            return AuthError(f"the last login listed no region with cluster id {cluster_id!r}")
        return unavailable_error(entry)

    async def _renew(self, cluster_id: str, state: TokenState, *, forced: bool) -> None:
        """One ``tokens/next`` call; a refusal (or a token too old for it) means one login."""
        if can_renew(state, self._clock()):
            try:
                data = await self._http.call(
                    "POST",
                    self._platform_url + RENEW_PATH,
                    {"token": state.token},
                    kind="renewal",
                )
                new = _checked_token(data, "renewal answer $.data")
            except (ApiError, ResponseError) as exc:
                self._count("refused_renewals")
                _log.info(
                    "token renewal for region %s refused (%s); signing in again",
                    cluster_id,
                    self._http.short(exc),
                    extra=error_fields(None, exc, endpoint=RENEW_PATH),
                )
            else:
                self._store(cluster_id, new, forced=forced)
                return
        await self._login(forced_region=cluster_id if forced else None)

    def _store(self, cluster_id: str, token: str, *, forced: bool) -> None:
        self._states[cluster_id] = TokenState(
            token=token,
            obtained_at=self._clock(),
            expires_at=token_expiry(token),
            forced=forced,
        )

    async def _login(self, *, forced_region: str | None = None) -> None:
        """One login (retried only for transport failures and 5xx); every region's token."""
        request = login_request(self._credentials, self._clock())
        base = self._auth_url if request.host == "auth" else self._platform_url
        try:
            data = await self._http.call("POST", base + request.path, request.headers, kind="login")
        except ApiError as exc:
            if exc.http_status is not None and exc.http_status >= 500:
                raise
            raise self._refused(exc) from None
        catalog = parse_token_list(data)
        self._catalog = catalog
        self._centers.clear()
        self._states = {}
        for entry in catalog:
            if entry.token is not None:
                self._store(entry.cluster_id, entry.token, forced=entry.cluster_id == forced_region)

    def _refused(self, exc: ApiError) -> LoginError:
        what = f"code {exc.code}" if exc.code is not None else f"HTTP {exc.http_status}"
        msg = exc.msg
        for value in _secret_values({}, self._credentials, self._states):
            msg = redact(msg, value)
        shown = f"{what} {msg!r}" if msg else what
        if self._credentials.access_key is not None:
            advice = (
                "check the user name, the access key and the secret key, and that this "
                "machine's clock is right (the signature covers the current time)"
            )
        else:
            advice = "check the user name, the password and the org id"
        return LoginError(
            f"the platform refused to sign in user {self._credentials.user!r} ({shown}): {advice}",
            code=exc.code,
            msg=msg,
            http_status=exc.http_status,
        )


class _PlatformHttp:
    """Requests to the platform's token and center endpoints: one session, bounded retries.

    Transport failures and HTTP 5xx are tried again, up to ``max_attempts`` times; nothing else.
    ``secrets()`` lists what must be blanked out of any message (Rule 3).
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None,
        ssl: _ssl.SSLContext | None,
        timeout: float,
        max_attempts: int,
        sleep: Callable[[float], Awaitable[Any]],
        secrets: Callable[[Mapping[str, str]], list[str]],
        count: Callable[[str], None],
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._ssl = ssl
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._secrets = secrets
        self._count = count
        self.closed = False

    async def aclose(self) -> None:
        """Close our own session once; a borrowed one never."""
        self.closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def short(self, exc: BaseException, headers: Mapping[str, str] | None = None) -> str:
        """An error's text for a log line or message, every secret blanked out."""
        text = f"{type(exc).__name__}: {exc}"
        for value in self._secrets(headers or {}):
            text = redact(text, value)
        return text[:300]

    async def call(self, method: str, url: str, headers: Mapping[str, str], *, kind: str) -> Any:
        """The envelope's ``data`` of one request, tried again only after transport/5xx."""
        attempt = 1
        while True:
            self._count(_STAT_OF[kind])
            try:
                return await self._send(method, url, headers)
            except AiocontainerError as exc:
                failure = exc
            status = getattr(failure, "http_status", None)
            retryable = isinstance(failure, TransportError) or (status or 0) >= 500
            if not retryable or attempt >= self._max_attempts:
                with unchained:
                    raise failure
            delay = min(4.0, 0.25 * 2**attempt)
            _log.warning(
                "%s request failed (%s); retrying in %.2fs",
                kind,
                self.short(failure),
                delay,
                extra=error_fields(
                    None, failure, attempt=attempt, delay=delay, endpoint=_path(url)
                ),
            )
            await self._sleep(delay)
            attempt += 1

    async def _send(self, method: str, url: str, headers: Mapping[str, str]) -> Any:
        if self.closed:
            raise AuthError("this ScnetAuth is closed; create a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
        failure: AiocontainerError | None = None
        try:
            async with self._session.request(
                method,
                url,
                headers=dict(headers),
                allow_redirects=False,
                timeout=self._timeout,
                ssl=self._ssl if self._ssl is not None else True,
            ) as response:
                status = response.status
                try:
                    body: bytes | None = await read_bounded(response, _MAX_BODY)
                except BodyTooLarge:
                    body = None
        except _FOREIGN_ERRORS as exc:
            failure = TransportError(f"{method} {_path(url)}: {self.short(exc, headers)}")
            for value in self._secrets(headers):
                scrub(exc, value)  # it may yet become the context of what is raised next
        if failure is not None:
            with unchained:  # the foreign error is not kept as context
                raise failure
        _log.debug(
            "%s %s -> %d",
            method,
            _path(url),
            status,
            extra=log_fields(http_status=status, endpoint=_path(url)),
        )
        if body is None:
            raise ResponseError(f"{_path(url)}: answer larger than {_MAX_BODY} bytes")
        try:
            return parse_envelope(status, body)
        except ResponseError as exc:
            exc.snippet = None  # token answers hold tokens: show no part of the body
            raise


class _RegionProvider:
    """The token provider of one client: the region's token, renewed through its ``ScnetAuth``."""

    __slots__ = ("_auth", "_client_margin", "_cluster_id", "_last")

    def __init__(self, auth: ScnetAuth, cluster_id: str, *, client_margin: float) -> None:
        self._auth = auth
        self._cluster_id = cluster_id
        self._client_margin = client_margin
        self._last: Secret | None = None

    async def __call__(self) -> str:
        token = await self._auth._token_for(
            self._cluster_id,
            handed=self._last.reveal() if self._last is not None else None,
            client_margin=self._client_margin,
        )
        self._last = Secret(token)
        return token

    def __repr__(self) -> str:
        return f"<token provider for region {self._cluster_id}>"


def _checked_token(data: Any, where: str) -> str:
    try:
        return check_header_value("token", data)
    except ValueError:
        raise ResponseError(f"{where}: expected a token string") from None


def _secret_values(
    headers: Mapping[str, str], credentials: Credentials, states: Mapping[str, TokenState]
) -> list[str]:
    values = {v for k, v in headers.items() if k in ("token", "signature", "password")}
    values.update(secrets_of(credentials))
    values.update(state.token for state in states.values())
    # Longest first, so a secret that contains another is blanked whole.
    return sorted(values, key=len, reverse=True)


def _path(url: str) -> str:
    """The path of a URL, as log lines and errors show it (never a query or header)."""
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
