"""JSON for foreign bytes: one decoder and one encoder, bounded, with or without orjson.

Every parser the library runs on bytes it did not write (response bodies, checkpoint files, token
payloads) goes through :func:`loads`, and everything it writes for later reading goes through
:func:`dumps`. Both answer any bad input with :class:`JSONError` (a ``ValueError``), nothing else:

- malformed JSON, bytes that are not UTF-8 (a byte order mark included) and text holding lone
  surrogates (raw, or as ``\\ud800``-style escapes without their pair);
- nesting deeper than :data:`MAX_DEPTH` arrays/objects. The depth is measured before the parser
  runs, without recursion, so a deeply nested body never reaches a recursive parser and never
  becomes a ``RecursionError``;
- non-finite numbers: ``NaN``, ``Infinity`` and numbers too large for a float such as ``1e400``.

orjson (the ``speedups`` extra) is used when it is installed, else the standard library; both
paths accept and refuse the same documents and return the same values (orjson would turn an
integer beyond 64 bits into a float: a document with a run of 19 digits outside a string is read by
the standard library instead, so integers stay exact; a long run of digits inside a hexadecimal id
does not count).

This module imports neither aiohttp nor asyncio.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from itertools import accumulate
from typing import Any, Final

__all__ = ["MAX_DEPTH", "JSONError", "dumps", "fingerprint", "loads"]

#: Deepest nesting of arrays and objects accepted by :func:`loads` and :func:`dumps`.
MAX_DEPTH: Final = 64


class JSONError(ValueError):
    """A document that cannot be decoded or encoded; the message says why, never what it held."""


_orjson_loads: Callable[[bytes], Any] | None
_orjson_dumps: Callable[..., bytes] | None
try:  # orjson is optional (the ``speedups`` extra).
    import orjson

    _orjson_loads = orjson.loads
    _orjson_dumps = orjson.dumps
    _ORJSON_INDENT: int = orjson.OPT_INDENT_2
    # datetimes and dataclasses are refused as the standard library refuses them.
    _ORJSON_OPTIONS: int = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
except ImportError:  # pragma: no cover - exercised where orjson is absent
    _orjson_loads = None
    _orjson_dumps = None
    _ORJSON_INDENT = 0
    _ORJSON_OPTIONS = 0

# Only these bytes matter for the depth: quotes (where strings begin and end) and brackets.
_KEEP: Final = b'"[]{}'
_DROP: Final = bytes(b for b in range(256) if b not in _KEEP)
# Objects nest as arrays do: "{" and "}" are read as "[" and "]".
_AS_SQUARE: Final = bytes.maketrans(b"{}", b"[]")
# "[" becomes +1 and "]" becomes -1 (as signed bytes).
_STEP: Final = bytes.maketrans(b"[]", b"\x01\xff")
# An escape inside a string: a backslash and the character after it (\" and \\ included).
_ESCAPE_RE: Final = re.compile(rb"\\.", re.DOTALL)
# A \u escape of a surrogate, high or low; only bodies holding one are checked after parsing.
_SURROGATE_ESCAPE_RE: Final = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_BOM: Final = b"\xef\xbb\xbf"
# 19 digits in a row may be an integer outside orjson's exact range (-2**63 .. 2**64-1). Found by
# turning every digit into "0" and searching for 19 of them: much faster than a regex scan.
# The same copy turns "{" into "[", so that one count gives the brackets that open.
_MARKS: Final = bytes.maketrans(b"123456789{", b"000000000[")
_LONG_DIGITS: Final = b"0" * 19
_ZEROS_RE: Final = re.compile(rb"0*")
# What a number's digits may follow inside its token, and what may come just before the token.
_NUMBER_BYTES: Final = frozenset(b"0123456789.eE+-")
_BEFORE_NUMBER: Final = frozenset(b":[,{ \t\r\n")
# How far back a run's token is followed before the run is taken for a number all the same.
_TOKEN_REACH: Final = 64
# The longest document whose brackets are counted before it is scanned.
_COUNTED: Final = 16384


def _brackets(data: bytes) -> bytes:
    """The brackets of ``data`` that lie outside strings, in order, "{" and "}" as "[" and "]".

    Linear, at C speed: escapes are dropped, then everything but quotes and brackets, then every
    pair of adjacent quotes (an empty string, or the end of one string and the start of the next
    with no bracket between them: either way no bracket outside a string goes). What quotes are
    left enclose brackets inside strings, which are dropped with them. An unterminated last
    string (an odd count of quotes) is dropped whole; a parser refuses it anyway.
    """
    if b"\\" in data:
        data = _ESCAPE_RE.sub(b"", data)
    marks = data.translate(None, _DROP).replace(b'""', b"")
    if b'"' in marks:
        # Quotes now alternate: even pieces lie outside strings.
        marks = b"".join(marks.split(b'"')[::2])
    return marks.translate(_AS_SQUARE)


def _depth_of(brackets: bytes) -> int:
    """The deepest nesting of a document whose ``_brackets`` are given.

    Without recursion, at C speed. For a document that is valid up to some point the result
    bounds the depth any parser reaches before that point, so it is safe to check before parsing.
    """
    return max(accumulate(memoryview(brackets.translate(_STEP)).cast("b"), initial=0))


def _balanced_within(brackets: bytes, limit: int) -> bool:
    """Whether ``brackets`` pair up completely, nested no deeper than ``limit``.

    Each round takes out every innermost pair ("[]"): a pair goes in the round equal to its
    height, so ``limit`` rounds empty a balanced sequence exactly when its depth is at most
    ``limit``. A few short passes instead of a step per bracket; False says nothing more.
    """
    for _ in range(limit):
        if not brackets:
            return True
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            return False  # no pair left, yet something is: unbalanced
        brackets = inner
    return not brackets


def _long_integer(data: bytes, marks: bytes) -> bool:
    """Whether a run of 19 digits or more in ``data`` may be an integer outside a string.

    ``marks`` is ``data`` translated by ``_MARKS`` (every digit a "0"). A run is in a number
    only if its token, followed back over the bytes a number holds, starts at the document's
    start or after a bracket, a comma, a colon or white space. After anything else (a letter or
    a quote, as in a hexadecimal id) the run lies inside a string, or the document is malformed
    and either parser refuses it; a token longer than ``_TOKEN_REACH`` counts as a number. The
    work is linear: each run is found by a substring search, and followed back at most that far.
    """
    at = marks.find(_LONG_DIGITS)
    while at >= 0:
        zeros = _ZEROS_RE.match(marks, at)  # "0*" matches at any position
        end = zeros.end() if zeros is not None else at + len(_LONG_DIGITS)
        stop = max(at - _TOKEN_REACH, 0)
        while at > stop and data[at - 1] in _NUMBER_BYTES:
            at -= 1
        if at == 0 or at == stop or data[at - 1] in _BEFORE_NUMBER:
            return True
        at = marks.find(_LONG_DIGITS, end)  # the next run, past the whole of this one
    return False


def _check_depth(data: bytes, marks: bytes | None = None) -> None:
    """Refuse ``data`` nested deeper than ``MAX_DEPTH`` (``marks``: see ``_MARKS``, if made).

    A short document is first let through on a count of all its brackets, strings' included: a
    detail answer has a dozen. A long one (a list page has a thousand) goes straight to the scan.
    """
    if len(data) <= _COUNTED:
        openings = data.count(b"[") + data.count(b"{") if marks is None else marks.count(b"[")
        if openings <= MAX_DEPTH:
            return
    brackets = _brackets(data)
    if brackets.count(b"[") <= MAX_DEPTH or _balanced_within(brackets, MAX_DEPTH):
        return  # the usual document: few brackets outside strings, or paired and shallow
    if _depth_of(brackets) > MAX_DEPTH:
        raise JSONError(f"JSON nested deeper than {MAX_DEPTH} levels")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONError("JSON number out of range for a float")
    return value


def _refuse_constant(name: str) -> Any:
    raise JSONError(f"JSON does not allow {name}")


def _stdlib_loads(data: bytes) -> Any:
    # Decoded here rather than by json.loads, which would also guess UTF-16/32 and accept a BOM.
    text = data.decode("utf-8")
    return json.loads(text, parse_float=_finite_float, parse_constant=_refuse_constant)


#: The decoder used unless one is asked for.
_DEFAULT_LOADS: Final = _orjson_loads or _stdlib_loads


def _describe(exc: Exception) -> str:
    if isinstance(exc, UnicodeError):
        return "JSON text is not valid UTF-8"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    # orjson's messages and int()'s digit limit say what went wrong without quoting the input.
    return f"invalid JSON: {exc}"


def _as_bytes(raw: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(raw, str):
        try:
            return raw.encode("utf-8")
        except UnicodeEncodeError:
            raise JSONError("JSON text holds a lone surrogate") from None
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    raise TypeError(f"JSON input must be bytes or str, not {type(raw).__name__}")


def loads(raw: bytes | bytearray | memoryview | str, *, use_orjson: bool | None = None) -> Any:
    """Decode one JSON document; raise :class:`JSONError` for anything but a sound one.

    ``use_orjson`` forces a backend (``False``: the standard library; ``True``: orjson, which
    must be installed); by default orjson is used when it is installed.
    """
    data = raw if type(raw) is bytes else _as_bytes(raw)
    if data.startswith(_BOM):
        raise JSONError("JSON text starts with a byte order mark")
    parse = _DEFAULT_LOADS if use_orjson is None else _backend_loads(use_orjson)
    marks = None
    if parse is not _stdlib_loads:
        # One pass serves both checks orjson needs: digits become "0" (a run of 19 outside a
        # string may be an integer orjson would turn into a float) and "{" becomes "[" (so one
        # count bounds the depth). Lone surrogates orjson refuses itself.
        marks = data.translate(_MARKS)
        if _LONG_DIGITS in marks and _long_integer(data, marks):
            parse = _stdlib_loads
    _check_depth(data, marks)
    try:
        value = parse(data)
    except JSONError:
        raise
    except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise JSONError(_describe(exc)) from None
    if parse is _stdlib_loads and b"\\u" in data and _SURROGATE_ESCAPE_RE.search(data):
        # Only the standard library lets an unpaired \ud800 through; what it returns could never
        # be written again as UTF-8, so it is refused here like orjson refuses it.
        _refuse_surrogates(value)
    return value


def _backend_loads(use_orjson: bool) -> Callable[[bytes], Any]:
    """The backend asked for (``loads`` takes ``_DEFAULT_LOADS`` when none is)."""
    if use_orjson:
        if _orjson_loads is None:
            raise RuntimeError("orjson is not installed")
        return _orjson_loads
    return _stdlib_loads


def _refuse_surrogates(value: Any) -> None:
    """Walk a decoded document without recursion; refuse a string that is not valid Unicode."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: Any = (item,)
        elif isinstance(item, dict):
            strings = item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise JSONError("JSON string holds a lone surrogate") from None


_SCALARS: Final = frozenset({str, int, bool, type(None)})
_CONTAINERS: Final = frozenset({dict, list, tuple})


def _check_encodable(obj: Any) -> None:
    """Refuse, without recursion, what one backend or the other would not write faithfully.

    Walks one level of containers at a time: nesting deeper than :data:`MAX_DEPTH` (which a
    cycle always is), a dict key that is not a string (the standard library would turn it into
    one), a float that is NaN or infinite (orjson would write ``null``). Other types, and
    strings with lone surrogates, are left to the encoder, which refuses them.
    """
    level: list[Any] = []
    _check_items((obj,), level)
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise JSONError(f"JSON nested deeper than {MAX_DEPTH} levels (or circular)")
        seen: set[int] = set()
        below: list[Any] = []
        for container in level:
            if id(container) in seen:  # shared or circular: walked once per level
                continue
            seen.add(id(container))
            if isinstance(container, dict):
                for key in container:
                    if not isinstance(key, str):
                        raise JSONError(
                            f"JSON object keys must be strings, not {type(key).__name__}"
                        )
                _check_items(container.values(), below)
            else:
                _check_items(container, below)
        level = below


def _check_items(items: Iterable[Any], containers: list[Any]) -> None:
    """Check the scalars among ``items`` and append the containers to ``containers``."""
    for item in items:
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind in _CONTAINERS or isinstance(item, dict | list | tuple):
            containers.append(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise JSONError("JSON cannot carry NaN or an infinite number")


def dumps(obj: Any, *, indent: bool = False, use_orjson: bool | None = None) -> bytes:
    """Encode ``obj`` as UTF-8 JSON; raise :class:`JSONError` for what JSON cannot carry.

    Accepted: dicts with string keys, lists, tuples, strings, ints, finite floats, booleans and
    None (subclasses included), nested at most :data:`MAX_DEPTH` deep. Refused: other types
    (orjson, when used, writes the few it knows natively, such as enums and UUIDs), non-string
    keys, NaN and infinities, strings with lone surrogates. ``indent=True`` writes
    one item a line, indented by two spaces. ``use_orjson`` as for :func:`loads`.
    """
    _check_encodable(obj)
    if use_orjson is None:
        use_orjson = _orjson_dumps is not None
    if use_orjson:
        if _orjson_dumps is None:
            raise RuntimeError("orjson is not installed")
        try:
            return _orjson_dumps(obj, option=_ORJSON_OPTIONS | (_ORJSON_INDENT if indent else 0))
        except TypeError:
            pass  # an int beyond 64 bits: the standard library writes it exactly
    try:
        text = json.dumps(
            obj,
            ensure_ascii=False,
            allow_nan=False,
            indent=2 if indent else None,
            separators=(",", ": ") if indent else (",", ":"),
        )
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise JSONError("JSON string holds a lone surrogate") from None
    except (TypeError, ValueError) as exc:  # a type JSON cannot carry
        raise JSONError(f"cannot encode as JSON: {exc}") from None


def fingerprint(value: Any) -> int | None:
    """A 64-bit hash of ``value`` encoded by orjson, or None without orjson (or if it cannot).

    For values :func:`loads` returned: equal encodings give equal hashes, and different ones
    differ but by a 2**-64 chance (Python's keyed hash of the bytes). The standard library's
    encoder is not used: it costs about what building a model from the value does.
    """
    if _orjson_dumps is None:
        return None
    try:
        return hash(_orjson_dumps(value))
    except TypeError:  # an int beyond 64 bits
        return None
