"""Who signs in: ``Credentials`` from arguments, the environment or an scnet-cli profile. No I/O
but reading the profile file.

Rule 1: the secret key and the password live in a ``Secret`` whose ``repr`` and ``str`` show
        ``***``; no repr, str, error message or log line of this module shows them. The secret key
        is only ever used to sign; the password is only ever put in the legacy login header.
Rule 2: every value is checked when the credentials are made (non-empty strings without control
        characters), so a bad one is a ``CredentialsError`` naming the field, never a failed
        request.
Rule 3: the scnet-cli profile file is read, never written; unknown keys in it are ignored, and a
        file that other users may read gets a warning.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import attrs

from aiocontainer._json import JSONError, loads
from aiocontainer._secret import Secret
from aiocontainer._signing import LOGIN_PATH, check_header_value, signed_headers
from aiocontainer.errors import CredentialsError

__all__ = [
    "ENV_ACCESS_KEY",
    "ENV_SECRET_KEY",
    "ENV_USER",
    "PASSWORD_LOGIN_PATH",
    "Credentials",
    "LoginRequest",
    "login_request",
    "scnet_config_path",
]

ENV_USER: Final = "SCNET_USER"
ENV_ACCESS_KEY: Final = "SCNET_ACCESS_KEY"
ENV_SECRET_KEY: Final = "SCNET_SECRET_KEY"
#: The legacy password token endpoint, under the platform's web host.
PASSWORD_LOGIN_PATH: Final = "/ac/openapi/v2/tokens"
#: scnet-cli's ``base_overrides`` keys this library uses: token host, platform host, AI host.
OVERRIDE_KEYS: Final = ("api", "www", "ai")


def _checked(name: str, value: object) -> str:
    try:
        return check_header_value(name, value)
    except ValueError as exc:
        raise CredentialsError(str(exc)) from None


def _overrides(raw: Mapping[str, object] | None, where: str) -> Mapping[str, str]:
    result: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if value in (None, ""):
            continue
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise CredentialsError(f"{where}: base_overrides.{key} must be an http(s) URL")
        result[str(key)] = value.rstrip("/")
    return MappingProxyType(result)


class Credentials:
    """A platform user and an access key pair (or, legacy, a password) to get tokens with.

    ``default_region`` (a region name or cluster id) is used when no region is chosen, and
    ``base_overrides`` (scnet-cli's ``api``, ``www`` and ``ai`` hosts) replace the documented
    hosts. The secret key and the password never appear in a repr, a message or a log line.
    """

    __slots__ = (
        "_kind",
        "_secret",
        "access_key",
        "base_overrides",
        "default_region",
        "org_id",
        "source",
        "user",
    )

    user: str
    access_key: str | None
    org_id: str | None
    default_region: str | None
    base_overrides: Mapping[str, str]
    source: str
    _kind: Literal["access_key", "password"]
    _secret: Secret

    def __init__(
        self,
        user: str,
        access_key: str,
        secret_key: str,
        *,
        default_region: str | None = None,
        base_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self._setup(
            user=user,
            kind="access_key",
            access_key=_checked("access_key", access_key),
            secret=Secret(_checked("secret_key", secret_key), "secret key"),
            org_id=None,
            default_region=default_region,
            base_overrides=_overrides(base_overrides, "arguments"),
            source="arguments",
        )

    def _setup(
        self,
        *,
        user: str,
        kind: Literal["access_key", "password"],
        access_key: str | None,
        secret: Secret,
        org_id: str | None,
        default_region: str | None,
        base_overrides: Mapping[str, str],
        source: str,
    ) -> None:
        self.user = _checked("user", user)
        self._kind = kind
        self.access_key = access_key
        self._secret = secret
        self.org_id = org_id
        self.default_region = default_region or None
        self.base_overrides = base_overrides
        self.source = source

    @classmethod
    def from_password(
        cls,
        user: str,
        password: str,
        org_id: str,
        *,
        default_region: str | None = None,
        base_overrides: Mapping[str, str] | None = None,
    ) -> Credentials:
        """Legacy login with the account password and an organisation code (``orgId``)."""
        self = cls.__new__(cls)
        self._setup(
            user=user,
            kind="password",
            access_key=None,
            secret=Secret(_checked("password", password), "password"),
            org_id=_checked("org_id", org_id),
            default_region=default_region,
            base_overrides=_overrides(base_overrides, "arguments"),
            source="arguments",
        )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read ``SCNET_USER``, ``SCNET_ACCESS_KEY`` and ``SCNET_SECRET_KEY``.

        A missing or empty variable is a ``CredentialsError`` that names every one missing.
        """
        env = os.environ if environ is None else environ
        names = (ENV_USER, ENV_ACCESS_KEY, ENV_SECRET_KEY)
        missing = [name for name in names if not env.get(name)]
        if missing:
            raise CredentialsError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                f"set {', '.join(names)} (the access key pair from the console)"
            )
        self = cls(env[ENV_USER], env[ENV_ACCESS_KEY], env[ENV_SECRET_KEY])
        self.source = "environment"
        return self

    @classmethod
    def from_scnet_profile(
        cls, name: str | None = "default", *, home: str | os.PathLike[str] | None = None
    ) -> Credentials:
        """Read a profile of scnet-cli's ``config.json`` (read only, never written).

        The file is ``$SCNET_HOME/config.json`` (``home`` overrides, default ``~/.scnet``).
        ``name=None`` takes the file's ``current`` profile. The profile's ``default_cluster_id``
        becomes ``default_region`` and its ``base_overrides`` are kept. A file that other users
        may read gets a ``UserWarning``.
        """
        path = scnet_config_path(home)
        config = _read_config(path)
        profiles = config.get("profiles")
        if not isinstance(profiles, dict):
            raise CredentialsError(f"{path}: no 'profiles' object")
        if name is None:
            current = config.get("current", "default")
            name = current if isinstance(current, str) and current else "default"
        profile = profiles.get(name)
        if not isinstance(profile, dict):
            known = ", ".join(sorted(map(str, profiles))) or "none"
            raise CredentialsError(
                f"{path}: no profile {name!r} (profiles: {known}); run 'scnet configure"
                f"{'' if name == 'default' else ' --profile ' + name}' to create it"
            )
        where = f"{path}, profile {name!r}"
        fields = {}
        for key in ("user", "access_key", "secret_key"):
            value = profile.get(key)
            if not isinstance(value, str) or not value:
                raise CredentialsError(f"{where}: {key} is missing or empty")
            fields[key] = value
        region = profile.get("default_cluster_id")
        if region is not None and not isinstance(region, str | int):
            raise CredentialsError(f"{where}: default_cluster_id must be a string")
        overrides = profile.get("base_overrides")
        if overrides is not None and not isinstance(overrides, dict):
            raise CredentialsError(f"{where}: base_overrides must be an object")
        try:
            self = cls(
                fields["user"],
                fields["access_key"],
                fields["secret_key"],
                default_region=str(region).strip() if region is not None else None,
            )
        except CredentialsError as exc:
            raise CredentialsError(f"{where}: {exc}") from None
        self.base_overrides = _overrides(overrides, where)
        self.source = f"scnet-cli profile {name!r}"
        return self

    def __repr__(self) -> str:
        key = (
            f"access_key={_masked(self.access_key)!r}"
            if self._kind == "access_key"
            else f"org_id={self.org_id!r}, password=***"
        )
        region = f", default_region={self.default_region!r}" if self.default_region else ""
        return f"Credentials(user={self.user!r}, {key}, secret=***{region}, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Credentials are not picklable: they hold a secret")


def _masked(access_key: str | None) -> str:
    """The first four characters of an access key, enough to tell two keys apart."""
    if not access_key:
        return ""
    return access_key[:4] + "..." if len(access_key) > 8 else "..."


def scnet_config_path(home: str | os.PathLike[str] | None = None) -> Path:
    """scnet-cli's config file: ``$SCNET_HOME/config.json``, by default ``~/.scnet/config.json``."""
    if home is None:
        env = os.environ.get("SCNET_HOME")
        base = Path(env) if env else Path.home() / ".scnet"
    else:
        base = Path(home)
    return base / "config.json"


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            raw = handle.read(1024 * 1024 + 1)
    except FileNotFoundError:
        raise CredentialsError(
            f"no scnet-cli config at {path}: run 'scnet configure' or set SCNET_HOME"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CredentialsError(f"cannot read {path}: {reason}") from None
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(
            f"{path} holds a secret key and other users may read it "
            f"(mode {stat.S_IMODE(mode):o}); run 'chmod 600 {path}'",
            UserWarning,
            stacklevel=3,
        )
    if len(raw) > 1024 * 1024:
        raise CredentialsError(f"{path} is larger than 1 MiB; not an scnet-cli config")
    try:
        config = loads(raw)
    except JSONError:
        raise CredentialsError(f"{path} is not valid JSON") from None
    if not isinstance(config, dict):
        raise CredentialsError(f"{path} does not hold a JSON object")
    return config


@attrs.frozen
class LoginRequest:
    """A token request to send: which host (``"auth"`` or ``"platform"``), path and headers."""

    host: Literal["auth", "platform"]
    path: str
    headers: Mapping[str, str] = attrs.field(repr=False)


def login_request(credentials: Credentials, timestamp: float) -> LoginRequest:
    """The token request for ``credentials`` at ``timestamp`` (epoch seconds)."""
    secret = credentials._secret.reveal()
    if credentials._kind == "password":
        assert credentials.org_id is not None
        headers = {"user": credentials.user, "password": secret, "orgId": credentials.org_id}
        return LoginRequest("platform", PASSWORD_LOGIN_PATH, headers)
    assert credentials.access_key is not None
    return LoginRequest(
        "auth",
        LOGIN_PATH,
        signed_headers(
            user=credentials.user,
            access_key=credentials.access_key,
            secret_key=secret,
            timestamp=timestamp,
        ),
    )


def secrets_of(credentials: Credentials) -> tuple[str, ...]:
    """The values that must never appear in a message: the secret key or the password."""
    return (credentials._secret.reveal(),)
