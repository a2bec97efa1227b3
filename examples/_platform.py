"""Where the examples connect: a real platform from --base-url/--token (or the environment),
or else an embedded simulator started on 127.0.0.1 for the length of the example."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator

import attrs

from aiocontainer.simulator import Simulator


@attrs.frozen
class Platform:
    """A base URL, a token, and some instance ids to look at."""

    base_url: str
    token: str
    instance_ids: list[str]
    simulator: Simulator | None = None


def parser(description: str) -> argparse.ArgumentParser:
    """The options every example takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--base-url",
        default=os.environ.get("AIOCONTAINER_BASE_URL"),
        help="the platform's API base URL (env AIOCONTAINER_BASE_URL); "
        "with no base URL and token, the example starts its own simulator",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("AIOCONTAINER_TOKEN"),
        help="the platform's token (env AIOCONTAINER_TOKEN)",
    )
    p.add_argument("ids", nargs="*", help="instance ids (default: the simulator's)")
    return p


@contextlib.asynccontextmanager
async def connect(
    args: argparse.Namespace, *, instances: int = 5, speed: float = 20.0
) -> AsyncIterator[Platform]:
    """Yield the real platform if a base URL and token were given, else a fresh simulator."""
    if args.base_url and args.token:
        if not args.ids:
            raise SystemExit("with --base-url and --token, name the instance ids to look at")
        yield Platform(args.base_url, args.token, list(args.ids))
        return
    async with Simulator(instances=instances, seed=3, speed=speed) as sim:
        ids = list(args.ids) or sim.instance_ids
        yield Platform(sim.base_url, sim.token, ids, sim)
