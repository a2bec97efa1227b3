"""The access-key signature of the platform's token endpoint, without I/O.

Rule 1: the string to sign is the compact JSON text
        ``{"accessKey":"<AK>","timestamp":"<seconds>","user":"<user>"}``: those keys in that order,
        no spaces, values escaped as JSON strings.
Rule 2: the signature is HMAC-SHA256 keyed with the UTF-8 bytes of the secret key over the UTF-8
        bytes of that text, as lowercase hex. The secret key itself is never part of the result.
Rule 3: values with control characters are refused before anything is signed, so the JSON escaping
        and the platform's own (which escapes only backslash and double quote) cannot disagree.

This module imports only the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Final

__all__ = ["LOGIN_PATH", "check_header_value", "sign", "signed_headers", "string_to_sign"]

#: The access-key token endpoint, under the platform's API host.
LOGIN_PATH: Final = "/api/user/v3/tokens"


def check_header_value(name: str, value: object) -> str:
    """Return ``value`` if it is a non-empty string without control characters, else raise.

    ``ValueError`` names the field, never the value (it may be a secret).
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{name} must not contain control characters or line breaks")
    return value


def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def string_to_sign(access_key: str, timestamp: str, user: str) -> str:
    """The exact text the signature covers (Rule 1)."""
    return (
        f'{{"accessKey":{_quoted(access_key)},"timestamp":{_quoted(timestamp)},'
        f'"user":{_quoted(user)}}}'
    )


def sign(*, access_key: str, secret_key: str, user: str, timestamp: str) -> str:
    """The lowercase hex HMAC-SHA256 signature of the token request (Rule 2)."""
    message = string_to_sign(access_key, timestamp, user).encode("utf-8")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_headers(
    *, user: str, access_key: str, secret_key: str, timestamp: float
) -> dict[str, str]:
    """The four headers of an access-key token request made at ``timestamp`` (epoch seconds)."""
    seconds = str(int(timestamp))
    return {
        "user": user,
        "accessKey": access_key,
        "timestamp": seconds,
        "signature": sign(
            access_key=access_key, secret_key=secret_key, user=user, timestamp=seconds
        ),
    }
