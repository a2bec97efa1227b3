"""Look up thousands of instances at once, printing each result as it arrives."""

import asyncio
import time
from collections import Counter
from contextlib import aclosing

from _platform import connect, parser

from aiocontainer import AiocontainerError, ContainerClient


async def main() -> None:
    args = parser(__doc__).parse_args()
    async with (
        connect(args, instances=2000) as platform,
        ContainerClient(platform.base_url, token=platform.token, concurrency=64) as client,
    ):
        ids = platform.instance_ids
        started = time.perf_counter()
        statuses: Counter[str] = Counter()
        done = failed = 0
        async with aclosing(client.iter_instances(ids)) as results:
            async for instance_id, result in results:
                done += 1
                if isinstance(result, AiocontainerError):
                    failed += 1
                    print(f"{instance_id}: {result}")
                else:
                    statuses[result.status] += 1
                if done % 500 == 0:
                    print(f"{done} of {len(ids)} done")
        elapsed = time.perf_counter() - started
        print(f"{len(ids)} instances in {elapsed:.2f} s, {failed} failed: {dict(statuses)}")


if __name__ == "__main__":
    asyncio.run(main())
