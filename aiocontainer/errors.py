"""The one exception tree of aiocontainer.

Everything the library raises on purpose derives from :class:`AiocontainerError`::

    AiocontainerError
    ├── ClientClosedError                       the client was used after aclose()
    ├── TokenError                              the token provider failed or returned a non-string
    ├── InvalidInstanceIdError (also ValueError) bad id, raised before any I/O
    ├── TransportError                          connect/read failure, timeout, disconnect; retried
    ├── ResponseError                           not JSON, no envelope, data missing or malformed
    │   ├── HTTPStatusError (also ApiError)     HTTP error status without a readable envelope
    │   └── ListEntryError(page_start, index)   one entry of a list page does not parse
    ├── ApiError(code, msg, instance_id, http_status)   envelope code != "0"
    │   ├── InternalApiError            10001  internal error (retried)
    │   ├── MissingParameterError       10003
    │   ├── InvalidParameterError       10004  also what an unknown instance id returns
    │   ├── UserFrozenError             10007
    │   ├── PermissionDeniedError       10008  insufficient permission / expired token
    │   ├── ApiAccessDeniedError        10009
    │   ├── FileCheckError              10010
    │   ├── FileTooLargeError           10011
    │   ├── ConnectionInterruptedApiError 10012 (retried)
    │   └── HTTPStatusError             see above; ``code`` is None
    ├── InstanceGoneError                       the watcher dropped an id the platform forgot
    ├── ChangesDroppedError                     a watcher consumer fell behind, lost its oldest
    ├── CheckpointError(path)                   a watcher checkpoint that cannot be used
    │   └── CheckpointLockedError               another watcher holds the checkpoint's lock
    └── WaitError(instance_id, last_detail, history)
        ├── WaitTimeoutError
        └── WaitFailedError

Rule 1: no message, ``repr`` or attribute of these exceptions ever holds the token.
Rule 2: foreign exceptions (aiohttp, asyncio, cattrs) are turned into these at one boundary in the
client, chained with ``from`` unless the foreign exception itself would reveal the token.

This module imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: at run time this module needs the standard library alone
    from . import models

__all__ = [
    "AiocontainerError",
    "ApiAccessDeniedError",
    "ApiError",
    "ChangesDroppedError",
    "CheckpointError",
    "CheckpointLockedError",
    "ClientClosedError",
    "ConnectionInterruptedApiError",
    "FileCheckError",
    "FileTooLargeError",
    "HTTPStatusError",
    "InstanceGoneError",
    "InternalApiError",
    "InvalidInstanceIdError",
    "InvalidParameterError",
    "ListEntryError",
    "MissingParameterError",
    "PermissionDeniedError",
    "ResponseError",
    "TokenError",
    "TransportError",
    "UserFrozenError",
    "WaitError",
    "WaitFailedError",
    "WaitTimeoutError",
    "api_error_class",
]


class AiocontainerError(Exception):
    """Base class of every error aiocontainer raises on purpose."""

    #: The instance the failed call was about, where there is one.
    instance_id: str | None = None
    #: Seconds the server asked to wait before the next attempt (``Retry-After``), if it did.
    retry_after: float | None = None


class ClientClosedError(AiocontainerError):
    """The client was used after it was closed."""


class TokenError(AiocontainerError):
    """The token provider raised or returned something that is not a non-empty string."""


class InvalidInstanceIdError(AiocontainerError, ValueError):
    """An instance id that cannot be sent to the platform; raised before any I/O."""

    def __init__(self, message: str, *, instance_id: str | None = None) -> None:
        super().__init__(message)
        self.instance_id = instance_id


class TransportError(AiocontainerError):
    """The request did not complete: connection refused or reset, timeout, disconnect."""

    def __init__(self, message: str, *, instance_id: str | None = None) -> None:
        super().__init__(message)
        self.instance_id = instance_id


class ResponseError(AiocontainerError):
    """The response could not be read: not JSON, no envelope, or ``data`` of the wrong shape."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        snippet: str | None = None,
        instance_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        AiocontainerError.__init__(self, message)
        self.http_status = http_status
        self.snippet = snippet
        self.instance_id = instance_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = str(self.args[0]) if self.args else ""
        if self.http_status is not None:
            text += f" (HTTP {self.http_status})"
        if self.snippet:
            text += f": {self.snippet!r}"
        return text


class ListEntryError(ResponseError):
    """One entry of a list page has no valid id or does not parse; the other entries may.

    ``page_start`` is the page's offset, ``index`` the entry's place on it, ``instance_id``
    the entry's id when it has a valid one (else None); the message names the page and field.
    """

    def __init__(
        self,
        message: str,
        *,
        page_start: int,
        index: int,
        instance_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, instance_id=instance_id)
        self.page_start = page_start
        self.index = index


class ApiError(AiocontainerError):
    """The platform answered with a non-zero ``code`` (or an HTTP error status)."""

    def __init__(
        self,
        code: str | None,
        msg: str,
        *,
        instance_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        # Explicit base call: HTTPStatusError also derives from ResponseError, whose __init__
        # takes other arguments, so cooperative super() would route there.
        AiocontainerError.__init__(self, code, msg)
        self.code = code
        self.msg = msg
        self.instance_id = instance_id
        self.http_status = http_status
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [f"code {self.code}" if self.code is not None else "no code"]
        if self.msg:
            parts.append(repr(self.msg))
        if self.instance_id is not None:
            parts.append(f"instance {self.instance_id}")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, msg={self.msg!r}, "
            f"instance_id={self.instance_id!r}, http_status={self.http_status!r})"
        )


class InternalApiError(ApiError):
    """Code 10001: internal error on the platform (retried)."""


class MissingParameterError(ApiError):
    """Code 10003: parameters missing."""


class InvalidParameterError(ApiError):
    """Code 10004: invalid parameter; assumed to be the answer for an unknown or deleted id."""


class UserFrozenError(ApiError):
    """Code 10007: the user account is frozen."""


class PermissionDeniedError(ApiError):
    """Code 10008: insufficient permission; in practice also an expired token."""


class ApiAccessDeniedError(ApiError):
    """Code 10009: no permission to call this API."""


class FileCheckError(ApiError):
    """Code 10010: file check failed."""


class FileTooLargeError(ApiError):
    """Code 10011: file too large."""


class ConnectionInterruptedApiError(ApiError):
    """Code 10012: connection interrupted on the platform side (retried)."""


class HTTPStatusError(ApiError, ResponseError):
    """An HTTP error status (4xx/5xx) whose body is not a readable envelope; ``code`` is None."""

    def __init__(
        self,
        http_status: int,
        *,
        snippet: str | None = None,
        instance_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        ApiError.__init__(
            self,
            None,
            f"HTTP {http_status}",
            instance_id=instance_id,
            http_status=http_status,
            retry_after=retry_after,
        )
        self.snippet = snippet

    def __str__(self) -> str:
        text = f"HTTP {self.http_status} without an API envelope"
        if self.instance_id is not None:
            text += f", instance {self.instance_id}"
        if self.snippet:
            text += f": {self.snippet!r}"
        return text


_CODE_CLASSES: dict[str, type[ApiError]] = {
    "10001": InternalApiError,
    "10003": MissingParameterError,
    "10004": InvalidParameterError,
    "10007": UserFrozenError,
    "10008": PermissionDeniedError,
    "10009": ApiAccessDeniedError,
    "10010": FileCheckError,
    "10011": FileTooLargeError,
    "10012": ConnectionInterruptedApiError,
}


def api_error_class(code: str) -> type[ApiError]:
    """Return the ``ApiError`` subclass for a documented code, plain ``ApiError`` otherwise."""
    return _CODE_CLASSES.get(code, ApiError)


class InstanceGoneError(AiocontainerError):
    """The platform kept answering "invalid parameter" for an id, so the watcher dropped it."""

    def __init__(self, instance_id: str, *, attempts: int) -> None:
        super().__init__(
            f"instance {instance_id} is gone: {attempts} lookups in a row answered code 10004"
        )
        self.instance_id: str | None = instance_id
        #: How many lookups in a row answered 10004.
        self.attempts: int = attempts


class ChangesDroppedError(AiocontainerError):
    """A watcher consumer fell ``limit`` changes behind; its oldest pending change was dropped."""

    def __init__(self, change: models.StatusChange, *, consumer: str, limit: int) -> None:
        super().__init__(
            f"{consumer} fell {limit} changes behind: dropped change #{change.seq} of instance "
            f"{change.instance_id} ({change.previous} -> {change.current})"
        )
        self.instance_id: str | None = change.instance_id
        #: The ``StatusChange`` that was never delivered to this consumer.
        self.change: models.StatusChange = change
        #: Which callback or iterator lost it.
        self.consumer: str = consumer
        #: The size of that consumer's queue.
        self.limit: int = limit


class WaitError(AiocontainerError):
    """A wait ended without reaching the wanted status."""

    def __init__(
        self,
        message: str,
        *,
        instance_id: str,
        last_detail: models.InstanceDetail | None = None,
        history: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.instance_id: str | None = instance_id
        #: The last ``InstanceDetail`` seen, or None if no poll ever succeeded.
        self.last_detail: models.InstanceDetail | None = last_detail
        #: The statuses seen during the wait, oldest first.
        self.history: tuple[str, ...] = tuple(history)


class WaitTimeoutError(WaitError):
    """The deadline passed before the instance reached a wanted status."""


class WaitFailedError(WaitError):
    """The instance reached a status listed in ``fail_on``."""


# -- watcher checkpoint errors ----------------------------------------------------------------


class CheckpointError(AiocontainerError):
    """A watcher checkpoint file that cannot be used as one."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        #: The checkpoint file.
        self.path = path


class CheckpointLockedError(CheckpointError):
    """Another watcher holds the checkpoint file's lock: two writers would erase each other."""


# -- Credentials, tokens and regions (aiocontainer.auth) ----------------------------------------
#
#   AiocontainerError
#   └── AuthError                               getting or renewing a platform token failed
#       ├── CredentialsError (also ValueError)  credentials missing or unreadable; before any I/O
#       ├── LoginError(code, msg, http_status)  the platform refused the keys, signature or time
#       ├── RegionNotFoundError (also LookupError)  no such region, or none chosen among several
#       └── RegionUnavailableError              the region has no token or no AI URL

__all__ += [
    "AuthError",
    "CredentialsError",
    "LoginError",
    "RegionNotFoundError",
    "RegionUnavailableError",
]


class AuthError(AiocontainerError):
    """Getting a token, a region or its AI URL from the platform failed."""


class CredentialsError(AuthError, ValueError):
    """Credentials are missing or unreadable (environment, profile file); nothing was sent."""


class LoginError(AuthError):
    """The platform refused to issue tokens: wrong keys, a refused signature or a stale timestamp.

    Never retried: the same keys and clock would be refused again.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        msg: str = "",
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        #: The envelope's ``code``, if the answer had one.
        self.code = code
        #: The envelope's ``msg``, if the answer had one.
        self.msg = msg
        self.http_status = http_status


class RegionNotFoundError(AuthError, LookupError):
    """No region has that name or cluster id, or none was chosen while several have a token."""

    def __init__(self, message: str, *, known: Sequence[str] = ()) -> None:
        super().__init__(message)
        #: The regions that could have been chosen, as ``name (cluster id)``.
        self.known: tuple[str, ...] = tuple(known)


class RegionUnavailableError(AuthError):
    """The region exists but cannot serve container calls; ``reason`` says why."""

    def __init__(self, message: str, *, region: str, reason: str) -> None:
        super().__init__(message)
        #: The region's name.
        self.region = region
        #: Why: ``"no_token"`` (account disabled or in arrears), ``"platform"`` (the platform's
        #: own token) or ``"no_ai_url"`` (the center lists no enabled AI URL).
        self.reason = reason


# -- Watcher health (staleness reported through on_error) ---------------------------------------
#
#   AiocontainerError
#   ├── InstanceStaleError                      no successful poll of an id for ``stale_after``
#   ├── InstanceRecoveredNotice                 a stale id was observed again (not a failure)
#   └── SyncTimeoutError (also TimeoutError)    ``wait_synced`` ran out of time

__all__ += ["InstanceRecoveredNotice", "InstanceStaleError", "SyncTimeoutError"]


class InstanceStaleError(AiocontainerError):
    """No poll of a watched id succeeded for longer than ``stale_after``; reported once."""

    def __init__(self, instance_id: str, *, age: float, stale_after: float) -> None:
        super().__init__(
            f"instance {instance_id} is stale: not observed for {age:.1f}s "
            f"(stale after {stale_after:g}s)"
        )
        self.instance_id: str | None = instance_id
        #: Seconds it had gone unobserved when it was found stale.
        self.age: float = age
        #: The watcher's ``stale_after``.
        self.stale_after: float = stale_after


class InstanceRecoveredNotice(AiocontainerError):
    """A stale id was observed again; sent once after its ``InstanceStaleError`` to clear it.

    It is a notice, not a failure: it reaches ``on_error`` so that whatever raised an alert on
    ``InstanceStaleError`` can lower it; the watcher logs it at INFO when no callback is set.
    """

    def __init__(self, instance_id: str, *, blind_for: float) -> None:
        super().__init__(f"instance {instance_id} is observed again after {blind_for:.1f}s")
        self.instance_id: str | None = instance_id
        #: Seconds between the start of the stale spell's unobserved time and this observation.
        self.blind_for: float = blind_for


class SyncTimeoutError(AiocontainerError, TimeoutError):
    """``wait_synced`` timed out before every watched id was observed once (or, with
    ``watch_all``, before a pass listed the whole account)."""

    def __init__(self, *, unsynced: int, timeout: float, account_listed: bool = True) -> None:
        what = f"{unsynced} watched instances not observed"
        if not account_listed:
            what = f"the account not listed whole and {what}"
        super().__init__(f"{what} within {timeout:g}s")
        #: How many watched ids were still unobserved.
        self.unsynced: int = unsynced
        #: False with ``watch_all`` when no pass had listed the whole account since the start.
        self.account_listed: bool = account_listed
        #: The timeout that ran out.
        self.timeout: float = timeout
