"""Models and the converter: the seed round trip, strictness, extras, statuses."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiocontainer import (
    InstanceDetail,
    InstanceStatus,
    MountInfo,
    PortInfo,
    ResponseError,
    StatusChange,
)


@pytest.fixture
def data(seed: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(seed["data"])


def test_seed_example_round_trips_exactly(data: dict[str, Any]) -> None:
    original = copy.deepcopy(data)
    detail = InstanceDetail.from_api(data)
    assert detail.to_api() == original
    assert list(detail.to_api()) == list(original)  # same key order as the document
    assert data == original  # the input is not modified


def test_seed_example_fields(data: dict[str, Any]) -> None:
    d = InstanceDetail.from_api(data)
    assert d.id == "4c1f43ddb030483e89b55413bee6c004"
    assert d.status == InstanceStatus.WAITING == "Waiting"
    assert d.ram_size == 15360 and d.cpu_number == 3 and d.gpu_number == 1
    assert d.current_index == 2
    assert d.task_number == 1
    assert d.resource_spec == "3 核心; 1 加速器; 15.0G 内存"
    assert d.create_time == dt.datetime(2022, 5, 11, 19, 30, 34)
    assert d.create_time.tzinfo is None  # the platform gives no zone
    assert d.start_time is None and d.end_time is None
    assert d.duration == "--" and d.remaining_time == "--"
    assert d.tensorboard_id is None and d.header_notebook_ip is None
    assert d.mount_info_list == () and d.container_port_info_list == ()
    assert d.use_start_script is False
    assert d.extra == {}
    assert not d.is_terminal


def test_models_are_frozen_and_hashable(data: dict[str, Any]) -> None:
    d = InstanceDetail.from_api(data)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        d.status = "Running"  # type: ignore[misc]
    assert hash(d) == hash(InstanceDetail.from_api(copy.deepcopy(data)))
    assert d == InstanceDetail.from_api(copy.deepcopy(data))


def test_nested_lists_and_timestamps(data: dict[str, Any]) -> None:
    data.update(
        status="Running",
        startTime="2022-05-11 19:31:00",
        endTime="2022-05-12 01:02:03",
        duration="5:31:03",
        mountInfoList=[{"sourcePath": "/public/home/u", "type": "nfs"}],
        containerPortInfoList=[
            {"accessUrl": "https://x/notebook", "containerPort": "8888", "protocolType": "http"},
            {"accessUrl": "ssh://x:22", "containerPort": 22, "protocolType": "tcp"},
        ],
    )
    d = InstanceDetail.from_api(data)
    assert d.start_time == dt.datetime(2022, 5, 11, 19, 31)
    assert d.mount_info_list == (MountInfo(source_path="/public/home/u", type="nfs"),)
    assert d.container_port_info_list[0].access_url == "https://x/notebook"
    assert d.container_port_info_list[1] == PortInfo(
        access_url="ssh://x:22", container_port=22, protocol_type="tcp"
    )
    assert d.to_api() == data


def test_task_number_accepts_string_and_int(data: dict[str, Any]) -> None:
    data["taskNumber"] = "3"
    assert InstanceDetail.from_api(data).task_number == "3"
    data["taskNumber"] = 3
    assert InstanceDetail.from_api(data).task_number == 3


def test_unknown_status_passes_through(data: dict[str, Any]) -> None:
    data["status"] = "Stopped"
    d = InstanceDetail.from_api(data)
    assert d.status == "Stopped"
    assert not d.is_terminal
    assert d.to_api()["status"] == "Stopped"


def test_unknown_keys_are_kept_and_written_back(data: dict[str, Any]) -> None:
    data["brandNewField"] = {"nested": [1, 2]}
    data["containerPortInfoList"] = [{"accessUrl": "u", "portName": "web"}]
    d = InstanceDetail.from_api(data)
    assert d.extra == {"brandNewField": {"nested": [1, 2]}}
    assert d.container_port_info_list[0].extra == {"portName": "web"}
    assert d.to_api() == data


def test_absent_keys_stay_absent(data: dict[str, Any]) -> None:
    for key in ("headerNotebookIp", "duration", "mountInfoList"):
        del data[key]
    d = InstanceDetail.from_api(data)
    assert d.header_notebook_ip is None and d.mount_info_list == ()
    assert d.to_api() == data


def test_objects_sent_every_key_share_one_empty_set_of_absent_keys(data: dict[str, Any]) -> None:
    # Kept per watched instance, a fresh empty frozenset in each detail, mount and port would
    # cost 216 bytes and a collector-tracked object apiece.
    data["mountInfoList"] = [{"sourcePath": "/a", "type": "nfs"}, {"sourcePath": "/b", "type": "x"}]
    data["containerPortInfoList"] = [{"accessUrl": "u", "containerPort": 1, "protocolType": "h"}]
    built = [InstanceDetail.from_api(data) for _ in range(2)]
    holders: list[Any] = [
        *built,
        *(mount for detail in built for mount in detail.mount_info_list),
        *(port for detail in built for port in detail.container_port_info_list),
        attrs.evolve(built[0], status="Running"),
        InstanceDetail(id="x", status="Running"),
        MountInfo(),
        PortInfo(),
    ]
    assert len(holders) == 12
    assert len({id(holder._absent) for holder in holders}) == 1
    assert holders[0]._absent == frozenset()
    # An object with a key left out still has its own record of it, and writes it back without.
    del data["duration"], data["mountInfoList"][1]["type"]
    partial = InstanceDetail.from_api(data)
    assert partial._absent == {"duration"}
    assert partial.mount_info_list[1]._absent == {"type"}
    assert partial.mount_info_list[0]._absent is holders[0]._absent
    assert partial.to_api() == data


def test_minimal_object_needs_only_id_and_status() -> None:
    d = InstanceDetail.from_api({"id": "x", "status": "Running"})
    assert d.to_api() == {"id": "x", "status": "Running"}


@pytest.mark.parametrize(
    ("patch", "path", "reason"),
    [
        ({"cpuNumber": "three"}, "$.cpuNumber", "expected an integer, got str"),
        ({"cpuNumber": 3.0}, "$.cpuNumber", "expected an integer, got float"),
        ({"ramSize": 8.9}, "$.ramSize", "expected an integer, got float"),
        ({"gpuNumber": True}, "$.gpuNumber", "expected an integer, got bool"),
        ({"mountInfoList": "oops"}, "$.mountInfoList", "expected a list, got str"),
        ({"mountInfoList": {"a": 1}}, "$.mountInfoList", "expected a list, got dict"),
        ({"useStartScript": "false"}, "$.useStartScript", "expected a boolean, got str"),
        ({"useStartScript": 0}, "$.useStartScript", "expected a boolean, got int"),
        ({"status": 123}, "$.status", "expected a string, got int"),
        ({"status": None}, "$.status", "expected a string, got null"),
        ({"id": None}, "$.id", "expected a string, got null"),
        ({"userName": 5}, "$.userName", "expected a string, got int"),
        ({"taskNumber": 1.5}, "$.taskNumber", "expected an integer or a string"),
        ({"createTime": "2022-05-11T19:30:34"}, "$.createTime", "YYYY-MM-DD HH:MM:SS"),
        ({"createTime": "2022-13-11 19:30:34"}, "$.createTime", "month must be"),
        ({"createTime": 1652268634}, "$.createTime", "timestamp string, got int"),
        (
            {"containerPortInfoList": [{"accessUrl": 1}]},
            "$.containerPortInfoList[0].accessUrl",
            "expected a string, got int",
        ),
        (
            {"mountInfoList": [{"sourcePath": "/a"}, "x"]},
            "$.mountInfoList[1]",
            "expected an object, got str",
        ),
    ],
)
def test_wrong_types_raise_response_error_naming_the_path(
    data: dict[str, Any], patch: dict[str, Any], path: str, reason: str
) -> None:
    data.update(patch)
    with pytest.raises(ResponseError) as caught:
        InstanceDetail.from_api(data)
    message = str(caught.value)
    assert f"{path}:" in message
    assert reason in message


@pytest.mark.parametrize("missing", ["id", "status"])
def test_required_fields(data: dict[str, Any], missing: str) -> None:
    del data[missing]
    with pytest.raises(ResponseError, match=rf"\$\.{missing}: required field missing"):
        InstanceDetail.from_api(data)


@pytest.mark.parametrize("value", [None, [], "x", 1])
def test_data_must_be_an_object(value: Any) -> None:
    with pytest.raises(ResponseError, match="expected an object"):
        InstanceDetail.from_api(value)


def test_several_errors_are_all_named(data: dict[str, Any]) -> None:
    data.update(cpuNumber="x", gpuNumber="y")
    with pytest.raises(ResponseError) as caught:
        InstanceDetail.from_api(data)
    assert "$.cpuNumber" in str(caught.value) and "$.gpuNumber" in str(caught.value)


def test_instance_status_constants() -> None:
    assert InstanceStatus.RUNNING == "Running"
    assert InstanceStatus.TERMINAL == {"Terminated", "Failed", "Completed"}
    assert InstanceStatus.ALL == {
        "Waiting",
        "Deploying",
        "Running",
        "Terminated",
        "Failed",
        "Completed",
    }
    assert InstanceStatus.PATH == ("Waiting", "Deploying", "Running")


def test_status_change_is_frozen(data: dict[str, Any]) -> None:
    d = InstanceDetail.from_api(data)
    change = StatusChange(
        instance_id=d.id,
        previous=None,
        current=d.status,
        detail=d,
        observed_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        seq=1,
    )
    assert change.is_initial and change.skipped == ()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        change.seq = 2  # type: ignore[misc]
    assert "detail" not in repr(change)


def test_repeated_values_share_one_string(data: dict[str, Any]) -> None:
    import json

    # Parsed separately, as two responses would be: equal low-cardinality values end up as one
    # object, which is what keeps a watcher's memory per instance down.
    a = InstanceDetail.from_api(json.loads(json.dumps(data)))
    b = InstanceDetail.from_api(json.loads(json.dumps(data)))
    assert a.image_path == b.image_path and a.image_path is b.image_path
    assert a.status is b.status
    assert a.instance_service_name == b.instance_service_name  # unique-ish values: not interned


def test_extra_is_read_only(data: dict[str, Any]) -> None:
    data["newKey"] = 1
    d = InstanceDetail.from_api(data)
    with pytest.raises(TypeError):
        d.extra["newKey"] = 2  # type: ignore[index]
    assert InstanceDetail(id="x", status="Running").extra == {}


# -- hostile data: bounded cost, only our error ----------------------------------------------------


def port_body(seed: dict[str, Any], port: dict[str, Any], count: int) -> bytes:
    """An envelope whose data holds ``count`` copies of ``port``, as compact JSON."""
    import json

    envelope = copy.deepcopy(seed)
    envelope["data"]["containerPortInfoList"] = [port] * count
    return json.dumps(envelope, separators=(",", ":")).encode()


def body_cost(body: bytes) -> tuple[float, int]:
    """Seconds (best of three) and tracemalloc peak bytes of what the client does with a body."""
    import time
    import tracemalloc

    from aiocontainer._protocol import parse_detail_response

    def run() -> None:
        with contextlib.suppress(ResponseError):
            InstanceDetail.from_api(parse_detail_response(200, body))

    times = []
    for _ in range(3):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return min(times), peak


def test_a_bad_body_costs_no_more_than_a_good_body_of_its_size(seed: dict[str, Any]) -> None:
    good = port_body(seed, {"accessUrl": ""}, 30_000)
    bad = port_body(seed, {"accessUrl": 10}, 30_000)  # every port badly typed
    assert len(good) == len(bad)
    good_time, good_peak = body_cost(good)
    bad_time, bad_peak = body_cost(bad)
    assert bad_time <= good_time, (bad_time, good_time)
    assert bad_peak <= good_peak, (bad_peak, good_peak)


def test_a_long_bad_list_is_cut_short_and_the_message_says_so(data: dict[str, Any]) -> None:
    data["containerPortInfoList"] = [{"accessUrl": 1}] * 250
    with pytest.raises(ResponseError) as caught:
        InstanceDetail.from_api(data)
    message = str(caught.value)
    for index in range(5):
        assert f"$.containerPortInfoList[{index}].accessUrl: expected a string, got int" in message
    assert "[5]" not in message
    assert "$.containerPortInfoList: 245 more items not checked after 5 bad ones" in message


@settings(deadline=None)  # a shared machine's timings vary too much for a deadline
@given(bad=st.lists(st.booleans(), max_size=40))
def test_a_list_is_checked_up_to_the_fifth_bad_item(bad: list[bool]) -> None:
    ports = [{"containerPort": 1.5 if wrong else 1} for wrong in bad]
    data = {"id": "x", "status": "Running", "containerPortInfoList": ports}
    bad_indexes = [index for index, wrong in enumerate(bad) if wrong]
    if not bad_indexes:
        assert len(InstanceDetail.from_api(data).container_port_info_list) == len(bad)
        return
    with pytest.raises(ResponseError) as caught:
        InstanceDetail.from_api(data)
    message = str(caught.value)
    named = [i for i in range(len(bad)) if f"$.containerPortInfoList[{i}]." in message]
    assert named == bad_indexes[:5]
    unchecked = len(bad) - bad_indexes[4] - 1 if len(bad_indexes) >= 5 else 0
    assert (f"{unchecked} more items not checked" in message) == (unchecked > 0)


def test_many_bad_fields_are_counted_not_all_spelled_out(data: dict[str, Any]) -> None:
    bad_fields = ["cpuNumber", "gpuNumber", "ramSize", "currentIndex", "userName", "version", "id"]
    data.update(dict.fromkeys(bad_fields, 1.5))
    with pytest.raises(ResponseError) as caught:
        InstanceDetail.from_api(data)
    message = str(caught.value)
    assert message.count("expected") == 5
    assert message.endswith(" ... and 2 more")


def test_hostile_values_give_our_error_or_a_lossless_model(data: dict[str, Any]) -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    huge = "x" * 5_000_000
    data.update(deepExtra=deep, description=huge, status=huge)
    data["containerPortInfoList"] = [{"accessUrl": "u", 7: "int key", "nested": deep}]
    detail = InstanceDetail.from_api(data)
    assert detail.extra["deepExtra"] is deep  # kept, not copied or walked
    assert detail.container_port_info_list[0].extra == {7: "int key", "nested": deep}
    assert detail.to_api()["deepExtra"] is deep

    for patch in (
        {"createTime": "2022-05-11 19:30:34" + huge},
        {"createTime": huge},
        {"mountInfoList": [huge] * 1_000_000},
        {"mountInfoList": [deep] * 1_000_000},
        {"containerPortInfoList": [{"accessUrl": deep}]},
    ):
        with pytest.raises(ResponseError) as caught:
            InstanceDetail.from_api({**data, **patch})
        assert len(str(caught.value)) < 2_000


def test_long_values_are_not_interned(data: dict[str, Any]) -> None:
    import json
    import sys

    long_path = "registry/" + "a" * 300
    data["imagePath"] = long_path
    first = InstanceDetail.from_api(json.loads(json.dumps(data)))
    second = InstanceDetail.from_api(json.loads(json.dumps(data)))
    assert first.image_path == second.image_path == long_path
    assert first.image_path is not second.image_path
    assert first.status is sys.intern("Waiting")


def test_models_and_the_converter_do_not_import_each_other() -> None:
    import ast
    from pathlib import Path

    import aiocontainer

    source = Path(aiocontainer.__file__).parent / "_convert.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert "aiocontainer.models" not in imported


def test_the_readme_lists_every_field_with_its_api_key() -> None:
    from pathlib import Path

    from aiocontainer._convert import to_camel

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for field in attrs.fields(InstanceDetail):
        if field.name not in ("extra", "_absent"):
            assert f"| `{field.name}` | `{to_camel(field.name)}` |" in readme, field.name
    for cls in (PortInfo, MountInfo):
        for field in attrs.fields(cls):
            if field.name not in ("extra", "_absent"):
                assert f"`{field.name}` (`{to_camel(field.name)}`," in readme, field.name
