"""The pure parts of the credentials layer: signature, credentials, profiles, regions, timing."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest

from aiocontainer import (
    Credentials,
    CredentialsError,
    Region,
    RegionNotFoundError,
    RegionUnavailableError,
    ResponseError,
)
from aiocontainer._credentials import login_request
from aiocontainer._regions import (
    RegionToken,
    TokenState,
    can_renew,
    choose_region,
    decide,
    enabled_ai_urls,
    is_due,
    parse_token_list,
    regions_of,
)
from aiocontainer._signing import sign, signed_headers, string_to_sign

SECRET = "sk-Th1s-1s-SECRET"

# -- the signature ---------------------------------------------------------------------------


def hmac_sha256_by_the_rfc(key: bytes, message: bytes) -> str:
    """HMAC (RFC 2104) spelled out over hashlib.sha256, independent of the hmac module."""
    block = 64  # SHA-256 block size in bytes
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\x00")
    inner_pad = bytes(b ^ 0x36 for b in key)
    outer_pad = bytes(b ^ 0x5C for b in key)
    inner = hashlib.sha256(inner_pad + message).digest()
    return hashlib.sha256(outer_pad + inner).hexdigest()


def test_signature_matches_a_vector_worked_out_step_by_step() -> None:
    # Step 1: the documented text, keys accessKey, timestamp, user in that order, no spaces.
    text = '{"accessKey":"AK123","timestamp":"1700000000","user":"bob"}'
    assert string_to_sign("AK123", "1700000000", "bob") == text
    # Step 2: HMAC-SHA256 keyed with the secret key's UTF-8 bytes over the text's UTF-8 bytes:
    # key "sk-test" zero-padded to 64 bytes, inner = sha256((key ^ 0x36..) + text),
    # outer = sha256((key ^ 0x5c..) + inner), as lowercase hex.
    expected = "9d7972215309c50baf219ce10459fe3d3263f9bb0143b9cbc4e2e88175270af9"
    assert hmac_sha256_by_the_rfc(b"sk-test", text.encode()) == expected
    # Step 3: the library gives the same 64 lowercase hex digits.
    got = sign(access_key="AK123", secret_key="sk-test", user="bob", timestamp="1700000000")
    assert got == expected


def test_signature_of_non_ascii_values_uses_utf8_and_json_escaping() -> None:
    text = string_to_sign('a"k\\', "1", "张三")
    assert text == '{"accessKey":"a\\"k\\\\","timestamp":"1","user":"张三"}'
    expected = hmac_sha256_by_the_rfc("密钥".encode(), text.encode("utf-8"))
    assert sign(access_key='a"k\\', secret_key="密钥", user="张三", timestamp="1") == expected


def test_signed_headers_carry_the_four_documented_headers_and_never_the_secret() -> None:
    headers = signed_headers(user="bob", access_key="AK123", secret_key=SECRET, timestamp=1.9e9)
    assert set(headers) == {"user", "accessKey", "timestamp", "signature"}
    assert headers["timestamp"] == "1900000000"
    assert headers["signature"] == hmac_sha256_by_the_rfc(
        SECRET.encode(), string_to_sign("AK123", "1900000000", "bob").encode()
    )
    assert all(SECRET not in value for value in headers.values())


# -- credentials -----------------------------------------------------------------------------


def test_credentials_never_show_the_secret_key() -> None:
    creds = Credentials("bob", "AKIDEXAMPLE123", SECRET)
    for text in (repr(creds), str(creds), f"{creds!r}", f"{creds}"):
        assert SECRET not in text
    assert "AKID..." in repr(creds) and "bob" in repr(creds)
    assert not hasattr(creds, "__dict__")
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(creds)


@pytest.mark.parametrize(
    ("user", "ak", "sk", "field"),
    [
        ("", "AK", "SK", "user"),
        ("bob", "", "SK", "access_key"),
        ("bob", "AK", "", "secret_key"),
        ("bob", "AK", "a\nb", "secret_key"),
        ("bob\r", "AK", "SK", "user"),
    ],
)
def test_bad_credentials_name_the_field_and_not_the_value(
    user: str, ak: str, sk: str, field: str
) -> None:
    with pytest.raises(CredentialsError, match=field) as info:
        Credentials(user, ak, sk)
    assert "a\nb" not in str(info.value)


def test_from_env_reads_the_three_variables() -> None:
    env = {"SCNET_USER": "bob", "SCNET_ACCESS_KEY": "AK1", "SCNET_SECRET_KEY": SECRET}
    creds = Credentials.from_env(env)
    assert (creds.user, creds.access_key, creds.source) == ("bob", "AK1", "environment")
    request = login_request(creds, 1700000000.0)
    assert request.host == "auth" and request.path == "/api/user/v3/tokens"
    assert request.headers["signature"] == sign(
        access_key="AK1", secret_key=SECRET, user="bob", timestamp="1700000000"
    )
    assert SECRET not in repr(request)


def test_from_env_names_every_missing_variable() -> None:
    with pytest.raises(CredentialsError) as info:
        Credentials.from_env({"SCNET_USER": "bob", "SCNET_SECRET_KEY": ""})
    message = str(info.value)
    assert "SCNET_ACCESS_KEY and SCNET_SECRET_KEY are not set" in message
    with pytest.raises(CredentialsError, match="SCNET_USER is not set"):
        Credentials.from_env({"SCNET_ACCESS_KEY": "a", "SCNET_SECRET_KEY": "b"})


def test_from_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCNET_USER", "alice")
    monkeypatch.setenv("SCNET_ACCESS_KEY", "AK2")
    monkeypatch.setenv("SCNET_SECRET_KEY", SECRET)
    assert Credentials.from_env().user == "alice"


def test_password_login_uses_the_legacy_endpoint_and_hides_the_password() -> None:
    creds = Credentials.from_password("bob", "pa55word!", "org-7")
    assert "pa55word!" not in repr(creds) and "org-7" in repr(creds)
    request = login_request(creds, 0.0)
    assert request.host == "platform" and request.path == "/ac/openapi/v2/tokens"
    assert dict(request.headers) == {"user": "bob", "password": "pa55word!", "orgId": "org-7"}
    with pytest.raises(CredentialsError, match="org_id"):
        Credentials.from_password("bob", "pw", "")


# -- scnet-cli profiles ----------------------------------------------------------------------


def write_like_scnet_cli(home: Path, profiles: dict[str, dict[str, Any]], current: str) -> Path:
    """Write config.json the way scnet-cli 0.1.0 saves it: every profile field, indent 2,
    non-ASCII kept, with the process's default file mode."""
    fields = {
        "user": "",
        "access_key": "",
        "secret_key": "",
        "default_cluster_id": "",
        "llm_api_key": "",
        "base_overrides": {},
    }
    payload = {
        "current": current,
        "profiles": {n: {"name": n, **fields, **p} for n, p in profiles.items()},
    }
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.json"
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def scnet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "scnet-home"
    monkeypatch.setenv("SCNET_HOME", str(home))
    return home


def test_profile_written_by_scnet_cli_is_read(scnet_home: Path) -> None:
    path = write_like_scnet_cli(
        scnet_home,
        {
            "default": {"user": "bob", "access_key": "AKDEF", "secret_key": SECRET},
            "work": {
                "user": "张三",
                "access_key": "AKWORK",
                "secret_key": "sk-work",
                "default_cluster_id": "11112",
                "llm_api_key": "sk-llm-secret",
                "base_overrides": {"api": "http://127.0.0.1:9/", "www": "http://127.0.0.1:9"},
            },
        },
        current="work",
    )
    path.chmod(0o600)
    creds = Credentials.from_scnet_profile()
    assert (creds.user, creds.access_key, creds.default_region) == ("bob", "AKDEF", None)
    work = Credentials.from_scnet_profile("work")
    assert (work.user, work.default_region) == ("张三", "11112")
    assert dict(work.base_overrides) == {"api": "http://127.0.0.1:9", "www": "http://127.0.0.1:9"}
    assert Credentials.from_scnet_profile(None).access_key == "AKWORK"  # the file's "current"
    assert "sk-work" not in repr(work) and "sk-llm-secret" not in repr(work)
    assert "profile 'work'" in repr(work)
    before = path.read_bytes()
    Credentials.from_scnet_profile("work")
    assert path.read_bytes() == before  # read, never written


def test_profile_in_an_explicit_home(tmp_path: Path) -> None:
    path = write_like_scnet_cli(
        tmp_path, {"default": {"user": "u", "access_key": "a", "secret_key": "s"}}, "default"
    )
    path.chmod(0o600)
    assert Credentials.from_scnet_profile(home=tmp_path).user == "u"


def test_profile_readable_by_others_gets_a_warning(scnet_home: Path) -> None:
    path = write_like_scnet_cli(
        scnet_home, {"default": {"user": "u", "access_key": "a", "secret_key": SECRET}}, "default"
    )
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="other users may read it") as caught:
        Credentials.from_scnet_profile()
    assert SECRET not in str(caught[0].message)
    path.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Credentials.from_scnet_profile()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no scnet-cli config"),
        ("{not json", "not valid JSON"),
        ("[]", "does not hold a JSON object"),
        ('{"profiles": {}}', "no profile 'default'"),
        ('{"profiles": {"default": {"user": "u", "access_key": "a"}}}', "secret_key is missing"),
        (
            '{"profiles": {"default": {"user": "u", "access_key": "a", "secret_key": "s",'
            ' "base_overrides": {"api": "ftp://x"}}}}',
            "base_overrides.api must be an http",
        ),
        ("[" * 100000, "not valid JSON"),
    ],
)
def test_bad_profile_files_are_credentials_errors(
    scnet_home: Path, content: str | None, message: str
) -> None:
    if content is not None:
        scnet_home.mkdir()
        (scnet_home / "config.json").write_text(content, encoding="utf-8")
        os.chmod(scnet_home / "config.json", 0o600)
    with pytest.raises(CredentialsError, match=message):
        Credentials.from_scnet_profile()


def test_unknown_profile_lists_the_known_ones(scnet_home: Path) -> None:
    write_like_scnet_cli(
        scnet_home, {"a": {"user": "u", "access_key": "k", "secret_key": "s"}}, "a"
    ).chmod(0o600)
    with pytest.raises(CredentialsError, match=r"no profile 'b' \(profiles: a\)"):
        Credentials.from_scnet_profile("b")


# -- regions ---------------------------------------------------------------------------------

TOKENS = (
    RegionToken(name="ac", cluster_id="0", token="platform-token"),
    RegionToken(name="华东一区【昆山】", cluster_id="11112", token="tok-a"),
    RegionToken(name="West", cluster_id="22223", token="tok-b"),
    RegionToken(name="Frozen", cluster_id="33334", token=None),
)


def test_token_answer_parses_every_region_and_hides_tokens() -> None:
    data = [
        {"clusterName": "ac", "clusterId": "0", "token": "t0"},
        {"clusterName": "West", "clusterId": 22223, "token": "t1"},
        {"clusterName": "Frozen", "clusterId": "33334", "token": None},
    ]
    parsed = parse_token_list(data)
    assert [(t.name, t.cluster_id, t.token) for t in parsed] == [
        ("ac", "0", "t0"),
        ("West", "22223", "t1"),
        ("Frozen", "33334", None),
    ]
    assert "t1" not in repr(parsed)
    assert regions_of(parsed) == [
        Region(name="West", cluster_id="22223", available=True),
        Region(name="Frozen", cluster_id="33334", available=False),
    ]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"token": "x"}, r"\$\.data: expected a list"),
        ([], r"\$\.data: expected a list of regions, got empty"),
        (["x"], r"\$\.data\[0\]: expected an object"),
        ([{"clusterId": "1", "token": "t"}], r"\$\.data\[0\]\.clusterName: .* got missing"),
        ([{"clusterName": "a", "clusterId": True, "token": "t"}], r"clusterId: .* got bool"),
        ([{"clusterName": "a", "clusterId": "1", "token": 5}], r"\.token: .* got int"),
        ([{"clusterName": "a", "clusterId": "1", "token": "t\r\nX: y"}], r"not a usable token"),
    ],
)
def test_bad_token_answers_are_response_errors(data: Any, where: str) -> None:
    with pytest.raises(ResponseError, match=where):
        parse_token_list(data)


def test_region_chosen_by_name_cluster_id_or_case_folded_name() -> None:
    assert choose_region(TOKENS, "West").cluster_id == "22223"
    assert choose_region(TOKENS, "22223").name == "West"
    assert choose_region(TOKENS, "west").cluster_id == "22223"
    assert choose_region(TOKENS, "华东一区【昆山】").cluster_id == "11112"
    assert choose_region(TOKENS, None, default="11112").name == "华东一区【昆山】"
    assert choose_region(TOKENS, "West", default="11112").name == "West"  # explicit wins


def test_unknown_region_lists_the_known_names() -> None:
    with pytest.raises(RegionNotFoundError) as info:
        choose_region(TOKENS, "Mars")
    assert "West (22223)" in str(info.value) and "Frozen (33334)" in str(info.value)
    assert "ac (0)" not in str(info.value)
    assert "West (22223)" in info.value.known
    with pytest.raises(RegionNotFoundError, match="the profile's default region"):
        choose_region(TOKENS, None, default="Mars")


def test_unavailable_and_platform_regions_say_why() -> None:
    with pytest.raises(RegionUnavailableError, match="disabled or in arrears") as info:
        choose_region(TOKENS, "Frozen")
    assert info.value.reason == "no_token" and info.value.region == "Frozen"
    for wanted in ("ac", "0"):
        with pytest.raises(RegionUnavailableError, match="platform's own token") as info:
            choose_region(TOKENS, wanted)
        assert info.value.reason == "platform"


def test_no_region_given_takes_the_only_one_with_a_token_else_lists_them() -> None:
    one = (TOKENS[0], TOKENS[2], TOKENS[3])
    assert choose_region(one, None).name == "West"
    with pytest.raises(RegionNotFoundError, match="several regions have a token") as info:
        choose_region(TOKENS, None)
    assert set(info.value.known) == {"华东一区【昆山】 (11112)", "West (22223)", "Frozen (33334)"}
    with pytest.raises(RegionUnavailableError, match="no region has a token"):
        choose_region((TOKENS[0], TOKENS[3]), None)


def test_center_urls_only_enabled_string_true_entries_in_order() -> None:
    data = {
        "aiUrls": [
            {"enable": "false", "url": "https://off.example/ai"},
            {"enable": "true", "url": "https://one.example/ai"},
            {"enable": True, "url": "https://bool.example"},
            {"enable": "true", "url": "ftp://bad.example"},
            {"enable": "true"},
            "junk",
            {"enable": "true", "url": "https://two.example"},
        ],
        "clusterUserInfo": {"userName": "x"},
    }
    assert enabled_ai_urls(data) == ("https://one.example/ai", "https://two.example")
    assert enabled_ai_urls({}) == ()
    with pytest.raises(ResponseError, match="aiUrls: expected a list"):
        enabled_ai_urls({"aiUrls": "https://x"})
    with pytest.raises(ResponseError, match=r"\$\.data: expected an object"):
        enabled_ai_urls(None)


# -- renewal timing --------------------------------------------------------------------------


def state(obtained: float = 0.0, expires: float | None = 1000.0, forced: bool = False) -> Any:
    return TokenState(token="T", obtained_at=obtained, expires_at=expires, forced=forced)


def test_renewal_is_due_margin_before_expiry_and_at_most_a_quarter_of_the_lifetime() -> None:
    assert not is_due(state(), 939.9, 60.0)
    assert is_due(state(), 940.0, 60.0)
    short = state(expires=20.0)  # 20 s lifetime: renewed 5 s before expiry, not 60
    assert not is_due(short, 14.9, 60.0) and is_due(short, 15.0, 60.0)
    assert not is_due(state(expires=None), 1e12, 60.0)
    assert not is_due(state(obtained=2000.0, expires=1000.0), 3000.0, 60.0)  # clocks disagree


def test_renewal_limit_is_24_hours_past_expiry() -> None:
    assert can_renew(state(), 1000.0 + 24 * 3600)
    assert not can_renew(state(), 1000.0 + 24 * 3600 + 1)
    assert can_renew(state(expires=None), 1e12)


def test_decide_tells_a_schedule_ask_from_a_refusal() -> None:
    kw = {"refresh_margin": 60.0, "client_margin": 60.0}
    assert decide(state(), None, 10.0, **kw) == "use"  # first ask
    assert decide(state(), "OTHER", 10.0, **kw) == "use"  # someone renewed already
    assert decide(state(), "T", 10.0, **kw) == "force"  # the client saw it refused
    assert decide(state(forced=True), "T", 10.0, **kw) == "use"  # at most once per token
    assert decide(state(), "T", 950.0, **kw) == "renew"
    # A 20 s token asked for by a client whose 60 s margin is wider: keep it until ours says.
    short = state(expires=20.0)
    assert decide(short, "T", 3.0, **kw) == "use"
    assert decide(short, "T", 15.0, **kw) == "renew"
