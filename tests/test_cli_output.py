"""``aiocontainer.cli._output``: server text shown safely, JSON at any depth (no processes)."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone

import pytest
from rich.console import Console

from aiocontainer import InstanceDetail, StatusChange
from aiocontainer.cli import _output
from aiocontainer.errors import ApiError, ResponseError, TransportError
from tests.conftest import seed_envelope

HOSTILE = (
    "[/bold] [link=https://evil.example]click[/link] :smile: "
    "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\u2028\x7f"
)


def hostile_detail() -> InstanceDetail:
    data = seed_envelope()["data"]
    data.update(instanceServiceName=HOSTILE, status="Run\x1b[8mning", duration="[bold]1h")
    return InstanceDetail.from_api(data)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
        ("\x7f\x85\x9b", "\\x7f\\x85\\x9b"),
        ("abc\u202edef\u2066\u2069", "abc\\u202edef\\u2066\\u2069"),
        ("\u2028\u2029\u200e\u200f\u061c", "\\u2028\\u2029\\u200e\\u200f\\u061c"),
        ("12 核心; 4 加速器 — ok", "12 核心; 4 加速器 — ok"),
    ],
)
def test_visible_writes_control_characters_out(raw: str, shown: str) -> None:
    assert _output.visible(raw) == shown


def render(renderable: object, *, color: bool) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=400, force_terminal=color, color_system="truecolor" if color else None
    )
    console.print(renderable)
    return buffer.getvalue()


@pytest.mark.parametrize("color", [False, True])
def test_table_cells_are_never_markup_and_never_raw_control_characters(color: bool) -> None:
    text = render(_output.detail_table([hostile_detail()]), color=color)
    assert "[/bold] [link=https://evil.example]click[/link] :smile:" in text
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eevil\\u2028\\x7f" in text
    assert "Run\\x1b[8mning" in text and "[bold]1h" in text
    assert "\x1b]" not in text, "no OSC sequence: no hyperlink, no window title"
    without_colours = re.sub("\x1b\\[[0-9;]*m", "", text)
    assert "\x1b" not in without_colours and "\x9b" not in text and "\u202e" not in text


def test_summary_table_cells_are_safe_too() -> None:
    detail = hostile_detail()
    text = render(_output.summary_table("final", [(detail.id, detail)]), color=False)
    assert "[link=https://evil.example]" in text and "\x1b" not in text


def change(**fields: object) -> StatusChange:
    values: dict[str, object] = {
        "instance_id": "4c1f43ddb030483e89b55413bee6c004",
        "previous": "Wait\x1b[2Jing",
        "current": "Run\u202ening",
        "detail": hostile_detail(),
        "observed_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        "seq": 2,
        "skipped": ("De\x07ploying",),
    }
    values.update(fields)
    return StatusChange(**values)  # type: ignore[arg-type]


def test_change_lines_show_server_statuses_visibly() -> None:
    line = _output.change_line(change())
    assert line.endswith(
        "4c1f43ddb030483e89b55413bee6c004  Wait\\x1b[2Jing → Run\\u202ening"
        "  (passed De\\x07ploying)"
    )


def test_error_lines_show_server_messages_visibly(capsys: pytest.CaptureFixture[str]) -> None:
    exc = ApiError("10004", "gone \x1b]0;pwned\x07 [/bold]")
    line = _output.error_line("4c1f43ddb030483e89b55413bee6c004", exc)
    assert "\x1b" not in line and "\\x1b]0;pwned\\x07 [/bold]" in line
    _output.print_error(None, exc)
    printed = capsys.readouterr().err
    assert "[/bold]" in printed and "\x1b]" not in printed


def test_json_escapes_what_a_terminal_would_obey_and_reads_back_unchanged() -> None:
    record = {"name": HOSTILE, "ok": "核心"}
    text = _output.dumps(record)
    assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
    assert "\x7f" not in text and "\u2028" not in text
    assert "核心" in text, "readable non-ASCII stays as it is"
    assert json.loads(text) == record


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_json_of_a_value_nested_deeper_than_recursion_allows(depth: int) -> None:
    value: object = "\x1b"
    for level in range(depth):
        value = {"k": value} if level % 2 else [value, 1]
    text = _output.dumps({"data": value})
    # Built from both ends in linear time: wrapping a growing string at every level is quadratic.
    opening = ['{"k": ' if level % 2 else "[" for level in range(depth)]
    closing = ["}" if level % 2 else ", 1]" for level in range(depth)]
    expected = "".join(reversed(opening)) + '"\\u001b"' + "".join(closing)
    assert text == f'{{"data": {expected}}}'


def test_emit_turns_a_closed_pipe_into_stdout_closed() -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(_output.StdoutClosed):
        _output.emit("line", Closed())
    lines = io.StringIO()
    _output.emit("one", lines)
    assert lines.getvalue() == "one\n"


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (
            ApiError("10004", "参数无效"),
            "ApiError: no such instance (or not yours) (code 10004, the platform said '参数无效')",
        ),
        (
            ApiError("10008", "权限不足"),
            "ApiError: permission denied: the token is wrong, expired, or not for this API "
            "(code 10008, the platform said '权限不足')",
        ),
        (
            ApiError("99999", ""),
            "ApiError: a code the API documentation does not list (code 99999)",
        ),
        (
            TransportError(
                "ClientConnectorError: Cannot connect to host 127.0.0.1:9 ssl:default "
                "[Connect call failed ('127.0.0.1', 9)] (instance x)"
            ),
            "TransportError: cannot reach http://127.0.0.1:9 (connection refused)",
        ),
        (
            TransportError("ClientConnectorError: [Errno 111] Connection refused"),
            "TransportError: cannot reach http://127.0.0.1:9 (connection refused)",
        ),
        (
            TransportError("no complete answer within 2s (instance x)"),
            "TransportError: cannot reach http://127.0.0.1:9 (no answer in time)",
        ),
        (
            ResponseError("body is not a JSON envelope", snippet='{"code": "0", "da'),
            "ResponseError: truncated or invalid JSON in the answer: body is not a JSON envelope",
        ),
    ],
)
def test_errors_read_as_what_happened(exc: Exception, says: str) -> None:
    assert _output.describe(exc, base_url="http://127.0.0.1:9").startswith(says)
