"""Argument types and the connection options shared by the commands that talk to the API."""

from __future__ import annotations

import argparse

from aiocontainer._options import sendable
from aiocontainer.models import InstanceStatus

#: The documented statuses in lifecycle order, as the command line offers and suggests them.
DOCUMENTED_STATUSES = (
    InstanceStatus.WAITING,
    InstanceStatus.DEPLOYING,
    InstanceStatus.RUNNING,
    InstanceStatus.COMPLETED,
    InstanceStatus.FAILED,
    InstanceStatus.TERMINATED,
)


def _parsed(text: str, kind: type[float] | type[int]) -> float:
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def _refuse(text: str, rule: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"must be {rule}: {text!r}")


def positive_float(text: str) -> float:
    """A finite number above zero."""
    value = _parsed(text, float)
    if not 0 < value < float("inf"):
        raise _refuse(text, "a positive number")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = int(_parsed(text, int))
    if value < 1:
        raise _refuse(text, "at least 1")
    return value


def instance_name(text: str) -> str:
    """A name to filter on: not empty, and text that can be sent (bytes that are not UTF-8 on a
    command line arrive as lone surrogates, which would reach the server as something else)."""
    if not text or not sendable(text):
        raise _refuse(text, "a non-empty name in UTF-8")
    return text


def fraction(text: str) -> float:
    """A number between 0 and 1."""
    value = _parsed(text, float)
    if not 0 <= value <= 1:
        raise _refuse(text, "between 0 and 1")
    return value


def statuses(text: str) -> tuple[str, ...]:
    """A comma-separated list of statuses, at least one."""
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    if not items:
        raise argparse.ArgumentTypeError("name at least one status, e.g. Running")
    return items


# SUPPRESS lets the same options stand before or after the command name: an option given before
# the command is not overwritten by the sub-parser's default.


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-vv``: log to stderr."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log to stderr: -v retries and warnings, -vv every request (the token never appears)",
    )


def connection_options(*, request_timeout: bool = True) -> argparse.ArgumentParser:
    """A parent parser with the options that say where the API is and how to reach it."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--base-url",
        default=argparse.SUPPRESS,
        help="API base URL (env AIOCONTAINER_BASE_URL), e.g. https://api01.example.com:65106",
    )
    group.add_argument(
        "--token-file",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="read the token from this file (env AIOCONTAINER_TOKEN_FILE); the safest way",
    )
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="the token itself (env AIOCONTAINER_TOKEN); a token on the command line ends up "
        "in your shell history and the process list, so prefer --token-file or the env var",
    )
    if request_timeout:
        group.add_argument(
            "--timeout",
            type=positive_float,
            default=argparse.SUPPRESS,
            metavar="S",
            help="seconds per request attempt (default 10)",
        )
    group.add_argument(
        "--concurrency",
        type=positive_int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="requests in flight at once (default 32)",
    )
    from aiocontainer.cli.regions import add_options as add_region_options

    add_region_options(group)
    add_verbose(common)
    return common


def local_options() -> argparse.ArgumentParser:
    """A parent parser for commands that bring their own simulator: only ``-v``."""
    common = argparse.ArgumentParser(add_help=False)
    add_verbose(common)
    return common


CONNECTION_OPTIONS: tuple[str, ...] = ("base_url", "token", "token_file", "timeout", "concurrency")
CONNECTION_OPTIONS += ("region", "profile", "auth_url", "platform_url")
