"""Asyncio client for the SCNet AI platform's container-instance API.

Look up one instance, look up thousands at once, or watch them change status::

    async with ContainerClient(base_url, token=token) as client:
        detail = await client.get_instance(instance_id)
"""

__version__ = "0.1.0"

from aiocontainer.client import ClientStats, ContainerClient, Result, TokenProvider
from aiocontainer.errors import (
    AiocontainerError,
    ApiAccessDeniedError,
    ApiError,
    ClientClosedError,
    ConnectionInterruptedApiError,
    FileCheckError,
    FileTooLargeError,
    HTTPStatusError,
    InstanceGoneError,
    InternalApiError,
    InvalidInstanceIdError,
    InvalidParameterError,
    MissingParameterError,
    PermissionDeniedError,
    ResponseError,
    TokenError,
    TransportError,
    UserFrozenError,
    WaitError,
    WaitFailedError,
    WaitTimeoutError,
)
from aiocontainer.models import InstanceDetail, InstanceStatus, MountInfo, PortInfo, StatusChange

__all__ = [
    "AiocontainerError",
    "ApiAccessDeniedError",
    "ApiError",
    "ClientClosedError",
    "ClientStats",
    "ConnectionInterruptedApiError",
    "ContainerClient",
    "FileCheckError",
    "FileTooLargeError",
    "HTTPStatusError",
    "InstanceDetail",
    "InstanceGoneError",
    "InstanceStatus",
    "InternalApiError",
    "InvalidInstanceIdError",
    "InvalidParameterError",
    "MissingParameterError",
    "MountInfo",
    "PermissionDeniedError",
    "PortInfo",
    "ResponseError",
    "Result",
    "StatusChange",
    "TokenError",
    "TokenProvider",
    "TransportError",
    "UserFrozenError",
    "WaitError",
    "WaitFailedError",
    "WaitTimeoutError",
    "__version__",
]
