"""The health side of the watcher's facade: ``health()``, ``stats`` and ``wait_synced()``.

Rule 1: everything here reads the watcher's ``HealthMonitor``; nothing reaches into the rest of
        the watcher, so the facade only has to hold a monitor and a ``sleep``.
Rule 2: ``wait_synced`` reads time only through the injected ``sleep`` and leaves no task behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiocontainer._health import HealthMonitor, HealthReport, WatcherStats
from aiocontainer._options import require
from aiocontainer.errors import SyncTimeoutError

__all__ = ["HealthView", "wait_synced"]


class HealthView:
    """How well a watcher sees: a report, counters, and a wait for the first full observation.

    While it runs, an id with no successful poll for ``stale_after`` seconds (default: three
    intervals) is reported once to ``on_error`` as ``InstanceStaleError``, and once as
    ``InstanceRecoveredNotice`` when it is observed again.
    """

    _health: HealthMonitor
    _sleep: Callable[[float], Awaitable[None]]

    def health(self) -> HealthReport:
        """How well the watcher sees now, per id and overall (see ``HealthReport``)."""
        return self._health.report()

    @property
    def stats(self) -> WatcherStats:
        """A copy of the counters: requests, detail polls, sweeps, pages, changes, drops, errors."""
        return self._health.counters.snapshot()

    async def wait_synced(self, *, timeout: float | None = None) -> None:
        """Return once every watched id was observed at least once since the watcher started
        (with ``watch_all``: once a pass has also listed the whole account since).

        Returns at once when that is already so; it does not start the watcher. Raises
        ``SyncTimeoutError`` after ``timeout`` seconds (of the injected ``sleep``).
        """
        await wait_synced(self._health, timeout=timeout, sleep=self._sleep)


async def wait_synced(
    health: HealthMonitor, *, timeout: float | None, sleep: Callable[[float], Awaitable[None]]
) -> None:
    """Return once ``health`` has every watched id observed; ``SyncTimeoutError`` after
    ``timeout`` seconds of ``sleep``."""
    require(timeout is None or timeout >= 0, "timeout must not be negative")
    if health.book.synced:
        return
    synced: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not synced.done():
            synced.set_result(None)

    health.when_synced(wake)
    waits: set[asyncio.Future[None]] = {synced}
    if timeout is not None:
        waits.add(asyncio.ensure_future(sleep(timeout)))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        health.forget_sync_callback(wake)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    if synced.cancelled():
        book = health.book
        listed = not book.listing_due
        raise SyncTimeoutError(unsynced=book.unsynced, timeout=timeout or 0, account_listed=listed)
