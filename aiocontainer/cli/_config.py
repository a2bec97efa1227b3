"""Where the API is and who we are: base URL, token, client, ids and logging from argv and env."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aiocontainer import (
    AiocontainerError,
    ContainerClient,
    PermissionDeniedError,
    TransportError,
)
from aiocontainer.cli._exits import UsageError


def setting(args: argparse.Namespace, name: str, env: str | None = None) -> Any:
    """An option's value, else the environment variable's, else None."""
    value = getattr(args, name, None)
    if value is None and env is not None:
        value = os.environ.get(env) or None
    return value


def resolve_token(args: argparse.Namespace) -> str:
    """The token from --token-file, --token, AIOCONTAINER_TOKEN_FILE or AIOCONTAINER_TOKEN.

    The command line wins over the environment; within each, a file wins over a bare token.
    """
    path = getattr(args, "token_file", None)
    token = getattr(args, "token", None)
    if not path and not token:
        path = os.environ.get("AIOCONTAINER_TOKEN_FILE") or None
        token = os.environ.get("AIOCONTAINER_TOKEN") or None
    if path:
        try:
            token = Path(path).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(
                f"the token file {path} is not UTF-8 text: is it the right file? "
                "It should hold the token alone, on one line"
            ) from None
        if not token:
            raise UsageError(f"the token file {path} is empty")
        return token
    if not token:
        raise UsageError(
            "no token: pass --token-file PATH, or set AIOCONTAINER_TOKEN "
            "(try 'aiocontainer simulate' for a local one)"
        )
    return str(token).strip()


def base_url_of(args: argparse.Namespace) -> str | None:
    """The base URL from --base-url or AIOCONTAINER_BASE_URL."""
    value = setting(args, "base_url", "AIOCONTAINER_BASE_URL")
    return str(value) if value else None


def give_up_hint(exc: BaseException, *, reached: bool, base_url: str | None) -> str | None:
    """Why polling on cannot help, or None: a refused token, or a base URL never reached.

    A refused token (10008) stays refused, whenever it comes. A transport failure ends the
    command only before the platform ever answered; after that it is a blip, and polling goes on.
    """
    if isinstance(exc, PermissionDeniedError):
        return (
            "the platform refused the token (code 10008): check --token-file, --token, "
            "AIOCONTAINER_TOKEN_FILE or AIOCONTAINER_TOKEN; a token expires, so fetch a fresh one"
        )
    if isinstance(exc, TransportError) and not reached:
        where = base_url or "the base URL"
        return f"cannot reach {where}: check --base-url or AIOCONTAINER_BASE_URL"
    return None


def make_client(args: argparse.Namespace) -> ContainerClient:
    """A ContainerClient from the command line and the environment."""
    base_url = base_url_of(args)
    if not base_url:
        raise UsageError(
            "no base URL: pass --base-url or set AIOCONTAINER_BASE_URL "
            "(e.g. https://api01.example.com:65106)"
        )
    token = resolve_token(args)
    options: dict[str, Any] = {}
    if getattr(args, "timeout", None) is not None:
        options["timeout"] = args.timeout
    if getattr(args, "concurrency", None) is not None:
        options["concurrency"] = args.concurrency
    try:
        return ContainerClient(base_url, token=token, **options)
    except (ValueError, AiocontainerError) as exc:
        raise UsageError(str(exc)) from None


class _Redact(logging.Filter):
    """Blank the token out of any log record, ours or a dependency's."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret and self.secret in message:
            record.msg = message.replace(self.secret, "***")
            record.args = None
        return True


def setup_logging(verbosity: int, secret: str | None) -> None:
    """Log to stderr at WARNING (-v) or DEBUG (-vv); nothing without -v."""
    if not verbosity:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if secret:
        handler.addFilter(_Redact(secret))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    logging.getLogger("aiocontainer").setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
