"""Every log record of the library carries its fields in ``extra=``, for JSON formatters."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aiocontainer import ContainerClient, Credentials, InstanceWatcher, ScnetAuth
from aiocontainer._telemetry import LOG_FIELDS, error_fields, log_fields
from aiocontainer.errors import InvalidParameterError, TransportError
from aiocontainer.simulator import Simulator
from tests.conftest import eventually

UNKNOWN = "0" * 32
DETAIL = "/ai/openapi/v2/instance-service/{id}/detail"


def fields(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in LOG_FIELDS}


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("aiocontainer")]


async def test_retry_and_request_records_carry_their_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiocontainer")
    async with Simulator(instances=1, seed=2, frozen=True, include_seed_instance=False) as sim:
        (only,) = sim.instance_ids()
        sim.fail_times(only, 1, kind="http_503")
        async with ContainerClient(sim.base_url, token=sim.token, backoff_factor=0) as client:
            await client.get_instance(only)
            with pytest.raises(InvalidParameterError):
                await client.get_instance(UNKNOWN)
        token = sim.token
    records = ours(caplog)
    assert records and all(set(LOG_FIELDS) <= set(vars(r)) for r in records)
    (retry,) = [r for r in records if r.levelno == logging.WARNING]
    assert fields(retry) == {
        "instance_id": only,
        "attempt": 1,
        "delay": 0.0,
        "code": None,
        "http_status": 503,
        "endpoint": DETAIL,
    }
    assert retry.getMessage().startswith(f"retrying instance {only} in 0.00s after attempt 1")
    answers = [fields(r) for r in records if r.getMessage().startswith("GET ")]
    assert [(f["instance_id"], f["http_status"]) for f in answers] == [
        (only, 503),
        (only, 200),
        (UNKNOWN, 200),
    ]
    assert all(f["endpoint"] == DETAIL for f in answers)
    assert all(token not in repr(vars(r)) for r in records)


async def test_watcher_records_carry_the_instance_and_the_code(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="aiocontainer")
    async with Simulator(instances=1, seed=2, frozen=True, include_seed_instance=False) as sim:
        async with ContainerClient(sim.base_url, token=sim.token, max_attempts=1) as client:
            checkpoint = tmp_path / "missing" / "statuses.json"
            watcher = InstanceWatcher(
                client, [UNKNOWN], interval=0.05, gone_after=1, checkpoint=checkpoint
            )
            async with watcher:  # no on_error: errors are logged
                await eventually(lambda: watcher.ids == (), within=5)
    records = ours(caplog)
    assert all(set(LOG_FIELDS) <= set(vars(r)) for r in records)
    gone = [r for r in records if "is gone" in r.getMessage()]
    assert len(gone) == 1
    assert (gone[0].instance_id, gone[0].code, gone[0].endpoint) == (UNKNOWN, None, None)  # type: ignore[attr-defined]
    missing = [r for r in records if "does not exist yet" in r.getMessage()]
    assert len(missing) == 1 and fields(missing[0]) == dict.fromkeys(LOG_FIELDS)


def test_error_fields_take_the_code_and_status_of_an_error() -> None:
    api = InvalidParameterError("10004", "bad", instance_id="a" * 32, http_status=200)
    assert error_fields("a" * 32, api) == {
        **log_fields(),
        "instance_id": "a" * 32,
        "code": "10004",
        "http_status": 200,
    }
    assert error_fields(None, TransportError("reset"), attempt=2) == {**log_fields(), "attempt": 2}
    assert list(log_fields()) == list(LOG_FIELDS)


async def test_sign_in_records_carry_their_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiocontainer")
    async with Simulator(instances=1, seed=1) as sim:
        sim.fail_times("tokens", 1)  # the first login answers 503, the retry goes through
        creds = Credentials(sim.user, sim.access_key, sim.secret_key)
        async with ScnetAuth(creds, auth_url=sim.url, platform_url=sim.url) as auth:
            await auth.regions()
    login = "/api/user/v3/tokens"
    records = [r for r in ours(caplog) if getattr(r, "endpoint", None) == login]
    retry = next(r for r in records if r.levelno == logging.WARNING)
    assert fields(retry) == log_fields(
        attempt=1, delay=retry.delay, http_status=503, endpoint=login
    )
    answered = [fields(r) for r in records if r.levelno == logging.DEBUG]
    assert log_fields(http_status=200, endpoint=login) in answered
    for record in ours(caplog):
        assert set(LOG_FIELDS) <= set(vars(record)), record.getMessage()
