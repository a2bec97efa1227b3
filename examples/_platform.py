"""Where the examples connect: a real platform from --base-url/--token (or the environment),
or else an embedded simulator started on 127.0.0.1 for the length of the example.

The simulator is the fallback only when no base URL and token are set. With a platform and no
ids named, the examples take the first instances the platform lists (for example those of a
simulator started with 'aiocontainer simulate' whose exports are in the environment).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator

import attrs

from aiocontainer import ContainerClient
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
        ids = list(args.ids) or await listed_ids(args.base_url, args.token, instances)
        yield Platform(args.base_url, args.token, ids)
        return
    async with Simulator(instances=instances, seed=3, speed=speed) as sim:
        ids = list(args.ids) or sim.instance_ids
        yield Platform(sim.base_url, sim.token, ids, sim)


async def listed_ids(base_url: str, token: str, count: int) -> list[str]:
    """The ids of the first ``count`` instances the platform lists."""
    async with ContainerClient(base_url, token=token) as client:
        if not hasattr(client, "list_instances"):
            raise SystemExit("with --base-url and --token, name the instance ids to look at")
        ids: list[str] = []
        async with contextlib.aclosing(client.list_instances()) as listing:
            async for detail in listing:
                ids.append(detail.id)
                if len(ids) == count:
                    break
    if not ids:
        raise SystemExit("the platform lists no instances: name the instance ids to look at")
    return ids
