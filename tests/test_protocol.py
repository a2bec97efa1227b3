"""The sans-I/O protocol: ids, envelopes, retry decisions and token hints, without sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiocontainer import errors
from aiocontainer._protocol import (
    after_failure,
    ai_base_url,
    ai_base_urls,
    detail_path,
    detail_url,
    is_retryable,
    list_filters,
    list_request,
    normalize_base_url,
    parse_detail_response,
    parse_envelope,
    read_detail,
    read_list_page,
    retry_after_seconds,
    validate_instance_id,
)

SEED_ID = "4c1f43ddb030483e89b55413bee6c004"


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# -- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instance_id", [SEED_ID, "a", "A" * 128, "abc_DEF-123", "-", "_", "0" * 32]
)
def test_valid_ids_pass_unchanged(instance_id: str) -> None:
    assert validate_instance_id(instance_id) == instance_id


@pytest.mark.parametrize(
    "instance_id",
    [
        "",
        ".",
        "..",
        "a/b",
        "/etc",
        "a?b",
        "a#b",
        "%2e",
        "a%2Fb",
        "a b",
        " a",
        "a\t",
        "a\r\nHost: evil",
        "a\n",
        "é",
        "ａｂｃ",  # full-width letters
        "١٢٣",  # Arabic-Indic digits are \d in Unicode regexes
        "a" * 129,
        "a.b",
        "a:b",
        "a;b",
        "a\\b",
        "\x00",
    ],
)
def test_invalid_ids_are_refused(instance_id: str) -> None:
    with pytest.raises(errors.InvalidInstanceIdError) as caught:
        validate_instance_id(instance_id)
    assert isinstance(caught.value, ValueError)
    assert caught.value.instance_id == instance_id
    assert "A-Za-z0-9_-" in str(caught.value)


@pytest.mark.parametrize("value", [None, 123, b"abc", ["a"]])
def test_non_string_ids_are_refused(value: object) -> None:
    with pytest.raises(errors.InvalidInstanceIdError, match="must be a string"):
        validate_instance_id(value)


def test_detail_path_and_url() -> None:
    assert detail_path(SEED_ID) == f"/ai/openapi/v2/instance-service/{SEED_ID}/detail"
    base = normalize_base_url("https://api01.example.com:65106/")
    assert detail_url(base, "x1") == (
        "https://api01.example.com:65106/ai/openapi/v2/instance-service/x1/detail"
    )
    with pytest.raises(errors.InvalidInstanceIdError):
        detail_path("../x")


@pytest.mark.parametrize("base", ["ftp://x", "api.example.com", "http://x/?a=1", "http://x/#f"])
def test_bad_base_urls(base: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        normalize_base_url(base)


# -- envelopes ---------------------------------------------------------------------------------


def test_seed_example_gives_its_data(seed: dict[str, Any]) -> None:
    assert parse_detail_response(200, body(seed), instance_id=SEED_ID) == seed["data"]


def test_numeric_zero_code_is_success(seed: dict[str, Any]) -> None:
    assert parse_detail_response(200, body({**seed, "code": 0})) == seed["data"]


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("10001", errors.InternalApiError),
        ("10003", errors.MissingParameterError),
        ("10004", errors.InvalidParameterError),
        ("10007", errors.UserFrozenError),
        ("10008", errors.PermissionDeniedError),
        ("10009", errors.ApiAccessDeniedError),
        ("10010", errors.FileCheckError),
        ("10011", errors.FileTooLargeError),
        ("10012", errors.ConnectionInterruptedApiError),
        ("99999", errors.ApiError),
        ("abc", errors.ApiError),
    ],
)
def test_each_code_raises_its_class(code: str, cls: type[errors.ApiError]) -> None:
    payload = body({"code": code, "msg": "参数无效", "data": None})
    with pytest.raises(cls) as caught:
        parse_detail_response(200, payload, instance_id="i1")
    exc = caught.value
    assert type(exc) is cls
    assert (exc.code, exc.msg, exc.instance_id, exc.http_status) == (code, "参数无效", "i1", 200)
    assert code in str(exc) and "i1" in str(exc)


def test_integer_error_code_is_read_as_string() -> None:
    with pytest.raises(errors.InvalidParameterError) as caught:
        parse_envelope(200, body({"code": 10004, "msg": "bad"}))
    assert caught.value.code == "10004"


@pytest.mark.parametrize(
    "payload",
    [
        {"code": "0", "msg": "ok"},
        {"code": "0", "msg": "ok", "data": None},
        {"code": "0", "msg": "ok", "data": []},
        {"code": "0", "msg": "ok", "data": "x"},
        {"code": "0", "msg": "ok", "data": 1},
    ],
)
def test_success_without_object_data_is_a_response_error(payload: dict[str, Any]) -> None:
    with pytest.raises(errors.ResponseError, match="data is") as caught:
        parse_detail_response(200, body(payload), instance_id="i1")
    assert not isinstance(caught.value, errors.ApiError)
    assert caught.value.http_status == 200


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "502 Bad Gateway"),
        (b'{"code": "0", "msg": "SUCC', '{"code": "0"'),
        (b"", None),
        (b"null", "null"),
        (b"[1, 2]", "[1, 2]"),
        (b'{"msg": "no code"}', "no code"),
        (b"\xff\xfe\x00garbage", "garbage"),
    ],
)
def test_unreadable_bodies_on_200(raw: bytes, expect: str | None) -> None:
    with pytest.raises(errors.ResponseError) as caught:
        parse_detail_response(200, raw, instance_id="i1")
    exc = caught.value
    assert not isinstance(exc, errors.ApiError)
    assert exc.http_status == 200
    assert exc.instance_id == "i1"
    if expect is not None:
        assert exc.snippet is not None and expect in exc.snippet
    assert not is_retryable(exc)


def test_snippet_never_holds_the_secret() -> None:
    secret = "s3cr3t-" + "x" * 200
    with pytest.raises(errors.ResponseError) as caught:
        parse_detail_response(200, b"<p>" + secret.encode(), secret=secret)
    assert caught.value.snippet == "<p>***"
    assert "s3cr3t" not in str(caught.value)


def test_snippet_is_short() -> None:
    with pytest.raises(errors.ResponseError) as caught:
        parse_detail_response(200, b"<html>" + b"x" * 10_000)
    assert caught.value.snippet is not None and len(caught.value.snippet) <= 130


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_error_status_without_envelope_is_retryable(status: int) -> None:
    with pytest.raises(errors.HTTPStatusError) as caught:
        parse_detail_response(status, b"<html>busy</html>", instance_id="i1")
    exc = caught.value
    assert isinstance(exc, errors.ApiError) and isinstance(exc, errors.ResponseError)
    assert exc.code is None and exc.http_status == status and exc.snippet == "<html>busy</html>"
    assert is_retryable(exc)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_error_status_without_envelope_is_not_retried(status: int) -> None:
    with pytest.raises(errors.HTTPStatusError) as caught:
        parse_detail_response(status, b"nope")
    assert not is_retryable(caught.value)


def test_envelope_under_error_status_uses_the_code() -> None:
    with pytest.raises(errors.InvalidParameterError) as caught:
        parse_detail_response(500, body({"code": "10004", "msg": "bad"}))
    assert caught.value.http_status == 500
    assert not is_retryable(caught.value)


def test_success_code_under_error_status_is_not_trusted(seed: dict[str, Any]) -> None:
    with pytest.raises(errors.HTTPStatusError):
        parse_detail_response(503, body(seed))


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_errors(status: int) -> None:
    with pytest.raises(errors.ResponseError, match="redirect not followed") as caught:
        parse_detail_response(status, b"")
    assert not is_retryable(caught.value)


def test_non_string_code_is_a_response_error() -> None:
    with pytest.raises(errors.ResponseError, match="envelope code"):
        parse_envelope(200, body({"code": ["0"], "data": {}}))


# -- retry decision ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (errors.TransportError("reset"), True),
        (errors.InternalApiError("10001", "x"), True),
        (errors.ConnectionInterruptedApiError("10012", "x"), True),
        (errors.MissingParameterError("10003", "x"), False),
        (errors.InvalidParameterError("10004", "x"), False),
        (errors.UserFrozenError("10007", "x"), False),
        (errors.PermissionDeniedError("10008", "x"), False),
        (errors.ApiAccessDeniedError("10009", "x"), False),
        (errors.FileCheckError("10010", "x"), False),
        (errors.FileTooLargeError("10011", "x"), False),
        (errors.ApiError("77777", "x"), False),
        (errors.ApiError("10004", "x", http_status=429), True),
        (errors.ResponseError("html", http_status=200), False),
        (errors.ResponseError("html", http_status=502), True),
        (errors.ResponseError("html"), False),
        (errors.HTTPStatusError(503), True),
        (errors.HTTPStatusError(429), True),
        (errors.HTTPStatusError(404), False),
        (errors.InvalidInstanceIdError("bad"), False),
        (errors.ClientClosedError("closed"), False),
        (errors.TokenError("provider"), False),
        (ValueError("bug"), False),
        (KeyboardInterrupt(), False),
    ],
)
def test_is_retryable(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry


def test_cancellation_is_never_retryable() -> None:
    import asyncio

    assert not is_retryable(asyncio.CancelledError())


def fixed_draw(fraction: float) -> Any:
    return lambda low, high: low + (high - low) * fraction


@pytest.mark.parametrize(
    ("step", "retry_after", "remaining", "fraction", "delay"),
    [
        (4.0, None, 30.0, 0.5, 2.0),  # full jitter: anywhere in [0, step]
        (4.0, None, 30.0, 0.0, 0.0),
        (4.0, None, 30.0, 1.0, 4.0),
        (4.0, 10.0, 30.0, 0.5, 10.0),  # Retry-After is a floor
        (4.0, 1.0, 30.0, 0.5, 2.0),  # a smaller Retry-After changes nothing
        (4.0, 10.0, 3.0, 0.5, 3.0),  # capped by the budget left
        (4.0, None, 1.0, 1.0, 1.0),
        (4.0, None, -2.0, 1.0, 0.0),  # never negative
    ],
)
def test_retry_delay(
    step: float, retry_after: float | None, remaining: float, fraction: float, delay: float
) -> None:
    from aiocontainer._protocol import retry_delay

    assert retry_delay(step, retry_after, remaining, uniform=fixed_draw(fraction)) == delay


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": " 0.5 "}, 0.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after(headers: dict[str, str] | None, seconds: float | None) -> None:
    assert retry_after_seconds(headers) == seconds


# -- token hints -------------------------------------------------------------------------------


# -- the one response path ---------------------------------------------------------------------


def test_read_detail_gives_the_model(seed: dict[str, Any]) -> None:
    detail = read_detail(200, {}, body(seed), SEED_ID)
    assert detail.to_api() == seed["data"]


def test_read_detail_accepts_the_id_in_another_case(seed: dict[str, Any]) -> None:
    assert read_detail(200, {}, body(seed), SEED_ID.upper()).id == SEED_ID


def test_read_detail_refuses_an_answer_about_another_instance(seed: dict[str, Any]) -> None:
    seed["data"]["id"] = "other"
    with pytest.raises(errors.ResponseError, match="describes 'other'") as caught:
        read_detail(200, {"Retry-After": "2"}, body(seed), SEED_ID)
    assert (caught.value.instance_id, caught.value.http_status) == (SEED_ID, 200)
    assert caught.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("status", "payload", "cls"),
    [
        (503, b"<html>busy</html>", errors.HTTPStatusError),
        (429, b"", errors.HTTPStatusError),
        (200, {"code": "10001", "msg": "internal"}, errors.InternalApiError),
        (200, {"code": "0", "data": None}, errors.ResponseError),
        (200, {"code": "0", "data": {"id": SEED_ID, "cpuNumber": "4"}}, errors.ResponseError),
        (200, b"{not json", errors.ResponseError),
        (302, b"", errors.ResponseError),
    ],
)
def test_read_detail_errors_are_filled_where_they_are_made(
    status: int, payload: Any, cls: type[errors.AiocontainerError]
) -> None:
    raw = payload if isinstance(payload, bytes) else body(payload)
    with pytest.raises(cls) as caught:
        read_detail(status, {"Retry-After": "7"}, raw, SEED_ID)
    exc = caught.value
    assert exc.instance_id == SEED_ID
    assert exc.retry_after == 7.0
    assert getattr(exc, "http_status", None) == status


def test_a_bad_field_names_its_path_and_keeps_the_status() -> None:
    payload = {"code": "0", "data": {"id": SEED_ID, "cpuNumber": "4"}}
    with pytest.raises(errors.ResponseError, match=r"\$\.cpuNumber") as caught:
        read_detail(200, None, body(payload), SEED_ID)
    assert caught.value.http_status == 200 and caught.value.retry_after is None


# -- the list endpoint -------------------------------------------------------------------------


def list_body(entries: Any) -> bytes:
    return body({"code": "0", "msg": "success", "data": entries})


def entry(seed: dict[str, Any], instance_id: str, **fields: Any) -> dict[str, Any]:
    data = dict(seed["data"], id=instance_id)
    data.update(fields)
    return data


def test_a_list_page_gives_its_details_in_order(seed: dict[str, Any]) -> None:
    page = read_list_page(200, {}, list_body([entry(seed, "a"), entry(seed, "b")]), 40)
    assert (page.start, page.count) == (40, 2)
    assert [d.id for d in page.details] == ["a", "b"]
    assert page.errors == ()
    assert page.details[0].to_api() == entry(seed, "a")


@pytest.mark.parametrize(("total", "read"), [(7, 7), ("7", 7), ("seven", None), (-7, None)])
def test_a_total_beside_the_data_is_read_when_it_is_a_count(
    seed: dict[str, Any], total: object, read: int | None
) -> None:
    raw = body({"code": "0", "msg": "success", "data": [entry(seed, "a")], "total": total})
    page = read_list_page(200, {}, raw, 6)
    assert (page.count, page.total, [d.id for d in page.details]) == (1, read, ["a"])
    assert read_list_page(200, {}, list_body([entry(seed, "a")]), 6).total is None


@pytest.mark.parametrize("data", [None, []])
def test_an_empty_or_missing_list_is_an_empty_page(data: Any) -> None:
    page = read_list_page(200, {}, list_body(data), 0)
    assert (page.count, page.details, page.errors) == (0, (), ())


def test_a_bad_entry_is_an_error_naming_page_index_and_field(seed: dict[str, Any]) -> None:
    entries = [
        entry(seed, "a"),
        entry(seed, "b", cpuNumber="4"),
        {"name": "no id"},
        entry(seed, "../x"),
        "not an object",
        entry(seed, "c"),
    ]
    page = read_list_page(200, {}, list_body(entries), 200)
    assert page.count == 6
    assert [d.id for d in page.details] == ["a", "c"]
    bad = page.errors
    assert [(e.page_start, e.index, e.instance_id) for e in bad] == [
        (200, 1, "b"),
        (200, 2, None),
        (200, 3, None),
        (200, 4, None),
    ]
    assert all(isinstance(e, errors.ResponseError) for e in bad)
    assert "offset 200, entry 1" in str(bad[0]) and "$.cpuNumber" in str(bad[0])
    assert "$.id: missing" in str(bad[1])
    assert "$.id: not 1-128" in str(bad[2]) and "../x" not in str(bad[2])
    assert "expected an object, got str" in str(bad[3])


def test_a_list_that_is_not_a_list_is_one_response_error() -> None:
    with pytest.raises(errors.ResponseError, match="data is a dict, expected a list"):
        read_list_page(200, {"Retry-After": "1"}, list_body({"id": "a"}), 0)


def test_a_list_error_envelope_is_the_api_error() -> None:
    raw = body({"code": "10004", "msg": "bad start"})
    with pytest.raises(errors.InvalidParameterError) as caught:
        read_list_page(200, {"Retry-After": "3"}, raw, 0)
    assert caught.value.retry_after == 3.0 and caught.value.instance_id is None


def test_the_token_is_blanked_out_of_entry_errors(seed: dict[str, Any]) -> None:
    secret = "Zsecret0token0value"
    entries = [entry(seed, "a", createTime=f"at {secret}")]
    page = read_list_page(200, {}, list_body(entries), 0, secret=secret)
    (error,) = page.errors
    assert secret not in str(error) and secret not in repr(error)
    cause = error.__cause__
    assert cause is None or secret not in str(cause)
    assert error.__context__ is None


def test_list_filters_and_request() -> None:
    filters = list_filters("Running", "jupyter", ["n1", "n2"])
    params, json_body = list_request(100, 50, filters)
    assert json_body is None
    assert params == [
        ("start", "100"),
        ("limit", "50"),
        ("sort", "desc"),
        ("status", "Running"),
        ("taskType", "jupyter"),
        ("instanceServiceName", "n1"),
        ("instanceServiceName", "n2"),
    ]
    assert list_filters() == ()


@pytest.mark.parametrize(
    ("options", "what"),
    [
        ({"status": 5}, "status"),
        ({"status": "Stopped"}, "status"),
        ({"task_type": "vnc"}, "task_type"),
        ({"task_type": 1}, "task_type"),
        ({"names": "just-one"}, "names"),
        ({"names": [""]}, "name"),
        ({"names": [3]}, "name"),
    ],
)
def test_bad_list_options_are_refused(options: dict[str, Any], what: str) -> None:
    with pytest.raises(ValueError, match=what):
        list_filters(**options)


@pytest.mark.parametrize(("start", "limit"), [(-1, 10), (0, 0), (True, 10), (0, 2.5)])
def test_bad_offsets_are_refused(start: Any, limit: Any) -> None:
    with pytest.raises(ValueError, match=r"start|limit"):
        list_request(start, limit, ())


# -- base URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("https://h:65106", "https://h:65106"),
        ("https://h:65106/", "https://h:65106"),
        ("https://h:65106/ai", "https://h:65106"),
        ("https://h:65106/ai/", "https://h:65106"),
        ("https://h/ai/ai", "https://h/ai"),
        ("https://h/x/ai", "https://h/x"),
        ("https://h/api", "https://h/api"),
        ("https://h/main", "https://h/main"),
        ("http://ai", "http://ai"),
    ],
)
def test_one_trailing_ai_is_stripped(given: str, base: str) -> None:
    assert ai_base_url(given) == base


def test_several_base_urls_keep_their_order_without_repeats() -> None:
    assert ai_base_urls("http://a") == ("http://a",)
    assert ai_base_urls(["http://b/ai", "http://a", "http://b"]) == ("http://b", "http://a")


@pytest.mark.parametrize("bad", [[], (), b"http://x", 42, ["http://x", "x"]])
def test_bad_base_urls_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="base_url"):
        ai_base_urls(bad)


# -- what follows a failed attempt ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "attempt", "remaining", "can_renew", "step"),
    [
        (errors.TransportError("reset"), 1, 5.0, False, "retry"),
        (errors.TransportError("reset"), 4, 5.0, False, "give_up"),  # the last attempt
        (errors.TransportError("reset"), 1, 0.0, False, "give_up"),  # the budget is spent
        (errors.PermissionDeniedError("10008", "expired"), 1, 5.0, True, "renew"),
        (errors.PermissionDeniedError("10008", "expired"), 1, 5.0, False, "give_up"),
        (errors.PermissionDeniedError("10008", "expired"), 4, 5.0, True, "give_up"),
        (errors.InvalidParameterError("10004", "bad"), 1, 5.0, True, "give_up"),
        (errors.InternalApiError("10001", "busy"), 2, 0.1, True, "retry"),
    ],
)
def test_after_failure(
    failure: errors.AiocontainerError, attempt: int, remaining: float, can_renew: bool, step: str
) -> None:
    assert (
        after_failure(
            failure, attempt=attempt, max_attempts=4, remaining=remaining, can_renew=can_renew
        )
        == step
    )
