"""Watch with a checkpoint: a restarted watcher reports what changed while it was down."""

import argparse
import asyncio
import tempfile
from pathlib import Path

from _platform import connect, parser

from aiocontainer import ContainerClient, InstanceWatcher, StatusChange


def show(change: StatusChange) -> None:
    previous = change.previous or "first seen"
    print(f"  {change.instance_id}: {previous} -> {change.current} (#{change.seq})")


async def main() -> None:
    args = parser(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        await watch_twice(args, Path(scratch) / "watch.json")


async def watch_twice(args: argparse.Namespace, checkpoint: Path) -> None:
    async with (
        connect(args, instances=4, speed=30.0) as platform,
        ContainerClient(platform.base_url, token=platform.token) as client,
    ):
        ids = platform.instance_ids
        print("first watcher:")
        first = InstanceWatcher(client, ids, interval=0.5, checkpoint=checkpoint)
        first.on_change(show)
        async with first:
            await asyncio.sleep(2)
        print(f"stopped; {checkpoint} remembers {len(first.snapshot())} statuses")
        await asyncio.sleep(3)  # nothing watches while the instances move on
        print("second watcher, same checkpoint:")
        second = InstanceWatcher(client, ids, interval=0.5, checkpoint=checkpoint)
        second.on_change(show)
        async with second:
            await asyncio.sleep(1.5)


if __name__ == "__main__":
    asyncio.run(main())
