"""The generated builders: they return only what the converter would, and defer everything else."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiocontainer import InstanceDetail, ResponseError
from aiocontainer import _convert as convert
from aiocontainer.models import MountInfo, PortInfo
from tests.conftest import seed_envelope

SEED_DATA: dict[str, Any] = seed_envelope()["data"]
PORT = {"accessUrl": "http://10.0.0.1:8888", "containerPort": 8888, "protocolType": "http"}
MOUNT = {"sourcePath": "/public/home/magic2", "type": "nfs"}
RICH = {**SEED_DATA, "containerPortInfoList": [PORT, PORT], "mountInfoList": [MOUNT]}


def decoded(data: Any) -> Any:
    """A fresh copy as a body would give it: new string objects, so interning shows."""
    return json.loads(json.dumps(data))


def converter_result(data: Any, cls: type[Any]) -> Any:
    """What the converter alone makes of ``data``: the model, or the error it raises."""
    try:
        return convert._CONVERTER.structure(decoded(data), cls)
    except Exception as exc:
        return exc


def same_model(left: Any, right: Any) -> None:
    """Equal field by field, the same types (``1`` is not ``True``), the same bookkeeping."""
    assert type(left) is type(right)
    for field in attrs.fields(type(left)):
        a, b = getattr(left, field.name), getattr(right, field.name)
        if isinstance(a, tuple):
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                same_model(x, y)
        elif isinstance(a, Mapping):
            assert dict(a) == dict(b)
        else:
            assert type(a) is type(b) and a == b, field.name
            if field.name in convert._INTERNED_FIELDS and isinstance(a, str) and len(a) <= 256:
                assert a is b, f"{field.name} is interned by one and not the other"
    assert left.to_api() == right.to_api()


# Values near every type the models take: the right one, a neighbour that must be refused
# (True for an int, 8.0 for 8, "8" for 8), and timestamps of the right shape, a wrong shape and
# a right shape naming no date.
near_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.text(min_size=257, max_size=260),
    st.sampled_from(
        [
            "2022-05-11 19:30:34",
            "2022-05-11T19:30:34",
            "2022-05-11 19:30:34.5",
            "2022-05-11 19:30:34 ",
            "2022-13-45 19:30:34",
            "2022-02-30 00:00:00",
            "Running",
            "",
            "--",
        ]
    ),
    st.lists(st.just(PORT), max_size=2),
    st.just([MOUNT]),
    st.just({}),
    st.just([1]),
)


def item_shapes(template: dict[str, Any]) -> st.SearchStrategy[Any]:
    """An item of a nested list: the template with keys replaced, dropped or added."""
    return st.builds(
        lambda replaced, dropped, extra: {
            **{k: v for k, v in template.items() if k not in dropped},
            **replaced,
            **extra,
        },
        st.dictionaries(st.sampled_from(sorted(template)), near_values, max_size=2),
        st.sets(st.sampled_from(sorted(template)), max_size=2),
        st.dictionaries(st.sampled_from(["extraKey", "x"]), near_values, max_size=1),
    ) | st.sampled_from([None, "port", 5])


documents = st.builds(
    lambda replaced, dropped, extra, ports, mounts: (
        {
            k: v
            for k, v in {
                **RICH,
                "containerPortInfoList": ports,
                "mountInfoList": mounts,
                **replaced,
            }.items()
            if k not in dropped
        }
        | extra
    ),
    # A few fields at a time, so that sound documents come often enough to test the builder.
    st.dictionaries(st.sampled_from(sorted(SEED_DATA)), near_values, max_size=2),
    st.sets(st.sampled_from(sorted(RICH)), max_size=3),
    st.dictionaries(st.sampled_from(["newField", "gpuMemory"]), near_values, max_size=2),
    st.lists(st.just(PORT) | item_shapes(PORT), max_size=3),
    st.lists(st.just(MOUNT) | item_shapes(MOUNT), max_size=2),
)


@settings(max_examples=600, deadline=None)
@given(data=documents)
def test_a_builder_returns_only_what_the_converter_returns(data: dict[str, Any]) -> None:
    builder_agrees(data, InstanceDetail)
    expected = converter_result(data, InstanceDetail)
    # Through the public entry, the outcome is the converter's either way: a model or its error.
    if isinstance(expected, Exception):
        with pytest.raises(ResponseError, match=r"^InstanceDetail does not match the API: "):
            InstanceDetail.from_api(decoded(data))
    else:
        same_model(InstanceDetail.from_api(decoded(data)), expected)


NEAR: list[Any] = [
    None,
    True,
    False,
    0,
    8,
    -(2**64),
    8.0,
    1.5,
    "",
    "8",
    "Running",
    "x" * 300,
    "2022-05-11 19:30:34",
    "2022-05-11 19:30:34.5",
    "2022-05-11T19:30:34",
    "2022-13-45 19:30:34",
    [],
    [PORT],
    [MOUNT],
    [None],
    {},
]


def builder_agrees(data: dict[str, Any], cls: type[Any]) -> bool:
    """Check one document; True if the builder built it (False: it deferred)."""
    expected = converter_result(data, cls)
    try:
        built = convert.structure_fast(cls)(decoded(data))
    except convert._Doubt:
        return False
    assert not isinstance(expected, Exception), f"the converter refuses it: {expected}"
    same_model(built, expected)
    return True


@pytest.mark.parametrize(
    ("cls", "template"),
    [(InstanceDetail, RICH), (PortInfo, PORT), (MountInfo, MOUNT)],
    ids=["detail", "port", "mount"],
)
def test_every_field_with_every_near_value_agrees_with_the_converter(
    cls: type[Any], template: dict[str, Any]
) -> None:
    built = 0
    for key in template:
        for value in NEAR:
            built += builder_agrees({**template, key: value}, cls)
        left_out = {k: v for k, v in template.items() if k != key}
        built += builder_agrees(left_out, cls)
        # As many keys as fields, one of them unknown: the count alone cannot tell.
        built += builder_agrees({**left_out, "unknownKey": 1}, cls)
    assert built >= len(template) * 3  # the builder took its share, it did not defer them all


@pytest.mark.parametrize(
    "data",
    [SEED_DATA, RICH, {k: v for k, v in RICH.items() if k != "description"}, {**RICH, "x": 1}],
    ids=["seed", "nested lists", "a key left out", "an unknown key"],
)
def test_sound_documents_never_reach_the_converter(
    data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = InstanceDetail.from_api(data)

    class Refuse:
        def structure(self, *args: object) -> None:
            raise AssertionError("the converter was asked")

    monkeypatch.setattr(convert, "_CONVERTER", Refuse())
    built = InstanceDetail.from_api(data)
    same_model(built, expected)
    assert built.to_api() == data


def test_a_doubtful_document_gets_the_converters_error_with_its_path() -> None:
    with pytest.raises(convert._Doubt):
        convert.structure_fast(InstanceDetail)({**SEED_DATA, "gpuNumber": True})
    with pytest.raises(ResponseError, match=r"\$\.gpuNumber: expected an integer, got bool"):
        InstanceDetail.from_api({**SEED_DATA, "gpuNumber": True})
    with pytest.raises(ResponseError, match=r"\$\.containerPortInfoList\[1\]\.containerPort"):
        InstanceDetail.from_api({**RICH, "containerPortInfoList": [PORT, {"containerPort": 1.5}]})


def test_the_builder_interns_the_same_fields_as_the_converter() -> None:
    built = InstanceDetail.from_api(decoded(RICH))
    assert built.status is sys.intern("Waiting")
    assert built.container_port_info_list[0].protocol_type is sys.intern("http")
    assert built.mount_info_list[0].type is sys.intern("nfs")
    long = "x" * 300
    assert InstanceDetail.from_api({**RICH, "userName": long}).user_name == long


def test_nested_models_have_builders_and_an_unknown_field_type_defers() -> None:
    assert convert.structure_fast(PortInfo) is not convert._never
    assert convert.structure_fast(MountInfo) is not convert._never

    @attrs.frozen(kw_only=True)
    class Gauge:
        level: float | None = None  # no builder writes floats out: the converter builds it
        extra: Mapping[str, Any] = attrs.field(factory=dict)
        _absent: frozenset[str] = attrs.field(factory=frozenset, alias="_absent")

    assert convert.structure_fast(Gauge) is convert._never
    assert convert.structure({"level": 0.5}, Gauge).level == 0.5


@pytest.mark.parametrize("key", ["duration", "remainingTime", "status", "createTime", "gpuNumber"])
def test_a_patch_gives_what_building_the_whole_document_gives(key: str) -> None:
    """Every near value of one field, patched onto a detail built from the rest: the same model
    as a full build where the builder would build it, None where the converter must decide."""
    old = convert.structure(decoded(RICH), InstanceDetail)
    patch = convert.patcher(InstanceDetail, frozenset({key}))
    patched = 0
    for value in NEAR:
        data = decoded({**RICH, key: value})
        result = patch(old, data)
        if builder_agrees(data, InstanceDetail):
            assert result is not None
            same_model(result, convert.structure(data, InstanceDetail))
            assert result.mount_info_list is old.mount_info_list  # the rest is old's own
            patched += 1
        else:
            assert result is None
    assert patched >= 2
    assert patch(old, {k: v for k, v in RICH.items() if k != key}) is None  # absent: not patched
    assert patch(old, [RICH]) is None  # type: ignore[arg-type]


def test_a_class_without_a_builder_has_a_patcher_that_always_defers() -> None:
    @attrs.frozen(kw_only=True)
    class Gauge:
        level: float | None = None
        extra: Mapping[str, Any] = attrs.field(factory=dict)
        _absent: frozenset[str] = attrs.field(factory=frozenset, alias="_absent")

    assert convert.patcher(Gauge, frozenset({"level"}))(Gauge(), {"level": 1.0}) is None


def test_a_builder_calls_a_default_factory_unless_it_always_gives_one_immutable_value() -> None:
    made: list[int] = []

    def fresh_extra() -> dict[str, Any]:
        made.append(1)
        return {}

    @attrs.frozen(kw_only=True)
    class Probe:
        name: str
        extra: Mapping[str, Any] = attrs.field(factory=fresh_extra)
        _absent: frozenset[str] = attrs.field(factory=frozenset, alias="_absent")

    build = convert.structure_fast(Probe)
    assert build is not convert._never
    tried = len(made)  # what making the builder cost
    first, second = build({"name": "a"}), build({"name": "b"})
    # A factory of fresh mutable values is still called for each object built.
    assert first.extra == {} and first.extra is not second.extra
    assert len(made) == tried + 2
    # The models' own factories give one shared value, and every built object holds it.
    detail = InstanceDetail.from_api(RICH)
    assert detail.extra is InstanceDetail.from_api(RICH).extra
    assert detail._absent is InstanceDetail.from_api(RICH)._absent
