"""The JSON boundary: only JSONError for bad documents, bounded depth, one behaviour per backend."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import sys
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiocontainer import _json
from aiocontainer._json import MAX_DEPTH, JSONError, dumps, loads

HAVE_ORJSON = _json._orjson_loads is not None
BACKENDS = [
    pytest.param(False, id="stdlib"),
    pytest.param(
        True,
        id="orjson",
        marks=pytest.mark.skipif(not HAVE_ORJSON, reason="orjson is not installed"),
    ),
]


@pytest.fixture(params=BACKENDS)
def use_orjson(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def nested(depth: int, inner: str = "") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


# -- depth -----------------------------------------------------------------------------------------


def test_nesting_up_to_the_bound_is_accepted(use_orjson: bool) -> None:
    value = loads(nested(MAX_DEPTH), use_orjson=use_orjson)
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deeper_nesting_is_a_json_error_never_a_recursion_error(
    use_orjson: bool, depth: int
) -> None:
    with pytest.raises(JSONError, match="nested deeper than 64"):
        loads(nested(depth), use_orjson=use_orjson)


def test_deep_objects_and_unclosed_brackets_are_refused(use_orjson: bool) -> None:
    deep_objects = '{"a":' * 200 + "1" + "}" * 200
    with pytest.raises(JSONError, match="nested"):
        loads(deep_objects, use_orjson=use_orjson)
    with pytest.raises(JSONError, match="nested"):
        loads(b"[" * 1_000_000, use_orjson=use_orjson)


def test_long_documents_are_scanned_for_depth_not_counted(use_orjson: bool) -> None:
    # Past _COUNTED bytes the brackets are not counted first: a long shallow page with a
    # thousand of them passes, and a long document nested one level too deep does not.
    page = json.dumps({"data": [{"id": "x" * 32, "ports": [{"p": [1]}]} for _ in range(400)]})
    assert len(page) > _json._COUNTED
    assert loads(page, use_orjson=use_orjson) == json.loads(page)
    filler = ",".join(["0"] * _json._COUNTED)
    assert loads(nested(MAX_DEPTH, filler), use_orjson=use_orjson) is not None
    with pytest.raises(JSONError, match="nested deeper"):
        loads(nested(MAX_DEPTH + 1, filler), use_orjson=use_orjson)


def test_brackets_inside_strings_do_not_count(use_orjson: bool) -> None:
    text = json.dumps({"a": "[" * 500, "b": ['\\"[[[' * 100, "}}}" * 100, "x\\"]})
    assert loads(text, use_orjson=use_orjson) == json.loads(text)


def test_an_escaped_backslash_before_a_quote_ends_the_string(use_orjson: bool) -> None:
    # "\\" is a complete string: the brackets after it are real and count.
    deep = '["\\\\",' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "]"
    with pytest.raises(JSONError, match="nested"):
        loads(deep, use_orjson=use_orjson)


def reference_depth(data: bytes) -> int:
    """Character by character: the depth outside strings, a backslash escaping the next byte."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        char = chr(byte)
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_string:
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@settings(deadline=None)  # a shared machine's timings vary too much for a deadline
@given(st.text(alphabet='"\\[]{}a,', max_size=200))
def test_the_depth_scan_agrees_with_a_character_by_character_reading(text: str) -> None:
    data = text.encode()
    assert _json._depth_of(_json._brackets(data)) == reference_depth(data)


def balanced(brackets: str) -> bool:
    depth = 0
    for char in brackets:
        depth += 1 if char == "[" else -1
        if depth < 0:
            return False
    return depth == 0


@settings(deadline=None)
@given(st.text(alphabet="[]", max_size=300), st.integers(min_value=0, max_value=12))
def test_peeling_innermost_pairs_finds_exactly_the_balanced_and_shallow(
    brackets: str, limit: int
) -> None:
    expected = balanced(brackets) and reference_depth(brackets.encode()) <= limit
    assert _json._balanced_within(brackets.encode(), limit) is expected


@settings(deadline=None)
@given(
    st.integers(min_value=MAX_DEPTH - 3, max_value=MAX_DEPTH + 3),
    st.lists(st.sampled_from(['"a[{"', "1", "{}", "[[]]", '{"k":[]}', '"\\"']), max_size=6),
    st.sampled_from(["", "]", "[", "]]", '"']),
)
def test_the_depth_check_refuses_exactly_what_nests_too_deep(
    depth: int, pieces: list[str], tail: str
) -> None:
    # Nesting around other values, closed or not (a malformed tail): the check refuses a
    # document exactly when a character-by-character reading finds it deeper than the bound.
    inner = ",".join(pieces)
    data = ("[" * depth + inner + "]" * depth + tail).encode()
    if reference_depth(data) > MAX_DEPTH:
        with pytest.raises(JSONError, match="nested deeper"):
            _json._check_depth(data)
    else:
        _json._check_depth(data)


# -- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["1e400", "-1e400", "[1E+999]", "NaN", "Infinity", "-Infinity", '{"a": NaN}', "1" * 400 + ".5"],
)
def test_non_finite_numbers_are_refused(use_orjson: bool, text: str) -> None:
    with pytest.raises(JSONError):
        loads(text, use_orjson=use_orjson)


def test_large_finite_numbers_are_kept(use_orjson: bool) -> None:
    assert loads("[1e308, -2.5e-300, 9223372036854775807]", use_orjson=use_orjson) == [
        1e308,
        -2.5e-300,
        9223372036854775807,
    ]


BIG = "12345678901234567890"  # beyond 64 bits: orjson would make it a float


@pytest.mark.parametrize(
    "text",
    [
        BIG,
        f"-{BIG}",
        f"[{BIG}]",
        f"[1, {BIG}]",
        f'{{"a":{BIG}}}',
        f'{{"a": \n\t-{BIG}}}',
        f'["574e90582a90440220468796399079a0", {BIG}]',  # a long run in a string, then a number
    ],
)
def test_integers_beyond_64_bits_stay_exact(use_orjson: bool, text: str) -> None:
    assert loads(text, use_orjson=use_orjson) == json.loads(text)
    assert "." not in repr(loads(text, use_orjson=use_orjson))


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ('{"id":"574e90582a90440220468796399079a0"}', False),  # 20 digits inside a hex id
        ('["9044022046879639907900"]', False),  # a string of digits
        ('["x_9044022046879639907900"]', False),
        ('["x 9044022046879639907900"]', True),  # after a space it may be a number: safe side
        ("[1.90440220468796399079]", True),  # a fraction: read by the standard library too
        ("[1e90440220468796399079]", True),
        ('{"a":90440220468796399079}', True),
        ('{"a":-90440220468796399079}', True),
        ("90440220468796399079", True),
        ('["a:90440220468796399079"]', True),  # looks like a number: the safe side
        ('["' + "1-" * 40 + '90440220468796399079"]', True),  # followed back too far: a number
        ('["x' + "7" * 50 + '"]', False),  # a run longer than two searches, inside a string
        ('["x' + "7" * 200 + '"]', False),  # longer than a token is followed back, all the same
        ('["x' + "7" * 50 + '", 12345678901234567890]', True),  # then a number after it
    ],
)
def test_a_long_run_of_digits_counts_only_where_a_number_can_be(text: str, number: bool) -> None:
    data = text.encode()
    assert _json._long_integer(data, data.translate(_json._MARKS)) is number


@pytest.mark.skipif(not HAVE_ORJSON, reason="orjson is not installed")
def test_hex_ids_with_long_runs_of_digits_stay_on_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    page = json.dumps({"data": [{"id": "574e90582a90440220468796399079a0", "n": 5}] * 50})

    def refuse(data: bytes) -> Any:
        raise AssertionError("read by the standard library")

    monkeypatch.setattr(_json, "_stdlib_loads", refuse)
    assert loads(page) == json.loads(page)
    with pytest.raises(AssertionError, match="standard library"):
        loads(f"[{BIG}]")


# -- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'"\\ud800"',
        b'"\\udc00"',
        b'["ok", "\\ud83dx"]',
        b'{"\\udfff": 1}',
        b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8 bytes
        b'"\xff"',
        b"\xef\xbb\xbf{}",  # a byte order mark
        '"\ud800"',  # str input with a raw lone surrogate
        '{"a": 1}'.encode("utf-16"),
    ],
)
def test_text_that_is_not_unicode_is_refused(use_orjson: bool, raw: bytes | str) -> None:
    with pytest.raises(JSONError):
        loads(raw, use_orjson=use_orjson)


def test_paired_surrogates_and_escaped_backslashes_are_fine(use_orjson: bool) -> None:
    assert loads(b'["\\ud83d\\ude00", "\\\\ud800"]', use_orjson=use_orjson) == ["😀", "\\ud800"]


def test_bytes_like_input_is_accepted_and_other_types_are_a_type_error(use_orjson: bool) -> None:
    assert loads(bytearray(b"[1]"), use_orjson=use_orjson) == [1]
    assert loads(memoryview(b"[2]"), use_orjson=use_orjson) == [2]
    with pytest.raises(TypeError):
        loads(5, use_orjson=use_orjson)  # type: ignore[arg-type]


def test_messages_do_not_quote_the_document(use_orjson: bool) -> None:
    with pytest.raises(JSONError) as info:
        loads(b'{"token": "s3cr3t-value", oops}', use_orjson=use_orjson)
    assert "s3cr3t" not in str(info.value)
    assert info.value.__cause__ is None
    assert isinstance(info.value, ValueError)


# -- any input -------------------------------------------------------------------------------------


def outcomes(raw: bytes | str) -> list[tuple[str, Any]]:
    """What each backend makes of ``raw``; anything but a value or a JSONError escapes."""
    results = []
    for backend in (False, True) if HAVE_ORJSON else (False,):
        try:
            results.append(("ok", loads(raw, use_orjson=backend)))
        except JSONError:
            results.append(("error", None))
    return results


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_json_error_and_backends_agree(raw: bytes) -> None:
    results = outcomes(raw)
    assert all(result == results[0] for result in results), results


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='"\\[]{}:,0123456789.eE-+ tfnaulrsu\ud800\udc00é', max_size=120))
def test_any_text_decodes_or_raises_json_error_and_backends_agree(text: str) -> None:
    results = outcomes(text)
    assert all(result == results[0] for result in results), results


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(deadline=None)  # a shared machine's timings vary too much for a deadline
@given(json_values, st.booleans())
def test_dumps_and_loads_round_trip_on_both_backends(value: Any, indent: bool) -> None:
    for backend in (False, True) if HAVE_ORJSON else (False,):
        encoded = dumps(value, indent=indent, use_orjson=backend)
        assert loads(encoded, use_orjson=False) == value
        if HAVE_ORJSON:
            assert loads(encoded, use_orjson=True) == value


# -- dumps -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        [1.0, float("inf")],
        {"a": {"b": -math.inf}},
        "\ud800",
        {"k\udc00": 1},
        {1: "int key"},
        {None: 1},
        object(),
        dt.datetime(2024, 1, 1),
        {1, 2},
    ],
    ids=repr,
)
def test_dumps_refuses_what_json_cannot_carry(use_orjson: bool, value: Any) -> None:
    with pytest.raises(JSONError):
        dumps(value, use_orjson=use_orjson)


def test_dumps_bounds_depth_and_catches_cycles(use_orjson: bool) -> None:
    value: list[Any] = []
    inner = value
    for _ in range(MAX_DEPTH - 1):
        inner.append([])
        inner = inner[0]
    assert loads(dumps(value, use_orjson=use_orjson)) == value
    inner.append([])
    with pytest.raises(JSONError, match="nested deeper"):
        dumps(value, use_orjson=use_orjson)

    cycle: list[Any] = []
    cycle.append(cycle)
    cycle.append(cycle)
    with pytest.raises(JSONError, match="circular"):
        dumps(cycle, use_orjson=use_orjson)

    very_deep: list[Any] = []
    for _ in range(100_000):
        very_deep = [very_deep]
    with pytest.raises(JSONError):
        dumps(very_deep, use_orjson=use_orjson)


def test_dumps_writes_compact_utf8_and_exact_big_integers(use_orjson: bool) -> None:
    assert dumps({"名": [1, 2**70, (True, None)]}, use_orjson=use_orjson) == (
        '{"名":[1,1180591620717411303424,[true,null]]}'.encode()
    )
    pretty = dumps({"a": [1]}, indent=True, use_orjson=use_orjson)
    assert pretty == b'{\n  "a": [\n    1\n  ]\n}'


# -- without orjson --------------------------------------------------------------------------------


def load_without_orjson(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of the module imported while orjson cannot be imported."""
    monkeypatch.setitem(sys.modules, "orjson", None)
    spec = importlib.util.spec_from_file_location("_json_without_orjson", _json.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_module_works_where_orjson_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_without_orjson(monkeypatch)
    assert module._orjson_loads is None
    assert module.loads(b'{"a": [1.5, "x"]}') == {"a": [1.5, "x"]}
    assert module.dumps({"a": 1}) == b'{"a":1}'
    for bad in (nested(10_000), b"1e400", b'"\\ud800"', b"{"):
        with pytest.raises(module.JSONError):
            module.loads(bad)
    with pytest.raises(RuntimeError, match="orjson is not installed"):
        module.loads(b"1", use_orjson=True)
