"""Checks of constructor and call options, shared by the client and the watcher.

This module imports only the standard library.
"""

from __future__ import annotations

__all__ = ["require", "sendable"]


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``: the check of every option."""
    if not condition:
        raise ValueError(message)


def sendable(text: str) -> bool:
    """Whether ``text`` can be sent as UTF-8: a lone surrogate (from ``"\\ud800"``, or from
    undecodable bytes on a command line) cannot, and would reach the server as something else."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
