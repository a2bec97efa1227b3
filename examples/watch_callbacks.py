"""Watch instances and react to changes with filtered callbacks and an error handler."""

import asyncio

from _platform import connect, parser

from aiocontainer import ContainerClient, InstanceStatus, InstanceWatcher, StatusChange


async def main() -> None:
    args = parser(__doc__).parse_args()
    async with (
        connect(args, instances=6, speed=30.0) as platform,
        ContainerClient(platform.base_url, token=platform.token) as client,
    ):
        watcher = InstanceWatcher(
            client, platform.instance_ids, interval=0.5, stop_when_all_terminal=True
        )

        @watcher.on_change
        def every_change(change: StatusChange) -> None:
            previous = change.previous or "first seen"
            print(f"{change.instance_id}: {previous} -> {change.current}")

        @watcher.on_change(to=InstanceStatus.RUNNING)
        async def now_running(change: StatusChange) -> None:
            ports = [p.access_url for p in change.detail.container_port_info_list]
            print(f"  {change.instance_id} is up: {ports}")

        @watcher.on_change(to=[InstanceStatus.FAILED, InstanceStatus.TERMINATED])
        def went_wrong(change: StatusChange) -> None:
            print(f"  {change.instance_id} ended badly ({change.current})")

        @watcher.on_error
        def poll_failed(instance_id: str | None, exc: Exception) -> None:
            print(f"  poll of {instance_id} failed, last status stands: {exc}")

        await watcher.run()
        print("all instances are terminal")


if __name__ == "__main__":
    asyncio.run(main())
