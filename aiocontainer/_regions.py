"""Regions, their tokens and AI URLs, and when to renew a token, without I/O.

Rule 1: a token answer becomes a tuple of ``RegionToken`` or one ``ResponseError`` naming the bad
        entry and field; never a partial list.
Rule 2: the platform's own token (cluster id ``"0"``, name ``"ac"``) is not a region: it is left
        out of ``Region`` listings, and choosing it is a ``RegionUnavailableError``.
Rule 3: only ``aiUrls`` entries whose ``enable`` is the string ``"true"`` and whose ``url`` is an
        http(s) URL are used, in the center's order (the client strips one trailing ``/ai``).
Rule 4: a token is renewed ahead of its ``expireTime`` at ``min(refresh_margin, lifetime / 4)``
        before it, so a token is always used for at least three quarters of its life; a token that
        looks expired on arrival (the clocks disagree) is not renewed on schedule at all, only
        after a refusal. Outside the schedule, a refused token is renewed at most once: a token
        obtained that way is not renewed again before its schedule says so.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from aiocontainer._signing import check_header_value
from aiocontainer.errors import RegionNotFoundError, RegionUnavailableError, ResponseError

__all__ = [
    "PLATFORM_CLUSTER_ID",
    "PLATFORM_NAME",
    "RENEWAL_LIMIT",
    "Region",
    "RegionToken",
    "TokenState",
    "choose_region",
    "decide",
    "enabled_ai_urls",
    "is_due",
    "parse_token_list",
    "regions_of",
    "unavailable_error",
]

PLATFORM_CLUSTER_ID: Final = "0"
PLATFORM_NAME: Final = "ac"
#: ``tokens/next`` refuses a token more than this many seconds past its expiry.
RENEWAL_LIMIT: Final = 24 * 3600.0

_NO_TOKEN_WHY: Final = "the platform issued no token for it (account disabled or in arrears)"


@attrs.frozen
class Region:
    """A region the user may use: its name, its cluster id, and whether it has a token."""

    #: The platform's ``clusterName``.
    name: str
    #: The platform's ``clusterId``, as a string.
    cluster_id: str
    #: False when the platform answered this region with a null token (disabled or in arrears).
    available: bool


@attrs.frozen
class RegionToken:
    """One entry of a token answer; ``token`` is None for a region without one."""

    name: str
    cluster_id: str
    token: str | None = attrs.field(repr=False)

    @property
    def platform(self) -> bool:
        """True for the platform's own token, which container APIs refuse."""
        return self.cluster_id == PLATFORM_CLUSTER_ID or self.name == PLATFORM_NAME

    def label(self) -> str:
        """``name (cluster id)``, as errors list regions."""
        return f"{self.name} ({self.cluster_id})"


def _field(entry: dict[str, Any], key: str, index: int, *, nullable: bool = False) -> Any:
    value = entry.get(key)
    if value is None and nullable:
        return None
    if key == "clusterId" and type(value) is int:
        return str(value)
    if not isinstance(value, str) or not value:
        got = "missing" if key not in entry else type(value).__name__
        raise ResponseError(f"token answer $.data[{index}].{key}: expected a string, got {got}")
    return value


def parse_token_list(data: Any) -> tuple[RegionToken, ...]:
    """The regions of a token answer's ``data`` (Rule 1)."""
    if not isinstance(data, list) or not data:
        what = "empty" if isinstance(data, list) else type(data).__name__
        raise ResponseError(f"token answer $.data: expected a list of regions, got {what}")
    result = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ResponseError(
                f"token answer $.data[{index}]: expected an object, got {type(entry).__name__}"
            )
        token = _field(entry, "token", index, nullable=True)
        if token is not None:
            try:
                check_header_value("token", token)
            except ValueError:
                raise ResponseError(
                    f"token answer $.data[{index}].token: not a usable token"
                ) from None
        result.append(
            RegionToken(
                name=_field(entry, "clusterName", index),
                cluster_id=_field(entry, "clusterId", index),
                token=token,
            )
        )
    return tuple(result)


def regions_of(tokens: Iterable[RegionToken]) -> list[Region]:
    """The regions for container calls, the platform's own token left out (Rule 2)."""
    return [
        Region(name=t.name, cluster_id=t.cluster_id, available=t.token is not None)
        for t in tokens
        if not t.platform
    ]


def unavailable_error(entry: RegionToken) -> RegionUnavailableError:
    """Why ``entry`` cannot serve container calls: the platform's token, or no token."""
    if entry.platform:
        return RegionUnavailableError(
            f"{entry.label()} is the platform's own token: it serves platform calls, not "
            "container APIs; choose a region",
            region=entry.name,
            reason="platform",
        )
    return RegionUnavailableError(
        f"region {entry.label()} is unavailable: {_NO_TOKEN_WHY}",
        region=entry.name,
        reason="no_token",
    )


def _find(tokens: Sequence[RegionToken], wanted: str) -> RegionToken | None:
    """The one entry whose cluster id, else name, else case-folded name is ``wanted``."""
    wanted = wanted.strip()
    keys: tuple[Callable[[RegionToken], str], ...] = (
        lambda t: t.cluster_id,
        lambda t: t.name,
        lambda t: t.name.casefold(),
    )
    for key in keys:
        target = wanted.casefold() if key is keys[2] else wanted
        found = [t for t in tokens if key(t) == target]
        if len(found) == 1:
            return found[0]
    return None


def choose_region(
    tokens: Sequence[RegionToken], wanted: str | None, default: str | None = None
) -> RegionToken:
    """The region to use: ``wanted`` (name or cluster id), else ``default``, else the only one.

    Raises ``RegionNotFoundError`` (listing the known regions) for an unknown name or when several
    regions have a token and none was chosen, and ``RegionUnavailableError`` for a region without
    a token or for the platform's own token.
    """
    regions = [t for t in tokens if not t.platform]
    choice = wanted or default
    if choice:
        entry = _find(tokens, choice)
        if entry is None:
            known = [t.label() for t in regions]
            source = "" if wanted else " (the profile's default region)"
            raise RegionNotFoundError(
                f"no region {choice!r}{source}; known: {', '.join(known) or 'none'}",
                known=known,
            )
        if entry.platform or entry.token is None:
            raise unavailable_error(entry)
        return entry
    usable = [t for t in regions if t.token is not None]
    if len(usable) == 1:
        return usable[0]
    known = [t.label() for t in regions]
    if not usable:
        raise RegionUnavailableError(
            f"no region has a token ({', '.join(known) or 'none listed'}): {_NO_TOKEN_WHY}",
            region="",
            reason="no_token",
        )
    raise RegionNotFoundError(
        f"several regions have a token; choose one by name or cluster id: {', '.join(known)}",
        known=known,
    )


def enabled_ai_urls(data: Any) -> tuple[str, ...]:
    """The center's enabled AI URLs, in its order (Rule 3); ``ResponseError`` if not an object."""
    if not isinstance(data, dict):
        raise ResponseError(f"center answer $.data: expected an object, got {type(data).__name__}")
    entries = data.get("aiUrls")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ResponseError(
            f"center answer $.data.aiUrls: expected a list, got {type(entries).__name__}"
        )
    urls = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("enable") != "true":
            continue
        url = entry.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            urls.append(url)
    return tuple(dict.fromkeys(urls))


@attrs.frozen
class TokenState:
    """A region's current token, when it was obtained, and when it expires (epoch seconds)."""

    token: str = attrs.field(repr=False)
    obtained_at: float
    expires_at: float | None
    #: True when it replaced a refused token outside the schedule (Rule 4).
    forced: bool = False


def is_due(state: TokenState, now: float, refresh_margin: float) -> bool:
    """True once the schedule says ``state``'s token should be renewed (Rule 4)."""
    if state.expires_at is None:
        return False
    lifetime = state.expires_at - state.obtained_at
    if lifetime <= 0:
        return False  # expired on arrival: the clocks disagree, wait for a refusal
    return now >= state.expires_at - min(refresh_margin, lifetime / 4)


def can_renew(state: TokenState, now: float) -> bool:
    """False once the token is too far past its expiry for ``tokens/next``."""
    return state.expires_at is None or now <= state.expires_at + RENEWAL_LIMIT


def decide(
    state: TokenState,
    handed: str | None,
    now: float,
    *,
    refresh_margin: float,
    client_margin: float,
) -> Literal["use", "renew", "force"]:
    """What to do when a client asks for a token, having last been handed ``handed``.

    ``"renew"``: the schedule says so. ``"use"``: the current token is good for this client
    (it has not seen it yet, or it asked only because its own ``client_margin`` is wider than
    ours, or this token already replaced a refused one). ``"force"``: the client asked while its
    own margin did not make it, so the platform refused the token (code 10008): renew once.
    """
    if is_due(state, now, refresh_margin):
        return "renew"
    if handed is None or handed != state.token:
        return "use"
    if state.expires_at is not None and now >= state.expires_at - client_margin:
        return "use"
    if state.forced:
        return "use"
    return "force"
