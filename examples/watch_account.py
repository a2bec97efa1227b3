"""List the whole account, then watch every instance in it (new ones included) until all have
ended. On the embedded simulator an instance is created while watching, to show it is picked up.
Instance ids are not taken: the list says what there is. Ctrl-C stops it early."""

import asyncio
from collections import Counter

from _platform import connect, parser

from aiocontainer import ContainerClient, InstanceWatcher, StatusChange


async def main() -> None:
    options = parser(__doc__)
    args = options.parse_args()
    if args.ids:
        options.error("this example watches the whole account: name no instance ids")
    async with (
        connect(args, instances=4, speed=60.0) as platform,
        ContainerClient(platform.base_url, token=platform.token) as client,
    ):
        statuses = Counter([detail.status async for detail in client.list_instances()])
        listed = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
        print(f"the account lists {statuses.total()} instances: {listed or 'none'}")

        watcher = InstanceWatcher(client, watch_all=True, interval=0.5, stop_when_all_terminal=True)

        @watcher.on_change
        def changed(change: StatusChange) -> None:
            print(f"{change.instance_id}: {change.previous or 'first seen'} -> {change.current}")

        @watcher.on_error
        def failed(instance_id: str | None, exc: Exception) -> None:
            print(f"  {instance_id or 'a list page'}: {type(exc).__name__}: {exc}")

        running = asyncio.create_task(watcher.run())
        # Synced: a pass has listed the whole account and every instance in it was seen.
        await watcher.wait_synced()
        print(f"watching all {len(watcher.ids)} instances")
        if platform.simulator is not None:
            print(f"created {platform.simulator.create_instance()} while watching")
        await running
        print(f"all {len(watcher.ids)} instances have ended")


if __name__ == "__main__":
    asyncio.run(main())
