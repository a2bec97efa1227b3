"""The one private cattrs converter: camelCase <-> snake_case, strict scalars, extras kept.

Rule 1: no coercion. ``"3"`` is not an int, ``"false"`` is not a bool, ``None`` is not ``"None"``,
        ``8.9`` is not ``8``. A wrong type raises ``ResponseError`` naming the camelCase path.
Rule 2: lossless. Unknown keys go to ``extra``; keys the server left out are remembered in
        ``_absent`` and left out again by ``unstructure``.
Rule 3: the global cattrs converter is never touched.
Rule 4: a bad document costs no more than a good one of its size, twice at worst. A list stops being
        checked after ``MAX_ITEM_ERRORS`` bad items, and the message says how many items were left
        unchecked. (The worst case: a long list whose bad items come last is read by the builder up
        to them, then again by the converter.)

The converter knows no model by name: any attrs class with the ``extra`` and ``_absent`` fields
gets its hook on first use, so ``models`` imports this module and not the other way round.

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, override

from aiocontainer.errors import ResponseError

__all__ = ["MAX_ITEM_ERRORS", "TIME_FORMAT", "structure", "unstructure"]

T = TypeVar("T")

#: The only timestamp shape the platform is known to send.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
#: A list stops being checked after this many bad items; the rest are counted, not structured.
MAX_ITEM_ERRORS = 5
#: At most this many field errors are spelled out in a message; the others are counted.
_MAX_SHOWN_ERRORS = 5
#: Longer values are never interned: the table would keep a hostile server's strings forever.
_MAX_INTERNED_CHARS = 256
#: What ``dict.get`` gives for a key the document does not have (``None`` is a value).
_MISSING: Any = object()


def to_camel(name: str) -> str:
    """``ram_size`` -> ``ramSize``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _strict_str(value: object, _: type) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {_type_name(value)}")
    return value


def _strict_int(value: object, _: type) -> int:
    if type(value) is not int:  # bool is an int subclass and is refused on purpose
        raise TypeError(f"expected an integer, got {_type_name(value)}")
    return value


def _strict_bool(value: object, _: type) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected a boolean, got {_type_name(value)}")
    return value


def _optional_str(value: object, _: type) -> str | None:
    if value is None or type(value) is str:
        return value
    raise TypeError(f"expected a string, got {_type_name(value)}")


def _intern(text: str) -> str:
    return sys.intern(text) if len(text) <= _MAX_INTERNED_CHARS else text


def _interned_str(value: object, _: type) -> str:
    return _intern(_strict_str(value, str))


def _interned_optional_str(value: object, _: type) -> str | None:
    return None if value is None else _interned_str(value, str)


#: Fields with few distinct values across instances. A watcher keeps one detail per instance,
#: and sharing one string object per distinct value saves about a kilobyte per detail.
#: Unique values (ids, names, timestamps) are never interned: they would only fill the table.
_INTERNED_FIELDS = frozenset(
    {
        "status",
        "task_type",
        "accelerator_type",
        "resource_group",
        "resource_spec",
        "timeout_limit",
        "user_name",
        "version",
        "image_path",
        "start_script_action_scope",
        "remaining_time",
        "protocol_type",
        "type",
    }
)


def _optional_int(value: object, _: type) -> int | None:
    if value is None or type(value) is int:
        return value
    raise TypeError(f"expected an integer, got {_type_name(value)}")


def _or_none(hook: Callable[[Any, Any], T]) -> Callable[[Any, Any], T | None]:
    def optional(value: Any, tp: Any) -> T | None:
        return None if value is None else hook(value, tp)

    return optional


def _int_or_str(value: object, _: type) -> int | str | None:
    # Optional variants share this hook; None is let through here, the plain unions never get it
    # from a model field because every such field is declared Optional.
    if value is None or type(value) is int or type(value) is str:
        return value
    raise TypeError(f"expected an integer or a string, got {_type_name(value)}")


def _timestamp(value: object, _: type) -> _dt.datetime:
    if type(value) is not str:
        raise TypeError(f"expected a timestamp string, got {_type_name(value)}")
    if _TIME_RE.fullmatch(value) is None:
        raise ValueError(f"expected 'YYYY-MM-DD HH:MM:SS', got {value[:40]!r}")
    return _dt.datetime.fromisoformat(value)


def _is_model_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _model_tuple_hook(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        item_type = get_args(tp)[0]
        item_hook = conv.get_structure_hook(item_type)

        def hook(value: Any, _: Any) -> tuple[Any, ...]:
            if type(value) is not list:
                raise TypeError(f"expected a list, got {_type_name(value)}")
            items: list[Any] = []
            errors: list[Exception] = []
            for index, item in enumerate(value):
                try:
                    items.append(item_hook(item, item_type))
                except Exception as exc:
                    note = IterableValidationNote(f"item {index}", index, item_type)
                    # setattr rather than add_note(): the latter is Python 3.11+.
                    setattr(exc, "__notes__", [*getattr(exc, "__notes__", []), note])  # noqa: B010
                    errors.append(exc)
                    if len(errors) == MAX_ITEM_ERRORS and index + 1 < len(value):
                        # The document is refused already; checking the rest would only make a
                        # large bad body cost more than a good one (one exception per item).
                        errors.append(_Unchecked(len(value) - index - 1))
                        break
            if errors:
                raise IterableValidationError("While structuring a list", errors, tp)
            return tuple(items)

        return hook

    return factory


class _Unchecked(Exception):
    """Stands in a list's errors for the items left unchecked after ``MAX_ITEM_ERRORS``."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


def _with_leftovers(
    cls: type[T], inner: Callable[[Mapping[str, Any], Any], T], known: frozenset[str]
) -> Callable[[Any, Any], T]:
    """Wrap a generated hook so unknown keys land in ``extra`` and absent ones in ``_absent``."""

    def hook(value: Any, tp: Any) -> T:
        if type(value) is not dict:
            raise TypeError(f"expected an object, got {_type_name(value)}")
        obj = inner(value, tp)
        if len(value) != len(known) or not known.issubset(value):
            _keep_leftovers(obj, value, known)
        return obj

    return hook


def _keep_leftovers(obj: Any, value: Mapping[str, Any], known: frozenset[str]) -> None:
    """Note on a new ``obj`` the keys of ``value`` it has no field for, and the fields not sent."""
    extra = {key: item for key, item in value.items() if key not in known}
    absent = known - value.keys()
    # Frozen attrs classes are set through object.__setattr__; the object is ours until it is
    # returned, so this is still construction, not mutation.
    if extra:
        object.__setattr__(obj, "extra", MappingProxyType(extra))
    if absent:
        object.__setattr__(obj, "_absent", frozenset(absent))


def _field_hook(field: attrs.Attribute[Any]) -> Callable[[Any, Any], Any] | None:
    """A field's own hook where it needs one; None leaves it to the converter's type hooks."""
    if field.name not in _INTERNED_FIELDS:
        return None
    return _interned_str if field.default is attrs.NOTHING else _interned_optional_str


_BOOKKEEPING = ("extra", "_absent")


def _api_fields(cls: type[Any]) -> list[attrs.Attribute[Any]]:
    return [f for f in attrs.fields(cls) if f.name not in _BOOKKEEPING]


def _is_api_model(tp: Any) -> bool:
    """An attrs class that keeps unknown and absent keys: the shape of every API model."""
    return (
        isinstance(tp, type)
        and attrs.has(tp)
        and all(name in attrs.fields_dict(tp) for name in _BOOKKEEPING)
    )


def _model_hook(conv: cattrs.Converter) -> Callable[[Any], Callable[[Any, Any], Any]]:
    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        fields = _api_fields(cls)
        overrides: dict[str, Any] = {
            f.name: override(rename=to_camel(f.name), struct_hook=_field_hook(f)) for f in fields
        }
        for name in _BOOKKEEPING:
            overrides[name] = override(omit=True)
        inner = make_dict_structure_fn(cls, conv, **overrides)
        return _with_leftovers(cls, inner, frozenset(to_camel(f.name) for f in fields))

    return factory


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    for tp, hook, optional_hook in (
        (str, _strict_str, _optional_str),
        (int, _strict_int, _optional_int),
        (bool, _strict_bool, _or_none(_strict_bool)),
        (_dt.datetime, _timestamp, _or_none(_timestamp)),
    ):
        conv.register_structure_hook(tp, hook)
        # Optional variants get a direct hook: cattrs' generic Optional handling dispatches on
        # every call, which was most of the cost of building a model.
        conv.register_structure_hook(tp | None, optional_hook)
    for union in (int | str | None, str | int | None):
        conv.register_structure_hook(union, _int_or_str)
    conv.register_structure_hook_factory(_is_model_tuple, _model_tuple_hook(conv))
    # Models get their hooks on first use; a model's hook looks up its nested models' hooks
    # (through the tuple factory) when it is generated.
    conv.register_structure_hook_factory(_is_api_model, _model_hook(conv))
    return conv


_CONVERTER = _build_converter()


_CAMEL_NAMES: dict[type[Any], tuple[tuple[str, str], ...]] = {}


# -- the generated builders ---------------------------------------------------------------------
#
# The converter calls one hook per field and collects every error with its path: right for a bad
# document, costly for the sound ones that are nearly all of them. A builder is the same rules
# written out as one straight-line function per model: each field read once and checked inline,
# the slots filled directly (the model has no validator, converter or post-init hook to skip;
# a class that has one gets no builder). It never reports: on anything it does not accept
# outright (a wrong type, a missing required key, a timestamp of another shape or no such date)
# it raises _Doubt, and the converter takes the document from the start. So a builder only ever
# returns what the converter would return (a property test holds the two together), and every
# error is still the converter's.


class _Doubt(Exception):
    """A builder met a value it does not accept outright; the converter decides instead."""


def _never(data: Any) -> Any:
    raise _Doubt


# How each optional scalar is read: the test that sends the value to the converter instead.
_REFUSE: dict[Any, str] = {
    str | None: "type({v}) is not str",
    int | None: "type({v}) is not int",
    bool | None: "type({v}) is not bool",
    int | str | None: "type({v}) is not int and type({v}) is not str",
    str | int | None: "type({v}) is not int and type({v}) is not str",
}

_BUILDERS: dict[type[Any], Callable[[Any], Any]] = {}
#: Defaults a builder may share between objects when their factory always gives the same one.
_IMMUTABLE: frozenset[type[Any]] = frozenset({frozenset, tuple, MappingProxyType})


def _read_field(
    index: int, field: attrs.Attribute[Any], tp: Any, names: dict[str, Any]
) -> list[str] | None:
    """The lines that read one field into ``v<index>``, or None for a kind not written out."""
    v, camel = f"v{index}", to_camel(field.name)
    interned = field.name in _INTERNED_FIELDS
    intern = [f"if len({v}) <= {_MAX_INTERNED_CHARS}:", f"    {v} = intern({v})"]
    # A key the document left out reads as MISSING: the field gets None and is noted absent.
    absent = [f"    if {v} is MISSING:", f"        {v} = None", "        absent = True"]
    if tp is str and field.default is attrs.NOTHING:
        lines = [f"{v} = get({camel!r}, MISSING)", f"if type({v}) is not str:", "    raise Doubt"]
        return lines + intern if interned else lines
    if tp in _REFUSE and field.default is None:
        lines = [f"{v} = get({camel!r}, MISSING)", f"if {v} is not None:", *absent]
        lines += [f"    elif {_REFUSE[tp].format(v=v)}:", "        raise Doubt"]
        if interned:
            lines += [f"    elif len({v}) <= {_MAX_INTERNED_CHARS}:", f"        {v} = intern({v})"]
        return lines
    if tp == _dt.datetime | None and field.default is None:
        lines = [f"{v} = get({camel!r}, MISSING)", f"if {v} is not None:", *absent]
        lines += [
            f"    elif type({v}) is not str or timestamp({v}) is None:",
            "        raise Doubt",
        ]
        # fromisoformat's ValueError (the right shape, no such date) is a doubt as well.
        return [*lines, "    else:", f"        {v} = fromisoformat({v})"]
    if _is_model_tuple(tp) and field.default == ():
        names[f"item{index}"] = structure_fast(get_args(tp)[0])
        lines = [f"{v} = get({camel!r}, MISSING)", f"if type({v}) is list:"]
        lines += [f"    {v} = tuple([item{index}(x) for x in {v}])", f"elif {v} is MISSING:"]
        return [*lines, f"    {v} = ()", "    absent = True", "else:", "    raise Doubt"]
    return None


def _builder(cls: type[Any]) -> Callable[[Any], Any]:
    """The generated builder of an API model, or one that always defers to the converter.

    Only the field types the models use today are written out; a class with any other kind of
    field, another default, or anything that runs when it is made gets ``_never``.
    """
    generated = _generate(cls, None)
    return _never if generated is None else generated


def _generate(cls: type[Any], patched: frozenset[str] | None) -> Callable[..., Any] | None:
    """The builder of ``cls`` (``patched`` None), or its patcher; None if none can be made.

    A patcher ``build(old, o)`` is a copy of ``old`` whose ``patched`` fields (camelCase keys)
    are read from the dict ``o`` exactly as the builder reads them; every other field is
    ``old``'s. It raises ``_Doubt`` where the builder would, and when a patched key is missing
    from ``o`` (which changes what is absent).
    """
    if not _is_api_model(cls) or hasattr(cls, "__attrs_post_init__"):
        return None
    every = attrs.fields(cls)
    if any(f.validator or f.converter or f.on_setattr for f in every):
        return None
    hints = get_type_hints(cls)
    fields = _api_fields(cls)
    known = frozenset(to_camel(f.name) for f in fields)
    names: dict[str, Any] = {
        "Doubt": _Doubt,
        "MISSING": _MISSING,
        "timestamp": _TIME_RE.fullmatch,
        "fromisoformat": _dt.datetime.fromisoformat,
        "intern": sys.intern,
        "new": object.__new__,
        "cls": cls,
        "known": known,
        "leftovers": _keep_leftovers,
    }
    read = {
        index
        for index, field in enumerate(fields)
        if patched is None or to_camel(field.name) in patched
    }
    body = []
    for index in sorted(read):
        lines = _read_field(index, fields[index], hints[fields[index].name], names)
        if lines is None:
            return None
        body += lines
    make = ["obj = new(cls)"]
    positions = {field.name: index for index, field in enumerate(fields)}
    for index, field in enumerate(every):
        slot: Any = cls.__dict__.get(field.name)
        if not hasattr(slot, "__set__"):
            return None  # not a slotted class: no member to fill
        names[f"set{index}"] = slot.__set__
        position = positions.get(field.name)
        if position in read:
            make.append(f"set{index}(obj, v{position})")
        elif patched is not None:
            make.append(f"set{index}(obj, old.{field.name})")
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            if field.default.takes_self:
                return None
            factory = field.default.factory
            shared = factory()
            if type(shared) in _IMMUTABLE and factory() is shared:
                # The factory hands every object the same immutable value: no call per object.
                names[f"default{index}"] = shared
                make.append(f"set{index}(obj, default{index})")
            else:
                names[f"default{index}"] = factory
                make.append(f"set{index}(obj, default{index}())")
        else:
            return None  # a bookkeeping field without a factory: not an API model's shape
    if patched is None:
        # Every field found and no more keys than fields: nothing unknown, nothing absent.
        ending = [f"    if absent or len(o) != {len(known)}:", "        leftovers(obj, o, known)"]
    else:
        ending = []  # what is unknown or absent is old's: the caller vouches for the other keys
    source = [
        "def build(o):" if patched is None else "def build(old, o):",
        "    if type(o) is not dict:",
        "        raise Doubt",
        "    get = o.get",
        "    absent = False",
        "    try:",
        *("        " + line for line in body),
        "    except ValueError:",
        "        raise Doubt from None",
        *([] if patched is None else ["    if absent:", "        raise Doubt"]),
        *("    " + line for line in make),
        *ending,
        "    return obj",
    ]
    kind = "builder" if patched is None else "patcher"
    code = compile("\n".join(source), f"<aiocontainer {kind} of {cls.__name__}>", "exec")
    exec(code, names)
    build: Callable[..., Any] = names["build"]
    return build


def structure_fast(cls: type[Any]) -> Callable[[Any], Any]:
    """The generated builder of ``cls`` (made on first use); it raises ``_Doubt``, not errors."""
    build = _BUILDERS.get(cls)
    if build is None:
        build = _BUILDERS[cls] = _builder(cls)
    return build


@functools.cache
def patcher(cls: type[T], keys: frozenset[str]) -> Callable[[T, Mapping[str, Any]], T | None]:
    """``patch(old, data)``: ``old`` with the fields named by ``keys`` (camelCase) read again
    from ``data``.

    For a caller that knows ``data`` holds, besides ``keys``, exactly what ``old`` was built
    from: the result is what ``structure(data, cls)`` returns, in a fraction of the time.
    ``patch`` returns None when a patched value is not one the builder accepts outright (or is
    missing): then ``structure`` must read ``data`` in full, and report what is wrong.
    """
    generated = _generate(cls, keys)

    def patch(old: T, data: Mapping[str, Any]) -> T | None:
        if generated is None:
            return None
        try:
            return generated(old, data)  # type: ignore[no-any-return]
        except _Doubt:
            return None

    return patch


def _camel_names(cls: type[Any]) -> tuple[tuple[str, str], ...]:
    names = _CAMEL_NAMES.get(cls)
    if names is None:
        names = _CAMEL_NAMES[cls] = tuple((f.name, to_camel(f.name)) for f in _api_fields(cls))
    return names


def _error_lines(exc: BaseException, path: str, unchecked: list[str]) -> list[str]:
    """Flatten a cattrs error tree into ``"$.mountInfoList[0].type: expected ..."`` lines.

    Lists cut short add ``"$.containerPortInfoList: N more items not checked"`` to ``unchecked``.
    """
    if isinstance(exc, ClassValidationError | IterableValidationError):
        lines: list[str] = []
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, IterableValidationNote):
                    sub_path = f"{path}[{note.index}]"
                elif hasattr(note, "name"):
                    sub_path = f"{path}.{to_camel(note.name)}"
            lines.extend(_error_lines(sub, sub_path, unchecked))
        return lines
    if isinstance(exc, _Unchecked):
        unchecked.append(
            f"{path}: {exc.count} more items not checked after {MAX_ITEM_ERRORS} bad ones"
        )
        return []
    if isinstance(exc, KeyError):
        return [f"{path}: required field missing"]
    return [f"{path}: {exc}"]


def structure(data: Any, cls: type[T]) -> T:
    """Build ``cls`` from a camelCase dict or raise ``ResponseError`` naming each bad path.

    A sound document is built by the class's generated builder (see ``_builder``); anything it
    does not accept outright goes through the converter, which builds it or says what is wrong.

    The message spells out the first few bad fields and counts the others (``... and 3 more``);
    a list with many bad items is not checked to the end (``N more items not checked``).
    """
    try:
        return structure_fast(cls)(data)  # type: ignore[no-any-return]
    except _Doubt:
        pass  # something the builder does not decide alone: the converter decides, and explains
    try:
        return _CONVERTER.structure(data, cls)
    except (ClassValidationError, IterableValidationError, TypeError, ValueError) as exc:
        unchecked: list[str] = []
        lines = _error_lines(exc, "$", unchecked)
        hidden = len(lines) - _MAX_SHOWN_ERRORS
        message = "; ".join(lines[:_MAX_SHOWN_ERRORS])
        if hidden > 0:
            message += f" ... and {hidden} more"
        if unchecked:
            message += " (" + "; ".join(unchecked) + ")"
        raise ResponseError(f"{cls.__name__} does not match the API: {message}") from exc


def _api_value(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.strftime(TIME_FORMAT)
    if isinstance(value, tuple):
        return [unstructure(item) for item in value]
    return value


def unstructure(obj: Any) -> dict[str, Any]:
    """Return the camelCase dict for a model: known fields in API order, then extras."""
    absent: frozenset[str] = obj._absent
    out = {
        camel: _api_value(getattr(obj, name))
        for name, camel in _camel_names(type(obj))
        if camel not in absent
    }
    out.update(obj.extra)
    return out
