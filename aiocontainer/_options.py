"""Checks of constructor and call options, shared by the client and the watcher.

This module imports only the standard library.
"""

from __future__ import annotations

__all__ = ["require"]


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: the check of every option."""
    if not condition:
        raise ValueError(message)
