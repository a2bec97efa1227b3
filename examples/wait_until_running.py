"""Wait until an instance is Running, or fail if it ends first."""

import asyncio

from _platform import connect, parser

from aiocontainer import ContainerClient, InstanceWatcher, WaitFailedError, WaitTimeoutError


async def main() -> int:
    args = parser(__doc__).parse_args()
    async with (
        connect(args, instances=3, speed=30.0) as platform,
        ContainerClient(platform.base_url, token=platform.token) as client,
    ):
        instance_id = platform.instance_ids[0]
        watcher = InstanceWatcher(client, [instance_id], interval=0.5)
        try:
            detail = await watcher.wait_for(instance_id, "Running", timeout=120)
        except WaitFailedError as exc:
            print(f"{instance_id} ended as {exc.last_detail.status} after {exc.history}")
            return 1
        except WaitTimeoutError as exc:
            print(f"{instance_id} still {exc.history[-1] if exc.history else 'unknown'}")
            return 3
        print(f"{instance_id} is {detail.status} since {detail.start_time}")
        return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
