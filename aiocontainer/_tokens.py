"""The token: kept out of every text, checked before use, renewed through a provider.

Rule 1: the token lives in a ``Secret`` whose ``repr`` and ``str`` show ``***``; only the request
        header ever gets ``reveal()``.
Rule 2: a token is checked before it is used: a non-empty string of visible ASCII characters. Any
        control character, space or non-ASCII character is a ``TokenError``, never a foreign error
        from the HTTP library.
Rule 3: the provider is called single-flight (one call however many lookups need a token), within
        a time bound the caller gives, and ahead of expiry at most once per ``MIN_EARLY_RENEWAL``
        seconds, so a token that lives shorter than ``refresh_margin`` does not cost a provider call
        per request.
Rule 4: the JWT payload is read only as a hint for early renewal; a payload that cannot be
        read (bad base64, bad JSON, deep nesting, a non-finite ``expireTime``) is no hint, never
        an error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn, TypeAlias

from aiocontainer import _json
from aiocontainer._secret import Secret
from aiocontainer.errors import TokenError

__all__ = [
    "BLANKED",
    "FRAGMENT",
    "MIN_EARLY_RENEWAL",
    "Secret",
    "TokenKeeper",
    "TokenProvider",
    "check_token",
    "leaks",
    "mentions",
    "raise_unchained",
    "redact",
    "scrub",
    "token_expiry",
    "unchained",
]

#: An async callable returning a fresh token (a sync callable returning a str is accepted too).
TokenProvider: TypeAlias = Callable[[], Awaitable[str] | str]

#: Seconds between two renewals made ahead of expiry (renewals after a 10008 are not limited).
MIN_EARLY_RENEWAL: Final = 1.0


def redact(text: str, secret: str | None) -> str:
    """Replace every occurrence of ``secret`` in ``text`` with ``***``."""
    if not secret:
        return text
    return text.replace(secret, "***")


#: The shortest run of the token's characters that counts as a piece of it.
FRAGMENT: Final = 8


def leaks(text: str, secret: str | None) -> bool:
    """True if ``text`` holds the token or any ``FRAGMENT``-character piece of it.

    Foreign messages may quote a cut excerpt of what the server sent (aiohttp keeps 100 bytes
    of an over-long header line), so a whole-token search is not enough for them.
    """
    if not secret:
        return False
    if secret in text:
        return True
    if len(secret) <= FRAGMENT or len(text) < FRAGMENT:
        return False
    pieces = {secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1)}
    return any(text[i : i + FRAGMENT] in pieces for i in range(len(text) - FRAGMENT + 1))


def mentions(exc: BaseException, secret: str | None) -> bool:
    """True if the token, or a piece of it, shows in ``exc``'s text or in what it chains to."""
    if not secret:
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if leaks(repr(current), secret) or leaks(str(current), secret):
            return True
        current = current.__cause__ or current.__context__
    return False


#: What ``scrub`` puts in place of a text that showed the token or a piece of it.
BLANKED: Final = "(blanked: it quoted part of the token)"


def _shows(value: object, secret: str) -> bool:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("latin-1")
    return isinstance(value, str) and leaks(value, secret)


def _blanked(value: object, secret: str) -> object:
    """``value`` with the whole token as ``***``, or ``BLANKED`` if a piece of it is left."""
    if isinstance(value, str):
        value = redact(value, secret)
    return BLANKED if _shows(value, secret) else value


def scrub(exc: BaseException, secret: str | None) -> None:
    """Blank out, in place, every text of ``exc`` and of what it chains to that shows the token
    or a piece of it: in string arguments and attributes the whole token becomes ``***``, and
    one that still shows a piece of it (a cut excerpt) becomes ``BLANKED``, as does such a bytes
    value.

    For foreign exceptions (aiohttp quotes a cut excerpt of an over-long header line in its
    message and arguments): the error raised in their place keeps none of them, but on Python
    3.10 one can stay the exception "being handled" after its ``except`` block, and so become
    the ``__context__`` of whatever is raised next, in the caller's code too. Blanked, it no
    longer carries the token wherever it ends up. Other data (a request's headers) is left
    alone: ``mentions`` still sees it, and such an error is never chained.
    """
    if not secret:
        return
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(_shows(arg, secret) for arg in current.args):
            current.args = tuple(_blanked(arg, secret) for arg in current.args)
        for name, value in list(getattr(current, "__dict__", {}).items()):
            if _shows(value, secret):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(current, name, _blanked(value, secret))
        current = current.__cause__ or current.__context__


class _Unchained:
    """``with unchained: raise error``: ``error`` leaves with no ``__context__``, so no foreign
    exception (whose text may quote the token) is chained to it.

    Raising after the ``except`` block is not enough everywhere: on Python 3.10 a foreign
    exception thrown into a coroutine can still count as the one being handled once its
    ``except`` block has ended, and ``raise`` makes it the new error's context. The exception
    then goes on from ``__exit__`` without being raised again, so nothing sets it back.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if error is not None:
            error.__context__ = None


#: See ``_Unchained``.
unchained: Final = _Unchained()


def raise_unchained(error: BaseException) -> NoReturn:
    """``raise error`` with no ``__context__`` (see ``_Unchained``)."""
    with unchained:
        raise error


def check_token(value: object) -> Secret:
    """Wrap ``value`` as a ``Secret`` if it may be sent as a header, else raise ``TokenError``.

    The message never shows the value: a rejected token may still be a real one.
    """
    if not isinstance(value, str):
        raise TokenError(f"the token must be a string, got {type(value).__name__}")
    if not value:
        raise TokenError("the token is empty")
    # Visible ASCII only: a control character (CR, LF, NUL, ESC, DEL, ...) could split or
    # corrupt the request, and a space or non-ASCII character is no part of a platform token.
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise TokenError(
            "the token holds a control, space or non-ASCII character; check how it was read"
        )
    return Secret(value)


def token_expiry(token: str) -> float | None:
    """The ``expireTime`` hint of a JWT-shaped token, in epoch seconds; None if there is none.

    The signature is not and cannot be checked: the value only decides when to renew early.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = _json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):  # _json.JSONError is a ValueError
        return None
    if not isinstance(claims, dict):
        return None
    expire = claims.get("expireTime")
    if isinstance(expire, bool) or not isinstance(expire, str | int | float):
        return None
    try:
        millis = float(expire)
    except (ValueError, OverflowError):
        return None
    if not math.isfinite(millis) or millis <= 0:
        return None
    return millis / 1000.0


class TokenKeeper:
    """The current token, and its renewal through a provider.

    A fixed token is used as it is. With a provider, a token is asked for on first use, renewed
    ahead of its JWT ``expireTime`` (``refresh_margin`` seconds before it, or half-way through
    its life if it lives shorter than that, and never twice within ``MIN_EARLY_RENEWAL`` seconds),
    and renewed on demand after a 10008 answer. ``wall_clock`` reads epoch seconds (to compare
    with ``expireTime``); ``clock`` is monotonic (to space renewals).
    """

    def __init__(
        self,
        token: str | TokenProvider,
        *,
        refresh_margin: float,
        wall_clock: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self._provider: TokenProvider | None = None
        self._token: Secret | None = None
        self._renew_at: float | None = None  # wall-clock seconds; None: no early renewal
        self._renewed_at: float | None = None  # monotonic seconds of the last provider call
        self._refresh_margin = refresh_margin
        self._wall_clock = wall_clock
        self._clock = clock
        self._lock = asyncio.Lock()
        #: Times the provider was called.
        self.refreshes = 0
        if isinstance(token, str):
            self._accept(token)
        elif callable(token):
            self._provider = token
        else:
            raise TypeError("token must be a string or a callable returning one")

    @property
    def has_provider(self) -> bool:
        """True if the token can be renewed."""
        return self._provider is not None

    def _accept(self, value: object) -> Secret:
        secret = check_token(value)
        self._token = secret
        self._renew_at = None
        if self._provider is not None:
            expiry = token_expiry(secret.reveal())
            if expiry is not None:
                now = self._wall_clock()
                self._renew_at = expiry - min(self._refresh_margin, max(0.0, expiry - now) / 2)
        return secret

    def _due(self) -> bool:
        if self._renew_at is None:
            return False
        if self._wall_clock() < self._renew_at:
            return False
        return self._renewed_at is None or self._clock() - self._renewed_at >= MIN_EARLY_RENEWAL

    def ready(self) -> Secret | None:
        """The token to send now if no renewal is due, else None (then await ``current``)."""
        token = self._token
        if token is None or (self._renew_at is not None and self._due()):
            return None  # (a fixed token has no renewal time: the common case is one test)
        return token

    async def current(self, bound: float) -> Secret:
        """The token to send now, renewed first if due; a renewal takes at most ``bound`` s."""
        token = self._token
        if token is not None and not self._due():
            return token
        return await self.renew(stale=token, bound=bound)

    async def renew(self, *, stale: Secret | None, bound: float) -> Secret:
        """Ask the provider once for a token to replace ``stale``, shared by concurrent callers.

        A provider that has not answered within ``bound`` seconds is a ``TokenError``.
        """
        async with self._lock:
            if self._token is not None and self._token is not stale:
                return self._token  # another lookup renewed it while this one waited
            provider = self._provider
            if provider is None:
                raise TokenError("the token cannot be renewed without a provider")
            self.refreshes += 1
            self._renewed_at = self._clock()
            failure: TokenError | None = None
            try:
                result = await asyncio.wait_for(_ask(provider), max(bound, 0.0))
                return self._accept(result)
            except TokenError:
                raise
            except asyncio.TimeoutError:
                failure = TokenError(f"the token provider did not answer within {bound:g}s")
            except Exception as exc:
                failure = TokenError(f"the token provider failed: {type(exc).__name__}")
                if not mentions(exc, stale.reveal() if stale else None):
                    failure.__cause__ = exc
            with unchained:
                raise failure


async def _ask(provider: TokenProvider) -> object:
    result = provider()
    if inspect.isawaitable(result):
        result = await result
    return result
