"""Runs the command line's ``main`` inside the test process, in a worker thread.

Starting ``python -m aiocontainer`` costs about a second of imports on this machine, more than
most CLI tests spend on what they check. ``InProcessCli.run`` calls
``aiocontainer.cli.main(argv)`` in a thread of its own (its ``asyncio.run`` cannot share the
test's event loop, which keeps serving the simulator), with the given environment, stdin bytes,
and stdout/stderr captured as bytes, and returns the same ``Result`` a process would.

What only a real process shows stays with a subprocess, and ``run`` passes such calls on to
``Cli.run`` by itself: another interpreter command (``without_rich``), a stderr that is not a
pipe (a pseudo-terminal, or merged into stdout), a stdin kept open, and ``-v``/``-vv`` (their
log handler sits on the root logger, which in this process also hears the simulator). Each CLI
test module keeps a few plain runs on ``cli.process`` too: those prove the installed command
works end to end (``-W error`` at interpreter exit included). ``start`` always starts a process:
signals, pipes and lines read while the command runs need one.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from aiocontainer.cli import main
from tests.conftest import RUN_TIMEOUT, Cli, Result, assert_secret_free

_DEFAULT_PYTHON = ("-m", "aiocontainer")
# sys.stdin/stdout/stderr and os.environ are process-wide: one in-process run at a time.
_ONE_AT_A_TIME = threading.Lock()


def _verbose(args: Sequence[str]) -> bool:
    return any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args)


class _Env:
    """Replace os.environ wholesale for the run, then put the old one back."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.saved: dict[str, str] = {}

    def __enter__(self) -> None:
        self.saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        os.environ.clear()
        os.environ.update(self.saved)


def call_main(argv: Sequence[str], env: dict[str, str], stdin: bytes) -> tuple[int, str, str]:
    """``main(argv)`` with this environment and stdin; exit code, stdout and stderr as text.

    Exit codes follow the interpreter's: ``main``'s return value, ``SystemExit``'s code, and 1
    with the traceback on stderr for an exception nothing caught.
    """
    # A run that never ended (its test failed at RUN_TIMEOUT) still holds the lock: fail, not hang.
    assert _ONE_AT_A_TIME.acquire(timeout=RUN_TIMEOUT), "an earlier in-process run never ended"
    try:
        return _call_main(argv, env, stdin)
    finally:
        _ONE_AT_A_TIME.release()


def _call_main(argv: Sequence[str], env: dict[str, str], stdin: bytes) -> tuple[int, str, str]:
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(
        io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True
    )
    given = io.TextIOWrapper(io.BufferedReader(io.BytesIO(stdin)), encoding="utf-8")
    root = logging.getLogger()
    logged = (root.level, list(root.handlers), logging.getLogger("aiocontainer").level)
    with _Env(env):
        streams = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = given, out, err
        try:
            try:
                code: Any = main(list(argv))
            except SystemExit as exc:
                code = exc.code
            except BaseException:
                traceback.print_exc(file=err)
                code = 1
            if code is None:
                code = 0
            elif not isinstance(code, int):
                print(code, file=err)
                code = 1
            out.flush()
            err.flush()
        finally:
            sys.stdin, sys.stdout, sys.stderr = streams
            root.setLevel(logged[0])
            root.handlers[:] = logged[1]
            logging.getLogger("aiocontainer").setLevel(logged[2])
    assert isinstance(out.buffer, io.BytesIO) and isinstance(err.buffer, io.BytesIO)
    return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()


class InProcessCli(Cli):
    """``Cli`` whose ``run`` calls ``main`` in this process where a process adds nothing.

    ``process`` is a plain ``Cli`` on the same endpoint, for the runs that must be real.
    """

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.process = Cli(sim)

    async def run(self, *args: str, **options: Any) -> Result:
        python = options.get("python", _DEFAULT_PYTHON)
        stderr = options.get("stderr", asyncio.subprocess.PIPE)
        if (
            tuple(python) != _DEFAULT_PYTHON
            or stderr != asyncio.subprocess.PIPE
            or options.get("keep_stdin")
            or _verbose(args)
        ):
            return await super().run(*args, **options)
        env = options.get("env")
        stdin = options.get("stdin")
        data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
        code, out, err = await asyncio.wait_for(
            asyncio.to_thread(call_main, args, self.env() if env is None else env, data),
            RUN_TIMEOUT,
        )
        result = Result(code, out, err)
        assert_secret_free(result, self.secrets)
        return result
