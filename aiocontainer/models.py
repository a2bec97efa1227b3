"""Typed, frozen views of what the platform returns.

Rule 1: a model is built whole or not at all. ``InstanceDetail.from_api`` either returns a complete
        object or raises ``ResponseError`` naming the bad field; it never coerces a wrong type.
Rule 2: nothing is lost. Keys this version does not know are kept in ``extra`` and written back by
        ``to_api``; keys the server left out stay left out, so ``from_api(d).to_api() == d``.
Rule 3: ``status`` is a plain ``str``: the server owns the vocabulary, unknown values pass through.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeVar

import attrs

from aiocontainer._convert import structure, unstructure

__all__ = ["InstanceDetail", "InstanceStatus", "MountInfo", "PortInfo", "StatusChange"]


class InstanceStatus:
    """The six documented statuses as string constants; any other string may still appear."""

    WAITING: Final = "Waiting"
    DEPLOYING: Final = "Deploying"
    RUNNING: Final = "Running"
    TERMINATED: Final = "Terminated"
    FAILED: Final = "Failed"
    COMPLETED: Final = "Completed"

    #: Statuses an instance stays in until someone restarts it.
    TERMINAL: ClassVar[frozenset[str]] = frozenset({TERMINATED, FAILED, COMPLETED})
    #: Every documented status.
    ALL: ClassVar[frozenset[str]] = frozenset(
        {WAITING, DEPLOYING, RUNNING, TERMINATED, FAILED, COMPLETED}
    )
    #: The usual path; the terminal statuses share the last step.
    PATH: ClassVar[tuple[str, ...]] = (WAITING, DEPLOYING, RUNNING)

    def __init__(self) -> None:  # pragma: no cover - a namespace, never instantiated
        raise TypeError("InstanceStatus is a namespace of string constants")


# One shared, read-only empty mapping: most objects have no unknown keys, and a fresh dict for
# each would cost 64 bytes per object.
_NO_EXTRA: Mapping[str, Any] = MappingProxyType({})


def _no_extra() -> Mapping[str, Any]:
    return _NO_EXTRA


# Likewise one shared empty set of absent keys: a fresh frozenset per object would cost 216 bytes,
# and a collector-tracked object, for each detail, mount and port kept (three or four per
# watched instance).
_NOTHING_ABSENT: frozenset[str] = frozenset()


def _nothing_absent() -> frozenset[str]:
    return _NOTHING_ABSENT


_M = TypeVar("_M", bound="_ApiModel")


class _ApiModel:
    """``from_api``/``to_api`` for the models: the converter does the work, both ways."""

    __slots__ = ()  # keeps the attrs subclasses free of a per-instance __dict__

    @classmethod
    def from_api(cls: type[_M], data: Mapping[str, Any]) -> _M:
        """Build from the API's camelCase dict; raises ``ResponseError`` on a bad value."""
        return structure(data, cls)

    def to_api(self) -> dict[str, Any]:
        """Return the camelCase dict the platform sent: ``from_api(d).to_api() == d``."""
        return unstructure(self)


@attrs.frozen(kw_only=True)
class PortInfo(_ApiModel):
    """A port the container exposes (an item of ``containerPortInfoList``)."""

    access_url: str | None = None
    container_port: str | int | None = None
    protocol_type: str | None = None
    #: Keys the server sent that this version does not know, kept verbatim.
    extra: Mapping[str, Any] = attrs.field(factory=_no_extra, hash=False, repr=False)
    _absent: frozenset[str] = attrs.field(
        factory=_nothing_absent, alias="_absent", eq=False, hash=False, repr=False
    )


@attrs.frozen(kw_only=True)
class MountInfo(_ApiModel):
    """A storage mount of the container (an item of ``mountInfoList``)."""

    source_path: str | None = None
    type: str | None = None
    #: Keys the server sent that this version does not know, kept verbatim.
    extra: Mapping[str, Any] = attrs.field(factory=_no_extra, hash=False, repr=False)
    _absent: frozenset[str] = attrs.field(
        factory=_nothing_absent, alias="_absent", eq=False, hash=False, repr=False
    )


@attrs.frozen(kw_only=True)
class InstanceDetail(_ApiModel):
    """One container instance as the ``detail`` endpoint describes it.

    Fields follow the API in snake_case and in the order of the documented example. ``id`` and
    ``status`` are always present; every other field is ``None`` when the server sends ``null`` or
    leaves it out. Timestamps (``create_time``, ``start_time``, ``end_time``) are naive
    ``datetime`` objects: the platform sends ``"YYYY-MM-DD HH:MM:SS"`` with no zone, and whether
    that is UTC or China time is not documented. ``duration`` and ``remaining_time`` stay strings
    (``"--"`` when unknown). ``task_number`` is an ``int`` or a ``str``: the documentation
    declares a string and its example sends a number.
    """

    id: str
    header_notebook_id: str | None = None
    instance_service_name: str | None = None
    current_index: int | None = None
    gpu_number: int | None = None
    cpu_number: int | None = None
    ram_size: int | None = None
    accelerator_type: str | None = None
    resource_group: str | None = None
    resource_spec: str | None = None
    task_number: int | str | None = None
    timeout_limit: str | None = None
    user_name: str | None = None
    version: str | None = None
    image_path: str | None = None
    status: str
    task_type: str | None = None
    description: str | None = None
    create_time: _dt.datetime | None = None
    start_time: _dt.datetime | None = None
    end_time: _dt.datetime | None = None
    duration: str | None = None
    remaining_time: str | None = None
    tensorboard_id: str | None = None
    tensorboard_path: str | None = None
    mount_info_list: tuple[MountInfo, ...] = ()
    container_port_info_list: tuple[PortInfo, ...] = ()
    use_start_script: bool | None = None
    start_script_content: str | None = None
    start_script_path: str | None = None
    start_script_action_scope: str | None = None
    header_notebook_ip: str | None = None
    #: Keys the server sent that this version does not know, kept verbatim.
    extra: Mapping[str, Any] = attrs.field(factory=_no_extra, hash=False, repr=False)
    _absent: frozenset[str] = attrs.field(
        factory=_nothing_absent, alias="_absent", eq=False, hash=False, repr=False
    )

    @property
    def is_terminal(self) -> bool:
        """True when the status is one of ``InstanceStatus.TERMINAL``."""
        return self.status in InstanceStatus.TERMINAL


@attrs.frozen(kw_only=True)
class StatusChange:
    """One observed status transition of one instance."""

    instance_id: str
    #: The last known status, or None on the first observation.
    previous: str | None
    current: str
    detail: InstanceDetail = attrs.field(repr=False)
    #: When the poll that saw the change completed (aware, UTC).
    observed_at: _dt.datetime
    #: Per-instance counter, starting at 1 and increasing by one per change.
    seq: int
    #: Documented statuses passed over between two polls, in path order, e.g. ("Deploying",).
    skipped: tuple[str, ...] = ()

    @property
    def is_initial(self) -> bool:
        """True for the first observation of an instance (``previous is None``)."""
        return self.previous is None
