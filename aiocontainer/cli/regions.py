"""``aiocontainer regions``, and ``--region``/``--profile``: a client from credentials.

Rule 1: no secret is read from the command line: the secret key comes from the environment or an
        scnet-cli profile file, never from an option.
Rule 2: which way a command connects is decided in one place, ``uses_credentials``, by the
        precedence table below (also in ``--help`` and the README); an option on the command line
        wins over the environment, and contradicting options are a usage error.

    1. --region or --profile on the command line    credentials (with --base-url/--token: exit 2)
    2. --base-url, --token or --token-file           that URL and token, as before
    3. AIOCONTAINER_REGION                           credentials
    4. AIOCONTAINER_BASE_URL / _TOKEN / _TOKEN_FILE  that URL and token
    5. SCNET_USER, SCNET_ACCESS_KEY, SCNET_SECRET_KEY all set: credentials, default region
    The ``regions`` command always uses credentials.

Credentials: --profile NAME (scnet-cli's profile), else SCNET_USER/SCNET_ACCESS_KEY/
SCNET_SECRET_KEY, else scnet-cli's current profile in $SCNET_HOME/config.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiocontainer import (
    AiocontainerError,
    ContainerClient,
    Credentials,
    CredentialsError,
    RegionNotFoundError,
    RegionUnavailableError,
    ScnetAuth,
)
from aiocontainer._credentials import ENV_ACCESS_KEY, ENV_SECRET_KEY, ENV_USER
from aiocontainer.cli import _output
from aiocontainer.cli._config import make_client
from aiocontainer.cli._exits import EXIT_API, EXIT_OK, UsageError
from aiocontainer.cli._run import run_async

if TYPE_CHECKING:
    from aiocontainer.cli._parser import Commands
    from aiocontainer.simulator import Simulator

ENV_REGION = "AIOCONTAINER_REGION"
ENV_AUTH_URL = "AIOCONTAINER_AUTH_URL"
ENV_PLATFORM_URL = "AIOCONTAINER_PLATFORM_URL"
_DIRECT_OPTIONS = ("base_url", "token", "token_file")
_NO_TOKEN = "no token issued for the region (account disabled or in arrears)"
_DIRECT_ENV = ("AIOCONTAINER_BASE_URL", "AIOCONTAINER_TOKEN", "AIOCONTAINER_TOKEN_FILE")
#: The options this module adds to every command that connects.
OPTIONS = ("region", "profile", "auth_url", "platform_url")

PRECEDENCE_HELP = """\
how a command connects (the first rule that applies):
  1. --region or --profile given          credentials (not with --base-url/--token)
  2. --base-url, --token or --token-file  that base URL and token
  3. AIOCONTAINER_REGION set              credentials
  4. AIOCONTAINER_BASE_URL, AIOCONTAINER_TOKEN or AIOCONTAINER_TOKEN_FILE set
                                          that base URL and token
  5. SCNET_USER, SCNET_ACCESS_KEY and SCNET_SECRET_KEY set
                                          credentials, the default region
credentials: --profile NAME (scnet-cli's $SCNET_HOME/config.json, default ~/.scnet),
  else SCNET_USER/SCNET_ACCESS_KEY/SCNET_SECRET_KEY, else scnet-cli's current profile.
  The secret key is never taken from the command line."""


def add_options(group: Any) -> None:
    """Add ``--region``, ``--profile``, ``--auth-url`` and ``--platform-url`` to ``group``."""
    group.add_argument(
        "--region",
        default=argparse.SUPPRESS,
        metavar="NAME|ID",
        help=f"region name or cluster id, with credentials instead of --base-url/--token "
        f"(env {ENV_REGION}); default: the profile's, else the only region with a token",
    )
    group.add_argument(
        "--profile",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="take the user and keys from this scnet-cli profile ($SCNET_HOME/config.json)",
    )
    group.add_argument(
        "--auth-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"token host (env {ENV_AUTH_URL}; default: the profile's 'api', "
        "else https://api.scnet.cn)",
    )
    group.add_argument(
        "--platform-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"platform host for center and renewal (env {ENV_PLATFORM_URL}; default: the "
        "profile's 'www', else https://www.scnet.cn)",
    )


def uses_credentials(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> bool:
    """True when the command connects through credentials rather than a base URL and token."""
    env = os.environ if env is None else env
    chosen = [name for name in ("region", "profile") if getattr(args, name, None)]
    direct = [name for name in _DIRECT_OPTIONS if getattr(args, name, None)]
    command = getattr(args, "command", None)
    if chosen and direct:
        raise UsageError(
            f"{_flags(chosen)} take the base URL and token from your credentials; "
            f"drop {_flags(direct)}"
        )
    if command is not None and command.name == "regions":
        if direct:
            raise UsageError(f"regions lists your credentials' regions; drop {_flags(direct)}")
        return True
    if chosen:
        return True
    if direct:
        return False
    if env.get(ENV_REGION):
        return True
    if any(env.get(name) for name in _DIRECT_ENV):
        return False
    return all(env.get(name) for name in (ENV_USER, ENV_ACCESS_KEY, ENV_SECRET_KEY))


def _flags(names: list[str]) -> str:
    return " and ".join("--" + name.replace("_", "-") for name in names)


def credentials(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Credentials:
    """The credentials of the precedence table; a problem is a ``UsageError`` (exit 2)."""
    env = os.environ if env is None else env
    profile = getattr(args, "profile", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if profile:
                return Credentials.from_scnet_profile(profile)
            if any(env.get(name) for name in (ENV_USER, ENV_ACCESS_KEY, ENV_SECRET_KEY)):
                return Credentials.from_env(env)
            return Credentials.from_scnet_profile(None)
        except CredentialsError as exc:
            hint = (
                ""
                if profile or any(env.get(n) for n in (ENV_USER, ENV_ACCESS_KEY))
                else f"; or set {ENV_USER}, {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}"
            )
            raise UsageError(f"{exc}{hint}") from None
        finally:
            for warning in caught:
                print(f"aiocontainer: warning: {warning.message}", file=sys.stderr)


def _setting(args: argparse.Namespace, name: str, env_name: str) -> str | None:
    value = getattr(args, name, None) or os.environ.get(env_name) or None
    return str(value) if value is not None else None


@contextlib.asynccontextmanager
async def open_auth(args: argparse.Namespace) -> AsyncIterator[ScnetAuth]:
    """A ``ScnetAuth`` for the command's credentials and hosts."""
    creds = credentials(args)
    try:
        auth = ScnetAuth(
            creds,
            auth_url=_setting(args, "auth_url", ENV_AUTH_URL),
            platform_url=_setting(args, "platform_url", ENV_PLATFORM_URL),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    async with auth:
        yield auth


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        name: getattr(args, name)
        for name in ("timeout", "concurrency")
        if getattr(args, name, None) is not None
    }


@contextlib.asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[ContainerClient]:
    """The command's client: from credentials and a region, or from a base URL and token."""
    if not uses_credentials(args):
        async with make_client(args) as client:
            yield client
        return
    async with open_auth(args) as auth:
        region = _setting(args, "region", ENV_REGION)
        try:
            client = await auth.client(region, **_client_options(args))
        except (RegionNotFoundError, RegionUnavailableError) as exc:
            raise UsageError(str(exc)) from None
        async with client:
            yield client


@contextlib.asynccontextmanager
async def simulator_client(
    sim: Simulator, say: Callable[[str], None], **client_options: Any
) -> AsyncIterator[ContainerClient]:
    """The whole way in, as a user takes it: the simulator's keys, its regions, then a client
    for the first available region (``say`` reports each step)."""
    creds = Credentials(sim.user, sim.access_key, sim.secret_key)
    async with ScnetAuth(creds, auth_url=sim.url, platform_url=sim.url) as auth:
        regions = await auth.regions()
        say(
            f"signed in as {creds.user} with an access key; regions: "
            + ", ".join(
                f"{r.name} ({r.cluster_id}{'' if r.available else ', unavailable'})"
                for r in regions
            )
        )
        region = next(r for r in regions if r.available)
        client = await auth.client(region.cluster_id, **client_options)
        say(f"region {region.name}: AI URL {client.base_url}, token renewed by the client")
        async with client:
            yield client


def register(commands: Commands) -> None:
    """Add ``regions`` to the command line."""
    parser = commands.add(
        "regions",
        "list your regions: name, cluster id, available, AI URL(s)",
        "List the regions your credentials may use, with each one's AI URL(s) from the "
        "platform's center. A region answered without a token (account disabled or in arrears) "
        "shows as unavailable. The platform's own token (cluster id 0, 'ac') is not a region "
        "and is not listed.",
        run=run,
    )
    parser.epilog = f"{PRECEDENCE_HELP}\n\n{parser.epilog or ''}"
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table (default), or json: a list of {name, cluster_id, available, ai_urls}",
    )


def run(args: argparse.Namespace) -> int:
    """List the regions."""
    return run_async(regions(args))


async def regions(args: argparse.Namespace) -> int:
    """Regions on stdout; a center that failed on stderr (exit 4)."""
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, AiocontainerError]] = []
    async with open_auth(args) as auth:
        for region in await auth.regions():
            urls: list[str] = []
            if region.available:
                try:
                    urls = await auth.ai_urls(region.cluster_id)
                except AiocontainerError as exc:
                    failures.append((region.name, exc))
            rows.append(
                {
                    "name": region.name,
                    "cluster_id": region.cluster_id,
                    "available": region.available,
                    "ai_urls": urls,
                }
            )
    out, err = _output.consoles()
    if args.output == "json":
        print(_output.dumps(rows))
    else:
        out.print(_table(rows))
        if not all(row["available"] for row in rows):
            err.print(f"available no: {_NO_TOKEN}", markup=False, highlight=False)
    if failures:
        for name, failure in failures:
            _output.print_error(name, failure)
        return EXIT_API
    return EXIT_OK


def _table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    for column in ("NAME", "CLUSTER ID", "AVAILABLE"):
        table.add_column(column, overflow="fold")
    table.add_column("AI URLS", no_wrap=True)
    for row in rows:
        # Server text is shown as text, never read as markup.
        table.add_row(
            Text(row["name"]),
            Text(row["cluster_id"]),
            "yes" if row["available"] else "[red]no[/red]",
            Text(" ".join(row["ai_urls"]) or "-"),
        )
    return table
