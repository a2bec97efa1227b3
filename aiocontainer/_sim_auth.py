"""The simulator's side of authentication: key pairs, logins, regions and the tokens it signs.

Rule 1: no I/O and no clock of its own: wall time arrives through a callable handed in (the
simulator's ``token_clock``), for token expiry and for the login timestamp window alike.
Rule 2: a token is valid only if this simulator signed it (or it is the fixed token) and its
expiry has not passed; a forged or foreign token is never remembered.
Rule 3: every token belongs to one region (its ``clusterId``); the platform's own token
(clusterId "0", clusterName "ac") is good for platform calls only, never for container calls.
Rule 4: the secret key is used only to check a signature; it is never part of an answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AUTH_MESSAGES",
    "CODE_BAD_SIGNATURE",
    "CODE_STALE_TIMESTAMP",
    "CODE_WRONG_KEYS",
    "DEFAULT_REGIONS",
    "PLATFORM_CLUSTER_ID",
    "PLATFORM_CLUSTER_NAME",
    "RENEWAL_GRACE_SECONDS",
    "TIMESTAMP_WINDOW_SECONDS",
    "Account",
    "Login",
    "Region",
    "TokenBook",
    "center_data",
    "first_available",
    "signature",
]

RENEWAL_GRACE_SECONDS = 24 * 3600.0
PLATFORM_CLUSTER_ID = "0"
PLATFORM_CLUSTER_NAME = "ac"

# Assumptions (no public source): how far a login's timestamp may be from the server's clock,
# and the envelope codes for the three ways a login can be refused.
TIMESTAMP_WINDOW_SECONDS = 300.0
CODE_WRONG_KEYS = "10101"
CODE_BAD_SIGNATURE = "10102"
CODE_STALE_TIMESTAMP = "10103"
AUTH_MESSAGES: Mapping[str, str] = {
    CODE_WRONG_KEYS: "用户名或密钥错误",
    CODE_BAD_SIGNATURE: "签名校验失败",
    CODE_STALE_TIMESTAMP: "时间戳已过期",
}


@dataclass(frozen=True, slots=True)
class Region:
    """A region (区域) of the account; an unavailable one is answered with a null token."""

    name: str
    cluster_id: str
    available: bool = True


# Names follow the platform's style; the ids and the region in arrears are invented.
DEFAULT_REGIONS: tuple[Region, ...] = (
    Region("华东一区【昆山】", "11112"),
    Region("西北一区【西安】", "11276"),
    Region("华南一区【广州】", "11245", available=False),
)


def signature(secret_key: str, *, access_key: str, timestamp: str, user: str) -> str:
    """The documented AK/SK signature: HMAC-SHA256 over compact JSON, as lowercase hex."""
    # Keys in this order, no spaces; non-ASCII left as is (an assumption: the platform is not
    # documented to escape it).
    text = json.dumps(
        {"accessKey": access_key, "timestamp": timestamp, "user": user},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenBook:
    """Issues HS256 JWT-shaped tokens, one region each, and knows when each one expires."""

    _HEADER = _b64(b'{"alg":"HS256","typ":"JWT"}')

    def __init__(
        self,
        *,
        secret: bytes,
        clock: Callable[[], float],
        claims: Mapping[str, str],
        default_cluster: str,
        fixed: str | None,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self._claims = dict(claims)
        self._default_cluster = default_cluster
        self._serial = 0
        # Verified tokens only, so the hot path is one dict lookup; forged ones are not kept.
        self._known: dict[str, tuple[float, str]] = {}
        if fixed is not None:
            self._known[fixed] = (math.inf, default_cluster)

    def issue(self, ttl: float, *, cluster_id: str | None = None) -> str:
        """A signed token for a region, expiring ``ttl`` wall-clock seconds from now."""
        cluster = self._default_cluster if cluster_id is None else cluster_id
        self._serial += 1
        expire_ms = int((self._clock() + ttl) * 1000)
        payload = {
            **self._claims,
            "clusterId": cluster,
            "expireTime": str(expire_ms),
            "jti": str(self._serial),
        }
        signing_input = f"{self._HEADER}.{_b64(json.dumps(payload).encode())}"
        token = f"{signing_input}.{_b64(self._sign(signing_input))}"
        self._known[token] = (expire_ms / 1000, cluster)
        return token

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest()

    def _lookup(self, token: str) -> tuple[float, str] | None:
        known = self._known.get(token)
        if known is not None:
            return known
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            given = _unb64(parts[2])
            payload = json.loads(_unb64(parts[1]))
            entry = (int(payload["expireTime"]) / 1000, str(payload["clusterId"]))
        except (ValueError, KeyError, TypeError):
            return None
        if not hmac.compare_digest(given, self._sign(f"{parts[0]}.{parts[1]}")):
            return None
        self._known[token] = entry
        return entry

    def expiry(self, token: str) -> float | None:
        """Wall-clock expiry of a token this simulator signed, or None for anything else."""
        entry = self._lookup(token)
        return None if entry is None else entry[0]

    def cluster_of(self, token: str) -> str | None:
        """The region (cluster id) a token this simulator signed belongs to."""
        entry = self._lookup(token)
        return None if entry is None else entry[1]

    def is_valid(self, token: str | None) -> bool:
        """Whether ``token`` is good for platform calls now (any region, the platform's too)."""
        entry = None if token is None else self._lookup(token)
        return entry is not None and self._clock() < entry[0]

    def is_region_token(self, token: str | None) -> bool:
        """Whether ``token`` may call the container APIs now (valid, and not the platform's)."""
        entry = None if token is None else self._lookup(token)
        return entry is not None and entry[1] != PLATFORM_CLUSTER_ID and self._clock() < entry[0]

    def is_renewable(self, token: str | None) -> bool:
        """Whether ``token`` may be traded for a new one (at most 24 h past its expiry)."""
        expiry = None if token is None else self.expiry(token)
        return expiry is not None and self._clock() <= expiry + RENEWAL_GRACE_SECONDS

    def renew(self, token: str | None, ttl: float) -> str | None:
        """A new token for the same region, or None when ``token`` cannot be renewed."""
        if token is None or not self.is_renewable(token):
            return None
        return self.issue(ttl, cluster_id=self.cluster_of(token))

    def expire(self, token: str) -> None:
        """Treat ``token`` as expired from now on."""
        entry = self._lookup(token)
        if entry is None:
            raise ValueError("not a token this simulator issued or accepts")
        self._known[token] = (min(entry[0], self._clock()), entry[1])


@dataclass(frozen=True, slots=True)
class Account:
    """The one user the simulator knows, with the key pair and the password it accepts."""

    user: str
    access_key: str
    secret_key: str
    password: str
    org_id: str

    def __repr__(self) -> str:
        return f"Account(user={self.user!r}, access_key={self.access_key!r})"

    @classmethod
    def with_defaults(
        cls,
        user: str,
        access_key: str | None,
        secret_key: str | None,
        password: str | None,
        org_id: str,
    ) -> Account:
        """An account whose key pair and password are the given ones, else freshly generated."""
        return cls(
            user=user,
            access_key=access_key if access_key is not None else secrets.token_hex(16),
            secret_key=secret_key if secret_key is not None else secrets.token_hex(16),
            password=password if password is not None else secrets.token_urlsafe(12),
            org_id=org_id,
        )


def first_available(regions: Sequence[Region]) -> Region:
    """The region ``sim.token`` belongs to; ValueError unless the regions make sense."""
    usable = [region for region in regions if region.available]
    if not usable or any(r.cluster_id == PLATFORM_CLUSTER_ID for r in regions):
        raise ValueError("regions need at least one available region, none with id '0'")
    return usable[0]


class Login:
    """The two token endpoints' decisions: who may log in, and the per-region answer."""

    def __init__(
        self,
        *,
        account: Account,
        tokens: TokenBook,
        regions: Sequence[Region],
        clock: Callable[[], float],
        ttl: Callable[[], float],
        window: float = TIMESTAMP_WINDOW_SECONDS,
    ) -> None:
        self._account = account
        self._tokens = tokens
        self._regions = tuple(regions)
        self._clock = clock
        self._ttl = ttl
        self._window = window

    def with_keys(self, headers: Mapping[str, str]) -> str | list[dict[str, Any]]:
        """The AK/SK endpoint: the per-region answer, or the envelope code that refuses it."""
        values = [headers.get(name) for name in ("user", "accessKey", "timestamp", "signature")]
        if not all(values):
            return "10003"
        user, access_key, timestamp, signed = (str(v) for v in values)
        account = self._account
        if not (
            hmac.compare_digest(user.encode(), account.user.encode())
            and hmac.compare_digest(access_key.encode(), account.access_key.encode())
        ):
            return CODE_WRONG_KEYS
        try:
            moment = float(timestamp)
        except ValueError:
            return CODE_STALE_TIMESTAMP
        if not (math.isfinite(moment) and abs(self._clock() - moment) <= self._window):
            return CODE_STALE_TIMESTAMP
        expected = signature(
            account.secret_key, access_key=access_key, timestamp=timestamp, user=user
        )
        if not hmac.compare_digest(signed.lower().encode(), expected.encode()):
            return CODE_BAD_SIGNATURE
        return self.answer()

    def with_password(self, headers: Mapping[str, str]) -> str | list[dict[str, Any]]:
        """The legacy endpoint: ``user``, ``password`` and ``orgId`` headers."""
        values = [headers.get(name) for name in ("user", "password", "orgId")]
        if not all(values):
            return "10003"
        given = "\n".join(str(v) for v in values).encode()
        account = self._account
        wanted = f"{account.user}\n{account.password}\n{account.org_id}".encode()
        return self.answer() if hmac.compare_digest(given, wanted) else CODE_WRONG_KEYS

    def answer(self) -> list[dict[str, Any]]:
        """Fresh tokens: the platform's first, then one per region (null when unavailable)."""
        ttl = self._ttl()
        entries: list[dict[str, Any]] = [
            {
                "clusterName": PLATFORM_CLUSTER_NAME,
                "clusterId": PLATFORM_CLUSTER_ID,
                "token": self._tokens.issue(ttl, cluster_id=PLATFORM_CLUSTER_ID),
            }
        ]
        for region in self._regions:
            token = (
                self._tokens.issue(ttl, cluster_id=region.cluster_id) if region.available else None
            )
            entries.append(
                {"clusterName": region.name, "clusterId": region.cluster_id, "token": token}
            )
        return entries


def center_data(
    cluster_id: str | None, *, regions: Sequence[Region], base_url: str, user: str
) -> dict[str, Any]:
    """The center endpoint's ``data`` for a token's region: its AI URLs and the user's info.

    Every region is served by this one simulator (they share one world), so each enabled
    ``aiUrls`` entry is ``{base_url}/ai``; the second entry is disabled and points at a path
    the simulator does not serve. The platform's own token gets no AI URLs (an assumption).
    """
    names = {region.cluster_id: region.name for region in regions}
    ai_urls: list[dict[str, str]] = []
    if cluster_id != PLATFORM_CLUSTER_ID:
        ai_urls = [
            {"enable": "true", "version": "2.0", "url": f"{base_url}/ai"},
            {"enable": "false", "version": "1.0", "url": f"{base_url}/offline/ai"},
        ]
    return {
        "clusterId": cluster_id,
        "clusterName": names.get(cluster_id or "", PLATFORM_CLUSTER_NAME),
        "aiUrls": ai_urls,
        "clusterUserInfo": {"userName": user, "homePath": f"/public/home/{user}"},
    }
