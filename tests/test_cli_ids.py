"""``aiocontainer.cli._ids``: ids from stdin, read in pieces (no processes, no sockets)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aiocontainer.cli._exits import UsageError
from aiocontainer.cli._ids import MAX_LINE, id_chunks, read_ids

A = "4c1f43ddb030483e89b55413bee6c004"
B = "0123456789abcdef0123456789abcdef"


def reader(*pieces: bytes) -> Callable[[int], bytes]:
    """A ``read1`` that returns the pieces one call at a time, then b""."""
    queue = list(pieces)

    def read(size: int) -> bytes:
        assert size > 0
        return queue.pop(0) if queue else b""

    return read


def test_ids_come_per_read_whatever_the_line_boundaries() -> None:
    read = reader(f"{A}\n# note\n\n  {B[:10]}".encode(), f"{B[10:]}  \n{A}".encode())
    assert list(id_chunks(read)) == [[A], [B], [A]]


def test_reads_that_bring_no_whole_line_yield_nothing_until_one_is_complete() -> None:
    read = reader(A[:5].encode(), A[5:20].encode(), f"{A[20:]}\n".encode())
    assert list(id_chunks(read)) == [[A]]


@pytest.mark.parametrize(
    ("pieces", "line"),
    [
        ((f"{A}\n".encode(), b"x" * (MAX_LINE + 1) + b"\n"), 2),
        ((f"{A}\n#\n".encode(), b"y" * (MAX_LINE + 10)), 3),  # no newline ever comes
        ((b"z" * 3000, b"z" * 3000), 1),  # too long across two reads
    ],
)
def test_an_over_long_line_is_refused_with_its_number(pieces: tuple[bytes, ...], line: int) -> None:
    with pytest.raises(UsageError, match=f"stdin line {line} is longer than {MAX_LINE} bytes"):
        list(id_chunks(reader(*pieces)))


def test_a_line_of_exactly_the_limit_is_read() -> None:
    exact = "a" * MAX_LINE
    assert list(id_chunks(reader(f"{exact}\n".encode()))) == [[exact]]


def test_a_line_that_is_not_utf8_is_refused_with_its_number() -> None:
    with pytest.raises(UsageError, match="stdin line 2 is not UTF-8"):
        list(id_chunks(reader(f"{A}\n\xff\n".encode("latin-1"))))


def test_read_ids_keeps_the_order_of_arguments_and_stdin() -> None:
    assert read_ids([B, "-", A], reader(f"{A}\n{B}\n".encode())) == [B, A, B, A]
    with pytest.raises(UsageError, match="no instance ids"):
        read_ids(["-"], reader(b"# only a comment\n"))
