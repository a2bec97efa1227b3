"""The simulator's tokens: HS256 JWT-shaped tokens it signs, and when each one expires.

Rule 1: no I/O and no clock of its own: wall time arrives through a callable handed in.
Rule 2: a token is valid only if this simulator signed it (or it is the fixed token) and its
expiry has not passed; a forged or foreign token is never remembered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping

__all__ = ["RENEWAL_GRACE_SECONDS", "TokenBook"]

RENEWAL_GRACE_SECONDS = 24 * 3600.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenBook:
    """Issues HS256 JWT-shaped tokens and knows when each one expires, in wall-clock seconds."""

    _HEADER = _b64(b'{"alg":"HS256","typ":"JWT"}')

    def __init__(
        self,
        *,
        secret: bytes,
        wall_clock: Callable[[], float],
        claims: Mapping[str, str],
        fixed: str | None,
    ) -> None:
        self._secret = secret
        self._wall_clock = wall_clock
        self._claims = dict(claims)
        self._serial = 0
        # Verified tokens only, so the hot path is one dict lookup; forged ones are not kept.
        self._expiry: dict[str, float] = {}
        if fixed is not None:
            self._expiry[fixed] = math.inf

    def issue(self, ttl: float) -> str:
        """A signed token expiring ``ttl`` wall-clock seconds from now."""
        self._serial += 1
        expire_ms = int((self._wall_clock() + ttl) * 1000)
        payload = {**self._claims, "expireTime": str(expire_ms), "jti": str(self._serial)}
        signing_input = f"{self._HEADER}.{_b64(json.dumps(payload).encode())}"
        token = f"{signing_input}.{_b64(self._sign(signing_input))}"
        self._expiry[token] = expire_ms / 1000
        return token

    def _sign(self, signing_input: str) -> bytes:
        return hmac.new(self._secret, signing_input.encode(), hashlib.sha256).digest()

    def expiry(self, token: str) -> float | None:
        """Wall-clock expiry of a token this simulator signed, or None for anything else."""
        known = self._expiry.get(token)
        if known is not None:
            return known
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            signature = _unb64(parts[2])
            payload = json.loads(_unb64(parts[1]))
            expire_ms = int(payload["expireTime"])
        except (ValueError, KeyError, TypeError):
            return None
        if not hmac.compare_digest(signature, self._sign(f"{parts[0]}.{parts[1]}")):
            return None
        self._expiry[token] = expire_ms / 1000
        return expire_ms / 1000

    def is_valid(self, token: str | None) -> bool:
        """Whether the API accepts ``token`` now."""
        if token is None:
            return False
        expiry = self._expiry.get(token)
        if expiry is None:
            expiry = self.expiry(token)
        return expiry is not None and self._wall_clock() < expiry

    def is_renewable(self, token: str | None) -> bool:
        """Whether ``token`` may be traded for a new one (at most 24 h past its expiry)."""
        expiry = None if token is None else self.expiry(token)
        return expiry is not None and self._wall_clock() <= expiry + RENEWAL_GRACE_SECONDS

    def expire(self, token: str) -> None:
        """Treat ``token`` as expired from now on."""
        expiry = self.expiry(token)
        if expiry is None:
            raise ValueError("not a token this simulator issued or accepts")
        self._expiry[token] = min(expiry, self._wall_clock())
