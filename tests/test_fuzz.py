"""Property tests: hostile bodies and ids never escape as anything but our own errors."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiocontainer import AiocontainerError, ContainerClient, InstanceDetail, InvalidInstanceIdError
from aiocontainer._protocol import parse_detail_response
from tests.conftest import TOKEN, Reply, ScriptedServer, seed_envelope

SEED_DATA = seed_envelope()["data"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def parse_whole(status: int, body: bytes) -> InstanceDetail:
    """What the client does with an answer: envelope, then the model."""
    return InstanceDetail.from_api(parse_detail_response(status, body, instance_id="x"))


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=512), status=st.sampled_from([200, 201, 302, 404, 429, 500, 502]))
def test_arbitrary_bytes_raise_only_our_errors(body: bytes, status: int) -> None:
    with contextlib.suppress(AiocontainerError):
        parse_whole(status, body)


@settings(max_examples=400, deadline=None)
@given(payload=json_values, status=st.sampled_from([200, 500]))
def test_arbitrary_json_raises_only_our_errors(payload: Any, status: int) -> None:
    with contextlib.suppress(AiocontainerError):
        parse_whole(status, json.dumps(payload).encode())


# Envelopes built around the seed's data: up to four documented fields replaced by any JSON
# value, up to five removed, up to three unknown keys joined. Whatever parses must write back
# exactly. A few replaced fields at a time, not any number: one refused value refuses a document,
# so with about half the fields replaced few documents parse (41 of 500 in one run, against 95
# with at most four), and each takes three times as long to draw.
data_shapes = st.dictionaries(st.sampled_from(sorted(SEED_DATA)), json_values, max_size=4).flatmap(
    lambda replaced: st.builds(
        lambda dropped, extra: {
            **{k: v for k, v in SEED_DATA.items() if k not in dropped},
            **replaced,
            **extra,
        },
        st.sets(st.sampled_from(sorted(SEED_DATA)), max_size=5),
        st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=3),
    )
)


@settings(max_examples=500, deadline=None)
@given(
    data=data_shapes,
    code=st.sampled_from(["0", 0, "10001", "10004", "10008", "123", None, 1.5, ["0"]]),
)
def test_arbitrary_envelopes_are_lossless_or_refused(data: dict[str, Any], code: Any) -> None:
    envelope = {"code": code, "msg": "m", "data": data}
    try:
        detail = parse_whole(200, json.dumps(envelope).encode())
    except AiocontainerError:
        return
    assert detail.to_api() == json.loads(json.dumps(data))


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.text(max_size=15), json_values, max_size=8))
def test_arbitrary_objects_are_lossless_or_refused(data: dict[str, Any]) -> None:
    try:
        detail = InstanceDetail.from_api(data)
    except AiocontainerError:
        return
    assert detail.to_api() == data


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(instance_id=st.text(max_size=140) | st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True))
async def test_arbitrary_ids_are_refused_or_sent_verbatim(
    server: ScriptedServer, instance_id: str
) -> None:
    before = len(server.seen)
    async with ContainerClient(server.base_url, token=TOKEN, max_attempts=1) as client:
        try:
            detail = await client.get_instance(instance_id)
        except InvalidInstanceIdError:
            assert len(server.seen) == before
            return
    assert detail.id == instance_id
    assert len(server.seen) == before + 1
    assert server.seen[-1].raw_path == f"/ai/openapi/v2/instance-service/{instance_id}/detail"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
async def test_arbitrary_bodies_over_http_raise_only_our_errors(
    server: ScriptedServer, body: bytes
) -> None:
    server.default = lambda _id: Reply(status=200, body=body)
    async with ContainerClient(server.base_url, token=TOKEN, max_attempts=1) as client:
        with contextlib.suppress(AiocontainerError):
            await client.get_instance("abc")
