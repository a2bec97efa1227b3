"""Asyncio client for the SCNet AI platform's container-instance API.

Look up one instance, look up thousands at once, or watch them change status::

    async with ContainerClient(base_url, token=token) as client:
        detail = await client.get_instance(instance_id)
"""

import logging as _logging

__version__ = "0.1.0"

from aiocontainer.client import ClientStats, ContainerClient, Result, TokenProvider
from aiocontainer.errors import (
    AiocontainerError,
    ApiAccessDeniedError,
    ApiError,
    ChangesDroppedError,
    CheckpointError,
    CheckpointLockedError,
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
from aiocontainer.watcher import ChangeStream, InstanceWatcher

# A library stays quiet unless the application configures logging.
_logging.getLogger("aiocontainer").addHandler(_logging.NullHandler())

__all__ = [
    "AiocontainerError",
    "ApiAccessDeniedError",
    "ApiError",
    "ChangeStream",
    "ChangesDroppedError",
    "CheckpointError",
    "CheckpointLockedError",
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
    "InstanceWatcher",
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
