"""One wrapper for every secret the package holds: the token, the secret key, the password.

Rule 1: a ``Secret``'s ``repr`` and ``str`` name its kind and show ``***``, so neither a log line,
        an error message nor the frame locals an error reporter records can show the value.
Rule 2: only ``reveal()`` gives the value, at the one place that must send or sign with it.
No I/O, no asyncio: the pure modules use it too.
"""

from __future__ import annotations

__all__ = ["Secret"]


class Secret:
    """A secret string kept out of reprs, so out of frame locals an error reporter may record."""

    __slots__ = ("_kind", "_value")

    def __init__(self, value: str, kind: str = "token") -> None:
        self._value = value
        self._kind = kind

    def reveal(self) -> str:
        """The secret itself, for the one request header or signature that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"<{self._kind} ***>"

    __str__ = __repr__
