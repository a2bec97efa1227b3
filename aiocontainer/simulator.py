"""An embedded stand-in for the SCNet container-instance API, served by aiohttp.web.

It speaks raw JSON dicts and imports nothing from the client side of aiocontainer (models,
converter, errors): it is an independent oracle, so one misreading cannot hide on both sides.

This module is the facade: :class:`Simulator` wires the world (``_sim_world``: clock, instances,
lifecycles, rendering, counts), the faults (``_sim_faults``), the tokens (``_sim_auth``) and the
HTTP layer (``_sim_http``), and starts, suspends, resumes and closes the server. The rules each
part keeps are written at the top of its module.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from aiocontainer._sim_auth import (
    DEFAULT_REGIONS,
    TIMESTAMP_WINDOW_SECONDS,
    Account,
    Login,
    Region,
    TokenBook,
    first_available,
)
from aiocontainer._sim_faults import (
    DEFAULT_FAULT_MIX,
    FAULT_KINDS,
    LIST_FAULT_KEY,
    FaultPlan,
    Latency,
)
from aiocontainer._sim_http import Parts, build_app
from aiocontainer._sim_lifecycle import EPOCH, SEED_INSTANCE_ID
from aiocontainer._sim_world import SimClock, Stats, UnknownInstanceError, World

__all__ = [
    "DEFAULT_FAULT_MIX",
    "DEFAULT_PAGE_CAP",
    "FAULT_KINDS",
    "LIST_FAULT_KEY",
    "SEED_INSTANCE_ID",
    "InstanceIds",
    "Region",
    "Simulator",
    "UnknownInstanceError",
    "main",
]

DAY_SECONDS = 24 * 3600.0
# Assumption: the platform's largest page is undocumented; 100 is what we serve by default.
DEFAULT_PAGE_CAP = 100


class InstanceIds(list[str]):
    """A list of ids that can also be called, so ``sim.instance_ids`` and ``sim.instance_ids()``
    both read the ids (a copy either way)."""

    def __call__(self) -> list[str]:
        return list(self)


class Simulator:
    """The SCNet container-instance API on 127.0.0.1, with moving lifecycles and faults."""

    def __init__(
        self,
        *,
        instances: int = 10,
        seed: int = 0,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        token_ttl: float = DAY_SECONDS,
        secret: bytes | None = None,
        include_seed_instance: bool = True,
        frozen: bool = False,
        fault_rate: float = 0.0,
        fault_kinds: Sequence[str] | Mapping[str, float] = DEFAULT_FAULT_MIX,
        latency: float | Sequence[float] = 0.0,
        slow_latency: float | Sequence[float] = 0.5,
        retry_after: float = 1,
        epoch: datetime = EPOCH,
        user: str = "magic2",
        access_key: str | None = None,
        secret_key: str | None = None,
        password: str | None = None,
        org_id: str = "ORG0001",
        regions: Sequence[Region] = DEFAULT_REGIONS,
        token_clock: Callable[[], float] | None = None,
        timestamp_window: float = TIMESTAMP_WINDOW_SECONDS,
        page_cap: int = DEFAULT_PAGE_CAP,
        churn: int = 0,
        list_total: bool = False,
    ) -> None:
        regions = tuple(regions)
        default_region = first_available(regions)
        self._server = _Server(host, port)
        self._clock = SimClock(clock, speed=speed, frozen=frozen)
        world = World(
            clock=self._clock,
            seed=seed,
            epoch=epoch,
            user=user,
            instances=instances,
            include_seed=include_seed_instance,
        )
        self._token_clock = wall_clock if token_clock is None else token_clock
        tokens = TokenBook(
            secret=secret if secret is not None else secrets.token_bytes(32),
            clock=self._token_clock,
            default_cluster=default_region.cluster_id,
            claims=_claims(user, seed),
            fixed=token,
        )
        self._account = Account.with_defaults(user, access_key, secret_key, password, org_id)
        login = Login(
            account=self._account,
            tokens=tokens,
            regions=regions,
            clock=self._token_clock,
            ttl=lambda: token_ttl,
            window=timestamp_window,
        )
        self._parts = Parts(
            world=world,
            faults=FaultPlan(seed=seed, rate=fault_rate, kinds=fault_kinds),
            latency=Latency(seed=seed, every=latency, slow=slow_latency),
            stats=Stats(),
            tokens=tokens,
            login=login,
            regions=regions,
            user=user,
            token_ttl=token_ttl,
            retry_after=retry_after,
            base_url=lambda: self._server.base_url,
            keep=frozenset({SEED_INSTANCE_ID}),
        )
        self.set_listing(page_cap=page_cap, churn=churn, total=list_total)
        self._world = world
        self._token = token if token is not None else tokens.issue(token_ttl)

    # ----- clock -----------------------------------------------------------------------------

    @property
    def sim_time(self) -> float:
        """Simulated seconds since the simulator was made (stands still while frozen)."""
        return self._clock.now()

    @property
    def sim_datetime(self) -> datetime:
        """The simulated wall time that timestamps are written in."""
        return self._world.epoch + timedelta(seconds=self.sim_time)

    @property
    def frozen(self) -> bool:
        """Whether lifecycles (and the simulated clock) stand still."""
        return self._clock.frozen

    @property
    def speed(self) -> float:
        """Simulated seconds per clock second."""
        return self._clock.speed

    def freeze(self) -> None:
        """Stop every lifecycle where it stands."""
        self._clock.freeze()

    def unfreeze(self) -> None:
        """Let lifecycles move again from where they stood."""
        self._clock.unfreeze()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds``, frozen or not."""
        self._clock.advance(seconds)

    # ----- instances -------------------------------------------------------------------------

    @property
    def instance_ids(self) -> InstanceIds:
        """Ids of all instances, in the order they were added (also callable)."""
        return InstanceIds(self._world.ids())

    def deleted_ids(self) -> list[str]:
        """Ids of deleted instances (whose :meth:`history` stays readable), oldest first."""
        return self._world.deleted_ids()

    def create_instance(self) -> str:
        """Create one generated instance now (newest of all, in Waiting); its id."""
        return self._world.add_instances(1)[0]

    def delete_instance(self, instance_id: str) -> None:
        """Delete an instance now: detail answers 10004 and the list leaves it out."""
        self._world.remove_instance(instance_id)

    def set_listing(
        self, *, page_cap: int | None = None, churn: int | None = None, total: bool | None = None
    ) -> None:
        """Change the list endpoint's page cap, its churn (instances created and deleted before
        each page is answered, never the seed instance) or whether its answers send a ``total``
        (the account's size, beside ``data``; undocumented, so off by default); None leaves one
        as it is."""
        self._parts.set_listing(page_cap=page_cap, churn=churn, total=total)

    @property
    def page_cap(self) -> int:
        """The most entries one list page holds, whatever ``limit`` asks for."""
        return self._parts.page_cap or DEFAULT_PAGE_CAP

    @property
    def churn(self) -> int:
        """Instances created, and as many deleted, before each list page is answered."""
        return self._parts.churn

    @property
    def list_total(self) -> bool:
        """Whether list answers send a ``total``: the account's size (filters applied)."""
        return self._parts.list_total

    def status(self, instance_id: str) -> str:
        """The instance's status now."""
        return self._world.status(instance_id)

    def history(self, instance_id: str) -> list[str]:
        """Every status the instance has been in up to now, oldest first."""
        return self._world.history(instance_id)

    def schedule(self, instance_id: str) -> list[tuple[str, float]]:
        """The current run's statuses with the simulated second each begins (past and future)."""
        return self._world.schedule(instance_id)

    def instance(self, instance_id: str) -> dict[str, Any]:
        """The instance as the detail endpoint would serve it now (a fresh copy)."""
        return self._world.instance(instance_id)

    def add_instances(self, count: int = 1) -> list[str]:
        """Generate ``count`` new instances, created now and starting in Waiting."""
        return self._world.add_instances(count)

    def add_instance(self, data: Mapping[str, Any], *, hold: bool = True) -> str:
        """Serve ``data`` as an instance: verbatim while held, else running on from its status."""
        return self._world.add_instance(data, hold=hold)

    def remove_instance(self, instance_id: str) -> None:
        """Delete an instance; the detail endpoint then answers 10004 for it."""
        self._world.remove_instance(instance_id)

    def set_status(self, instance_id: str, status: str, *, hold: bool = True) -> None:
        """Put an instance in ``status`` now (any string); held there, or running on from it.

        Running on from Waiting, Deploying or Running follows the usual path with fresh phase
        lengths; from a status off that path it lasts one deploying phase and then runs; a
        terminal status stays.
        """
        self._world.set_status(instance_id, status, hold=hold)

    def restart(self, instance_id: str) -> None:
        """Send a terminal instance back to Waiting for a fresh run, like the restart endpoint."""
        self._world.restart(instance_id)

    # ----- tokens ----------------------------------------------------------------------------

    @property
    def token(self) -> str:
        """A token for the first available region: the fixed one if given, else one from start."""
        return self._token

    def issue_token(self, *, ttl: float | None = None, cluster_id: str | None = None) -> str:
        """A new signed token valid for ``ttl`` wall-clock seconds (negative: already expired).

        It belongs to region ``cluster_id`` ("0" for the platform's own token), by default the
        first available region.
        """
        ttl = self._parts.token_ttl if ttl is None else ttl
        return self._parts.tokens.issue(ttl, cluster_id=cluster_id)

    @property
    def user(self) -> str:
        """The platform user name the token endpoints accept."""
        return self._account.user

    @property
    def access_key(self) -> str:
        """The access key (AK) the AK/SK token endpoint accepts."""
        return self._account.access_key

    @property
    def secret_key(self) -> str:
        """The secret key (SK) that signs AK/SK logins (given, else generated at construction)."""
        return self._account.secret_key

    @property
    def password(self) -> str:
        """The password the legacy token endpoint accepts, with :attr:`org_id`."""
        return self._account.password

    @property
    def org_id(self) -> str:
        """The organisation code the legacy token endpoint accepts."""
        return self._account.org_id

    @property
    def regions(self) -> tuple[Region, ...]:
        """The account's regions, in the order the token endpoints list them."""
        return self._parts.regions

    @property
    def token_clock(self) -> Callable[[], float]:
        """The wall clock of tokens' ``expireTime`` and of the login timestamp window."""
        return self._token_clock

    def expire_token(self, token: str) -> None:
        """Make ``token`` expired from now on (it stays renewable for 24 h)."""
        self._parts.tokens.expire(token)

    def token_is_valid(self, token: str) -> bool:
        """Whether the API would accept ``token`` now."""
        return self._parts.tokens.is_valid(token)

    # ----- faults and latency ----------------------------------------------------------------

    def script_faults(self, key: str, faults: Iterable[str]) -> None:
        """Queue faults for the next requests about an instance id (or ``"list"``), in order."""
        self._parts.faults.script(key, faults)

    def fail_times(self, key: str, times: int, *, kind: str = "http_503") -> None:
        """Fault the next ``times`` requests about ``key`` with ``kind``."""
        self._parts.faults.script(key, [kind] * times)

    def pending_faults(self, key: str) -> list[str]:
        """Scripted faults not yet served for ``key``."""
        return self._parts.faults.pending(key)

    def clear_faults(self, key: str | None = None) -> None:
        """Drop scripted faults for ``key``, or for everything."""
        self._parts.faults.clear(key)

    def set_fault_rate(
        self, rate: float, *, kinds: Sequence[str] | Mapping[str, float] | None = None
    ) -> None:
        """Fault each detail and list request with probability ``rate``, kinds drawn from a mix."""
        self._parts.faults.set_rate(rate, kinds=kinds)

    @property
    def fault_rate(self) -> float:
        """Probability that a detail or list request is faulted."""
        return self._parts.faults.rate

    @property
    def fault_kinds(self) -> dict[str, float]:
        """The mix random faults are drawn from, kind -> weight."""
        return self._parts.faults.kinds

    def set_latency(self, latency: float | Sequence[float]) -> None:
        """Delay every API answer by ``latency`` seconds, or uniformly within (low, high)."""
        self._parts.latency.set(latency)

    # ----- stats -----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """Counts: ``total``, per ``endpoints``, per ``instances`` id and ``faults`` by kind."""
        return self._parts.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero every counter."""
        self._parts.stats.reset()

    # ----- serving ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (0 until started with an ephemeral port)."""
        return self._server.port

    @property
    def base_url(self) -> str:
        """``http://host:port``, no trailing slash."""
        return self._server.base_url

    @property
    def url(self) -> str:
        """The same as :attr:`base_url`: the token, platform and AI hosts are all this one."""
        return self._server.base_url

    async def start(self) -> None:
        """Listen on host:port (an ephemeral port when 0)."""
        await self._server.start(self._parts)

    async def suspend(self) -> None:
        """Stop listening and drop every connection, as if the process died; state is kept."""
        await self._server.suspend()

    async def resume(self) -> None:
        """Listen again on the same port after :meth:`suspend`."""
        await self._server.resume()

    async def close(self) -> None:
        """Stop serving; stalled requests are cut off rather than waited for."""
        await self._server.close()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _claims(user: str, seed: int) -> dict[str, str]:
    """The claims every token carries besides its region and expiry (shaped like the platform's)."""
    return {
        "computeUser": user,
        "accountStatus": "Trial",
        "creator": "ac",
        "role": "1",
        "invoker": f"{random.Random(f'{seed}:invoker').getrandbits(128):032x}",
        "user": user,
        "userId": "11655048541",
    }


class _Server:
    """The listening side: one aiohttp runner, a site that can stop and start again on its port."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._parts: Parts | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._sock: socket.socket | None = None  # the site's listening socket

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self, parts: Parts) -> None:
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self._parts = parts
        # handler_cancellation: a request whose client went away (or was reset) is cancelled
        # at once instead of lingering until shutdown.
        runner = web.AppRunner(
            build_app(parts), access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        self._runner = runner
        try:
            await self._listen()
        except BaseException:
            self._runner = None
            await runner.cleanup()
            raise

    async def _listen(self) -> None:
        assert self._runner is not None
        sock = socket.create_server((self._host, self._port))
        self._port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        try:
            await site.start()
        except BaseException:
            sock.close()
            raise
        self._site, self._sock = site, sock

    def _cut_stalled(self) -> None:
        if self._parts is not None:
            self._parts.cut_stalled()

    async def suspend(self) -> None:
        if self._site is None:
            raise RuntimeError("the simulator is not listening")
        site, self._site = self._site, None
        await _stop_listening(site, self._sock)
        self._cut_stalled()
        server = None if self._runner is None else self._runner.server
        for handler in server.connections if server is not None else ():
            if handler.transport is not None:
                handler.transport.abort()
        # Let the dropped connections deliver connection_lost before anyone reconnects.
        await asyncio.sleep(0)

    async def resume(self) -> None:
        if self._runner is None:
            raise RuntimeError("the simulator was never started")
        if self._site is not None:
            raise RuntimeError("the simulator is already listening")
        await self._listen()

    async def close(self) -> None:
        runner, site = self._runner, self._site
        self._runner = self._site = None
        if runner is None:
            return
        # Stop listening before cutting stalled requests: a client that retries the cut request
        # must be refused, not accepted by a listener that is half closed.
        if site is not None:
            await _stop_listening(site, self._sock)
        self._cut_stalled()
        await runner.cleanup()


#: Loop iterations from an accepted connection to its protocol's ``connection_made``.
_ATTACH_ITERATIONS = 2


async def _stop_listening(site: web.SockSite, sock: socket.socket | None) -> None:
    """Close the listener without leaking a connection it accepted on the way.

    asyncio attaches an accepted connection to its listener one loop iteration after accepting
    it; if the listener closed in between, an assertion inside asyncio drops the new transport
    with its socket still open. So the listener stops accepting first, the connections already
    accepted get their transports (and are then cut like the others), and only then it closes.
    """
    loop = asyncio.get_running_loop()
    if sock is not None:
        with contextlib.suppress(NotImplementedError):  # a loop without readers: close as it is
            loop.remove_reader(sock.fileno())
    for _ in range(_ATTACH_ITERATIONS):
        await asyncio.sleep(0)
    await site.stop()


# ----- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground until SIGINT or SIGTERM (``aiocontainer simulate``)."""
    from aiocontainer.cli.simulate import main as simulate

    return simulate(argv)


if __name__ == "__main__":
    sys.exit(main())
