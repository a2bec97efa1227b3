"""Asyncio client for the SCNet AI platform's container-instance API.

Look up one instance, look up thousands at once, or watch them change status::

    async with ContainerClient(base_url, token=token) as client:
        detail = await client.get_instance(instance_id)
"""

import logging as _logging

from aiocontainer._health import HealthReport, InstanceHealth, WatcherStats
from aiocontainer._paging import DetailCache, ListPage
from aiocontainer._version import __version__
from aiocontainer.auth import Credentials, Region, ScnetAuth
from aiocontainer.client import ClientStats, ContainerClient, Result, TokenProvider
from aiocontainer.errors import (
    AiocontainerError,
    ApiAccessDeniedError,
    ApiError,
    AuthError,
    ChangesDroppedError,
    CheckpointError,
    CheckpointLockedError,
    ClientClosedError,
    ConnectionInterruptedApiError,
    CredentialsError,
    FileCheckError,
    FileTooLargeError,
    HTTPStatusError,
    InstanceGoneError,
    InstanceRecoveredNotice,
    InstanceStaleError,
    InternalApiError,
    InvalidInstanceIdError,
    InvalidParameterError,
    ListEntryError,
    LoginError,
    MissingParameterError,
    PermissionDeniedError,
    RegionNotFoundError,
    RegionUnavailableError,
    ResponseError,
    SyncTimeoutError,
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
    "AuthError",
    "ChangeStream",
    "ChangesDroppedError",
    "CheckpointError",
    "CheckpointLockedError",
    "ClientClosedError",
    "ClientStats",
    "ConnectionInterruptedApiError",
    "ContainerClient",
    "Credentials",
    "CredentialsError",
    "DetailCache",
    "FileCheckError",
    "FileTooLargeError",
    "HTTPStatusError",
    "HealthReport",
    "InstanceDetail",
    "InstanceGoneError",
    "InstanceHealth",
    "InstanceRecoveredNotice",
    "InstanceStaleError",
    "InstanceStatus",
    "InstanceWatcher",
    "InternalApiError",
    "InvalidInstanceIdError",
    "InvalidParameterError",
    "ListEntryError",
    "ListPage",
    "LoginError",
    "MissingParameterError",
    "MountInfo",
    "PermissionDeniedError",
    "PortInfo",
    "Region",
    "RegionNotFoundError",
    "RegionUnavailableError",
    "ResponseError",
    "Result",
    "ScnetAuth",
    "StatusChange",
    "SyncTimeoutError",
    "TokenError",
    "TokenProvider",
    "TransportError",
    "UserFrozenError",
    "WaitError",
    "WaitFailedError",
    "WaitTimeoutError",
    "WatcherStats",
    "__version__",
]
