"""The platform's protocol without I/O: ids, URLs, envelopes, retry decisions.

Rule 1: an id is checked before anything is sent. Only ``[A-Za-z0-9_-]{1,128}`` reaches a URL, so no
        id can change the path (``..``, ``/``, ``?``, ``#``, ``%``) or the request line (CR/LF).
Rule 2: ``read_detail(status, headers, body, asked_id)`` returns an ``InstanceDetail`` or raises
        exactly one ``AiocontainerError``, filled here: instance id, HTTP status and ``Retry-After``
        are set when the error is made, never patched on later. It never returns half a result.
Rule 3: every text that came from the server (body snippets, the envelope's ``msg``) has the token
        blanked out before it is put in an error.
Rule 4: whether to retry is decided here, from the error alone.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from aiocontainer import _json
from aiocontainer._convert import structure
from aiocontainer._options import require, sendable
from aiocontainer._paging import DetailCache, ListPage, read_total
from aiocontainer._tokens import mentions, redact, unchained
from aiocontainer.errors import (
    AiocontainerError,
    ApiError,
    HTTPStatusError,
    InvalidInstanceIdError,
    ListEntryError,
    PermissionDeniedError,
    ResponseError,
    TransportError,
    api_error_class,
)
from aiocontainer.models import InstanceDetail, InstanceStatus

#: The decoder of every body: bounded, and only ``JSONError`` (a ``ValueError``) on bad input.
#: A module attribute so the benchmark can compare decoders on the same path.
_loads: Any = _json.loads
JSON_DECODE_ERRORS: Final[tuple[type[Exception], ...]] = (ValueError,)

__all__ = [
    "DETAIL_PATH",
    "LIST_PARAMETERS_IN",
    "LIST_PATH",
    "MAX_BODY_BYTES",
    "RETRYABLE_CODES",
    "TASK_TYPES",
    "after_failure",
    "ai_base_url",
    "ai_base_urls",
    "detail_path",
    "detail_url",
    "is_retryable",
    "list_filters",
    "list_request",
    "loads",
    "normalize_base_url",
    "parse_detail_response",
    "parse_envelope",
    "read_detail",
    "read_list_page",
    "retry_after_seconds",
    "retry_delay",
    "success_envelope",
    "validate_instance_id",
]

DETAIL_PATH: Final = "/ai/openapi/v2/instance-service/{id}/detail"
LIST_PATH: Final = "/ai/openapi/v2/instance-service/task"
#: Where the list endpoint's parameters go: "query" (what scnet-cli sends, and the default) or
#: "body" (a JSON body on the GET, as the platform's own examples show). The one place to
#: change it; the simulator accepts both.
LIST_PARAMETERS_IN: Final = "query"
#: The task types the list endpoint documents for ``taskType``.
TASK_TYPES: Final = frozenset({"ssh", "jupyter", "codeserver", "rstudio"})
#: Responses larger than this are refused without being read whole.
MAX_BODY_BYTES: Final = 10 * 1024 * 1024
#: Envelope codes worth another attempt: 10001 internal error, 10012 connection interrupted.
RETRYABLE_CODES: Final = frozenset({"10001", "10012"})
_SNIPPET_CHARS: Final = 120
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def loads(body: bytes | str) -> Any:
    """Decode JSON (orjson when installed, else the standard library) within ``_json``'s bounds."""
    return _loads(body)


def validate_instance_id(instance_id: object) -> str:
    """Return ``instance_id`` if it may be sent, else raise ``InvalidInstanceIdError``."""
    if not isinstance(instance_id, str):
        raise InvalidInstanceIdError(
            f"instance id must be a string, got {type(instance_id).__name__}"
        )
    # fullmatch on a str pattern without re.ASCII would let non-ASCII letters through \w, so the
    # class is spelled out; "$" is avoided because it matches before a trailing newline.
    if _ID_RE.fullmatch(instance_id) is None:
        shown = instance_id if len(instance_id) <= 40 else instance_id[:40] + "..."
        raise InvalidInstanceIdError(
            f"invalid instance id {shown!r}: expected 1-128 characters from [A-Za-z0-9_-]",
            instance_id=instance_id,
        )
    return instance_id


def normalize_base_url(base_url: str) -> str:
    """Strip trailing slashes and check the scheme; the API paths are appended to the result."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError("base_url must start with http:// or https://")
    stripped = base_url.rstrip("/")
    if "?" in stripped or "#" in stripped:
        raise ValueError("base_url must not carry a query or a fragment")
    return stripped


def ai_base_url(base_url: str) -> str:
    """The base the container paths (``/ai/openapi/v2/...``) are joined to.

    The platform's center lists AI URLs that may end in ``/ai``; one trailing ``/ai`` is
    stripped, as scnet-cli does, so ``https://host:65106`` and ``https://host:65106/ai`` name the
    same API. This is an assumption (no document says which form the center sends); a base that
    really lives under a path ending in ``/ai`` would need that segment twice.
    """
    normalized = normalize_base_url(base_url)
    if normalized.endswith("/ai") and normalized.count("/") > 2:
        normalized = normalized[: -len("/ai")]
    return normalized


def ai_base_urls(base_url: object) -> tuple[str, ...]:
    """One or several base URLs, each through ``ai_base_url``, in order, without repeats."""
    if isinstance(base_url, str):
        return (ai_base_url(base_url),)
    if isinstance(base_url, bytes | bytearray) or not isinstance(base_url, Iterable):
        raise ValueError("base_url must be a URL or a sequence of URLs")
    urls = tuple(dict.fromkeys(ai_base_url(url) for url in base_url))
    require(bool(urls), "base_url must name at least one URL")
    return urls


def detail_path(instance_id: str) -> str:
    """The request path of the detail endpoint for a validated id."""
    return DETAIL_PATH.format(id=validate_instance_id(instance_id))


def detail_url(base_url: str, instance_id: str) -> str:
    """The full detail URL under a normalized base URL."""
    return base_url + detail_path(instance_id)


def snippet(body: bytes, secret: str | None = None) -> str:
    """A short, printable start of a body for error messages, with ``secret`` blanked out.

    The secret is removed from the whole body before it is cut, so no prefix of it survives.
    """
    if secret:
        body = body.replace(secret.encode(), b"***")
    text = body[: _SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:_SNIPPET_CHARS] + ("..." if len(text) > _SNIPPET_CHARS else "")


def parse_envelope(
    status: int,
    body: bytes,
    *,
    instance_id: str | None = None,
    secret: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Return ``data`` of a successful envelope; raise the matching, fully filled error otherwise.

    The Content-Type is not consulted: a JSON body labelled ``text/html`` is still read.
    ``secret`` (the token) is blanked out of every server text an error carries; ``headers``
    give the ``Retry-After`` the error carries.
    """
    return success_envelope(status, body, instance_id, secret, headers).get("data")


def success_envelope(
    status: int,
    body: bytes,
    instance_id: str | None = None,
    secret: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole envelope of a success (``data`` and what else it holds), as ``parse_envelope``."""
    if status == 200 and body:
        # The common case first, in as few steps as possible; anything unusual takes the slow
        # path below, which reads the body again and says what is wrong with it.
        try:
            envelope = _loads(body)
        except JSON_DECODE_ERRORS:
            envelope = None
        if type(envelope) is dict and envelope.get("code") == "0":
            return envelope
    return _unusual_envelope(status, body, instance_id, secret, headers)


def _unusual_envelope(
    status: int,
    body: bytes,
    instance_id: str | None,
    secret: str | None,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    retry_after = retry_after_seconds(headers)
    if 300 <= status < 400:
        raise ResponseError(
            "redirect not followed",
            http_status=status,
            instance_id=instance_id,
            retry_after=retry_after,
        )
    try:
        envelope = _loads(body) if body else None
    except JSON_DECODE_ERRORS:
        envelope = None
    if not isinstance(envelope, dict) or "code" not in envelope:
        if status >= 400:
            raise HTTPStatusError(
                status,
                snippet=snippet(body, secret),
                instance_id=instance_id,
                retry_after=retry_after,
            )
        what = "empty body" if not body else "body is not a JSON envelope"
        raise ResponseError(
            what,
            http_status=status,
            snippet=snippet(body, secret),
            instance_id=instance_id,
            retry_after=retry_after,
        )
    code = envelope["code"]
    if type(code) is int:
        code = str(code)
    if type(code) is not str:
        raise ResponseError(
            f"envelope code is {type(code).__name__}, expected a string",
            http_status=status,
            snippet=snippet(body, secret),
            instance_id=instance_id,
            retry_after=retry_after,
        )
    if code != "0":
        msg = envelope.get("msg")
        msg = redact(msg, secret) if isinstance(msg, str) else ""
        raise api_error_class(code)(
            code, msg, instance_id=instance_id, http_status=status, retry_after=retry_after
        )
    if status >= 400:
        # A success code under an error status is contradictory; trust neither half.
        raise HTTPStatusError(
            status, snippet=snippet(body, secret), instance_id=instance_id, retry_after=retry_after
        )
    return envelope


def parse_detail_response(
    status: int,
    body: bytes,
    *,
    instance_id: str | None = None,
    secret: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Return the detail ``data`` dict, or raise; ``data`` must be a JSON object."""
    data = success_envelope(status, body, instance_id, secret, headers).get("data")
    if type(data) is not dict:
        what = "missing" if data is None else f"a {type(data).__name__}"
        raise ResponseError(
            f"envelope data is {what}, expected an object",
            http_status=status,
            snippet=snippet(body, secret),
            instance_id=instance_id,
            retry_after=retry_after_seconds(headers),
        )
    return data


def read_detail(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    asked_id: str,
    *,
    secret: str | None = None,
    cache: DetailCache | None = None,
) -> InstanceDetail:
    """The ``InstanceDetail`` a detail answer describes, or the one error it amounts to.

    ``asked_id`` is the id that was asked for (already validated). An answer about another
    instance is a ``ResponseError``: ids are hex and may be typed in either case, so only a
    case-insensitive match is accepted, and any other mismatch would file one instance's status
    under another's id. With a ``cache``, the body last read for ``asked_id`` is not read again.
    """
    if cache is not None and status == 200:
        known = cache.answer_for(asked_id, body)
        if known is not None:
            return known
    data = parse_detail_response(status, body, instance_id=asked_id, secret=secret, headers=headers)
    detail = model_from(data, status, headers, asked_id, secret, cache)
    if detail.id != asked_id and detail.id.lower() != asked_id.lower():
        if cache is not None:
            cache.forget(asked_id)
        raise ResponseError(
            f"asked for instance {asked_id}, the answer describes {detail.id[:40]!r}",
            http_status=status,
            instance_id=asked_id,
            retry_after=retry_after_seconds(headers),
        )
    if cache is not None:
        cache.keep_answer(asked_id, body, detail)
    return detail


def model_from(
    data: Any,
    status: int,
    headers: Mapping[str, str] | None,
    instance_id: str | None,
    secret: str | None,
    cache: DetailCache | None = None,
) -> InstanceDetail:
    """The model built from ``data``, or a ``ResponseError`` naming the bad fields.

    With a ``cache`` and an ``instance_id``, data that differs from what was last read for the
    id only in its clock values is not built again (``DetailCache.detail_of``). The converter's
    message may quote a value the server sent, so the token is blanked out.
    """
    try:
        if cache is not None and instance_id is not None:
            return cache.detail_of(data, instance_id)
        return structure(data, InstanceDetail)
    except ResponseError as exc:
        failure = ResponseError(
            redact(str(exc.args[0]), secret),
            http_status=status,
            instance_id=instance_id,
            retry_after=retry_after_seconds(headers),
        )
        failure.__cause__ = _safe_cause(exc, secret)
    with unchained:  # the converter's error (its text may quote the token) is not kept as context
        raise failure


def _safe_cause(exc: BaseException, secret: str | None) -> BaseException | None:
    """What a converter error was caused by, unless its text shows the token."""
    cause = exc.__cause__
    return None if cause is None or mentions(cause, secret) else cause


def list_filters(
    status: object = None, task_type: object = None, names: object = None
) -> tuple[tuple[str, str], ...]:
    """The list endpoint's filters as ``(name, value)`` pairs; ``ValueError`` on a bad value.

    ``status`` is one of the six documented statuses, ``task_type`` one of ``TASK_TYPES``,
    ``names`` an iterable of instance names (not a bare string); None leaves a filter out.
    The status filter is strict although statuses in answers pass through unknown: a typo here
    would silently list nothing.
    """
    pairs: list[tuple[str, str]] = []
    if status is not None:
        require(
            isinstance(status, str) and status in _STATUSES,
            f"status must be one of {', '.join(sorted(_STATUSES))}",
        )
        pairs.append(("status", str(status)))
    if task_type is not None:
        require(
            isinstance(task_type, str) and task_type in TASK_TYPES,
            f"task_type must be one of {', '.join(sorted(TASK_TYPES))}",
        )
        pairs.append(("taskType", str(task_type)))
    if names is not None:
        if isinstance(names, str | bytes) or not isinstance(names, Iterable):
            raise ValueError("names must be a list of instance names, not a single string")
        listed = list(names)
        require(
            all(isinstance(name, str) and name and sendable(name) for name in listed),
            "every name must be a non-empty string of whole characters (no lone surrogate)",
        )
        pairs.extend(("instanceServiceName", name) for name in listed)
    return tuple(pairs)


_STATUSES: Final = frozenset(
    {
        InstanceStatus.WAITING,
        InstanceStatus.DEPLOYING,
        InstanceStatus.RUNNING,
        *InstanceStatus.TERMINAL,
    }
)


def list_request(
    start: int, limit: int, filters: tuple[tuple[str, str], ...]
) -> tuple[list[tuple[str, str]] | None, dict[str, Any] | None]:
    """The query parameters and the JSON body of one list request (one of them is None).

    Newest first (``sort=desc``, the documented value): an instance created during a listing
    then lands before the pages still to come, so it shifts them by one and some ids come
    again (the pager drops them) but none is skipped for it.
    """
    require(
        not isinstance(start, bool) and isinstance(start, int) and start >= 0,
        "start must be a non-negative integer",
    )
    require(
        not isinstance(limit, bool) and isinstance(limit, int) and limit >= 1,
        "limit must be a positive integer",
    )
    pairs = [("start", str(start)), ("limit", str(limit)), ("sort", "desc"), *filters]
    if LIST_PARAMETERS_IN == "query":
        return pairs, None
    body: dict[str, Any] = {"start": start, "limit": limit, "sort": "desc"}
    for key, value in filters:
        if key == "instanceServiceName":
            body.setdefault(key, []).append(value)
        else:
            body[key] = value
    return None, body


def read_list_page(
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes,
    start: int,
    *,
    secret: str | None = None,
    cache: DetailCache | None = None,
) -> ListPage:
    """The ``ListPage`` a list answer holds, or the one error the whole answer amounts to.

    ``data`` must be a list (a missing ``data`` is an empty page, as scnet-cli reads it). Each
    entry that is not an object with a valid id, or does not match the model, becomes a
    ``ListEntryError`` on the page; the other entries are kept. With a ``cache``, what it
    read before from the same bytes (the whole page, or an entry) is taken from it.
    """
    if cache is not None and status == 200:
        known = cache.page_at(start, body)
        if known is not None:
            return known
    envelope = success_envelope(status, body, None, secret, headers)
    data = envelope.get("data")
    if data is None:
        data = []
    if type(data) is not list:
        raise ResponseError(
            f"list page at offset {start}: data is a {type(data).__name__}, expected a list",
            http_status=status,
            snippet=snippet(body, secret),
            retry_after=retry_after_seconds(headers),
        )
    details: list[InstanceDetail] = []
    errors: list[ListEntryError] = []
    for index, entry in enumerate(data):
        try:
            details.append(_list_entry(entry, start, index, status, secret, cache))
        except ListEntryError as exc:
            errors.append(exc)
    total = read_total(envelope.get("total"))
    page = ListPage(
        start=start, count=len(data), details=tuple(details), errors=tuple(errors), total=total
    )
    if cache is not None:
        cache.keep_page(body, page)
    return page


def _entry_at(start: int, index: int) -> str:
    """Where an entry is, for its error (made only when there is one: most entries are fine)."""
    return f"list page at offset {start}, entry {index}"


def _list_entry(
    entry: Any, start: int, index: int, status: int, secret: str | None, cache: DetailCache | None
) -> InstanceDetail:
    if type(entry) is not dict:
        raise ListEntryError(
            f"{_entry_at(start, index)}: expected an object, got {type(entry).__name__}",
            page_start=start,
            index=index,
            http_status=status,
        )
    raw_id = entry.get("id")
    if not (isinstance(raw_id, str) and _ID_RE.fullmatch(raw_id)):
        what = "missing" if raw_id is None else "not 1-128 characters from [A-Za-z0-9_-]"
        raise ListEntryError(
            f"{_entry_at(start, index)}: $.id: {what}",
            page_start=start,
            index=index,
            http_status=status,
        )
    try:
        if cache is not None:
            return cache.detail_of(entry, raw_id)
        return structure(entry, InstanceDetail)
    except ResponseError as exc:
        failure = ListEntryError(
            f"{_entry_at(start, index)} (instance {redact(raw_id, secret)}): "
            f"{redact(str(exc.args[0]), secret)}",
            page_start=start,
            index=index,
            instance_id=raw_id,
            http_status=status,
        )
        failure.__cause__ = _safe_cause(exc, secret)
    with unchained:
        raise failure


def after_failure(
    failure: AiocontainerError,
    *,
    attempt: int,
    max_attempts: int,
    remaining: float,
    can_renew: bool,
) -> str:
    """What follows failed attempt number ``attempt``: ``"retry"``, ``"renew"`` or ``"give_up"``.

    Nothing follows the last attempt, or once the budget (``remaining`` seconds) is spent. A
    10008 is answered by one token renewal and an immediate resend when ``can_renew`` (a
    provider, not renewed yet in this call); other failures are retried if ``is_retryable``.
    """
    if attempt >= max_attempts or remaining <= 0:
        return "give_up"
    if can_renew and isinstance(failure, PermissionDeniedError):
        return "renew"
    return "retry" if is_retryable(failure) else "give_up"


def is_retryable(exc: BaseException) -> bool:
    """Decide whether another attempt may succeed where this one failed.

    Retried: transport failures, HTTP 5xx and 429, codes 10001 and 10012. Never retried: any
    other documented code (10003/10004/10007/10008/10009/10010/10011), a malformed body on HTTP
    200, unknown codes, and anything that is not an ``AiocontainerError`` (cancellation included).
    """
    if not isinstance(exc, AiocontainerError):
        return False
    if isinstance(exc, TransportError):
        return True
    if getattr(exc, "http_status", None) == 429:
        return True  # the server asked to slow down, whatever the body says
    if isinstance(exc, ApiError) and exc.code is not None:
        return exc.code in RETRYABLE_CODES
    status = getattr(exc, "http_status", None)
    return (
        isinstance(exc, ResponseError) and status is not None and (status == 429 or status >= 500)
    )


def retry_delay(
    step: float,
    retry_after: float | None,
    remaining: float,
    *,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before the next attempt.

    ``step`` is the exponential backoff value for this retry; the wait is drawn uniformly from
    ``[0, step]`` (full jitter), raised to ``retry_after`` when the server asked for more, and
    cut to ``remaining`` (what is left of the retry budget) so no attempt starts after it.
    """
    delay = uniform(0.0, step)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(0.0, min(delay, remaining))


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None if absent or unreadable.

    The HTTP-date form is ignored: the platform is not known to send it, and a clock skew between
    client and server would turn it into a wrong wait.
    """
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds
