"""Look up one instance and print a few of its fields."""

import asyncio

from _platform import connect, parser

from aiocontainer import ContainerClient


async def main() -> None:
    args = parser(__doc__).parse_args()
    async with (
        connect(args) as platform,
        ContainerClient(platform.base_url, token=platform.token) as client,
    ):
        detail = await client.get_instance(platform.instance_ids[0])
        print(f"{detail.id}  {detail.instance_service_name}  {detail.status}")
        print(f"  {detail.resource_spec}, image {detail.version}, created {detail.create_time}")
        for port in detail.container_port_info_list:
            print(f"  port {port.container_port}/{port.protocol_type}: {port.access_url}")


if __name__ == "__main__":
    asyncio.run(main())
