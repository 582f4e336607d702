"""The app around the fronts: request ids, body limits, error shapes, signed files, healthz, keys.

Everything runs against a real uvicorn server on 127.0.0.1 over a tmp SQLite data dir, with
the sandbox as upstream (``tests/gateway_fixtures.py``).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from imagegate.errors import InvalidRequest
from imagegate.server.commands import keys_app
from imagegate.server.settings import load_settings
from tests.gateway_fixtures import Gateway, KeyPair, api_key, gateway, gateway_factory

__all__ = ["api_key", "gateway", "gateway_factory"]  # fixtures, imported for pytest

HEX32 = re.compile(r"^[0-9a-f]{32}$")
DS_ASYNC = "/api/v1/services/aigc/image-generation/generation"
OPENAI_IMAGES = "/v1/images/generations"
CJ_TOKEN = "/open/v1/access_token"
CJ_SUBMIT = "/open/v1/ai_creation/task/submit"
LIMIT = 2048


def chanjing_token(gateway: Gateway, key: KeyPair) -> str:
    answer = httpx.post(
        gateway.url(CJ_TOKEN), json={"app_id": key.app_id, "secret_key": key.secret}
    ).json()
    assert answer["code"] == 0, answer
    return str(answer["data"]["access_token"])


def openai_image(gateway: Gateway, key: KeyPair) -> str:
    """One sandbox image through the OpenAI-style route; its signed gateway URL."""
    answer = httpx.post(
        gateway.url(OPENAI_IMAGES),
        headers=key.headers,
        json={"model": "wan2.2-t2i-flash", "prompt": "a red kite", "size": "512x512"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"][0]["url"])


# -- healthz and request ids -----------------------------------------------------------------


def test_healthz_reports_fronts_and_running_engine(gateway: Gateway) -> None:
    answer = httpx.get(gateway.url("/healthz"))
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert sorted(body["fronts"]) == ["chanjing", "dashscope", "openai"]
    assert body["engine"] == "running"
    assert body["database"] == "ok"
    assert HEX32.match(answer.headers["x-request-id"])


def test_every_answer_has_its_own_request_id_matching_the_error_body(
    gateway: Gateway, api_key: KeyPair
) -> None:
    ids = {httpx.get(gateway.url("/healthz")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3 and all(HEX32.match(i) for i in ids)

    ds = httpx.post(gateway.url(DS_ASYNC), content=b"{bad json", headers=api_key.headers)
    assert ds.status_code == 400
    assert ds.json()["request_id"] == ds.headers["x-request-id"]

    cj = httpx.post(gateway.url(CJ_TOKEN), json={"app_id": "ak_x", "secret_key": "nope"})
    assert cj.status_code == 200 and cj.json()["code"] != 0
    assert cj.json()["trace_id"] == cj.headers["x-request-id"]

    oa = httpx.post(gateway.url(OPENAI_IMAGES), json={"prompt": "x"})
    assert oa.status_code == 401
    assert oa.headers["x-request-id"] in oa.json()["error"]["message"]


# -- body size ---------------------------------------------------------------------------------


@pytest.fixture
def small_gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory(max_body_bytes=LIMIT)


def _big_json() -> bytes:
    return json.dumps({"model": "wan2.6-t2i", "prompt": "x" * (LIMIT + 10)}).encode()


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 500):
        yield data[start : start + 500]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_body_too_large_in_each_protocols_shape(small_gateway: Gateway, streamed: bool) -> None:
    key = small_gateway.new_key()
    data = _big_json()

    def post(path: str, headers: dict[str, str]) -> httpx.Response:
        content = _chunks(data) if streamed else data
        answer = httpx.post(small_gateway.url(path), content=content, headers=headers)
        sent = answer.request.headers
        assert ("content-length" not in sent) is streamed  # chunked really has no length
        return answer

    ds = post(DS_ASYNC, {**key.headers, "X-DashScope-Async": "enable"})
    assert ds.status_code == 413
    assert ds.json()["code"] == "BadRequest.TooLarge"
    assert str(LIMIT) in ds.json()["message"]
    assert ds.json()["request_id"] == ds.headers["x-request-id"]

    oa = post(OPENAI_IMAGES, key.headers)
    assert oa.status_code == 413
    assert oa.json()["error"]["type"] == "invalid_request_error"
    assert str(LIMIT) in oa.json()["error"]["message"]

    cj = post(CJ_SUBMIT, {"access_token": "whatever"})
    assert cj.status_code == 200
    assert cj.json()["code"] == 400 and str(LIMIT) in cj.json()["msg"]
    assert cj.json()["trace_id"] == cj.headers["x-request-id"]


def test_body_under_the_limit_is_served_whole(small_gateway: Gateway) -> None:
    key = small_gateway.new_key()
    body = {"model": "wan2.2-t2i-flash", "prompt": "y" * 400, "size": "512x512"}
    answer = httpx.post(
        small_gateway.url(OPENAI_IMAGES),
        content=_chunks(json.dumps(body).encode()),
        headers={**key.headers, "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"][0]["url"].startswith(small_gateway.base_url + "/files/")


# -- unknown routes, wrong methods, crashes ------------------------------------------------------


def test_unknown_route_in_each_protocols_shape(gateway: Gateway) -> None:
    ds = httpx.get(gateway.url("/api/v1/services/aigc/nothing-here"))
    assert ds.status_code == 404
    assert set(ds.json()) == {"request_id", "code", "message"}
    assert "/api/v1/services/aigc/nothing-here" in ds.json()["message"]

    oa = httpx.post(gateway.url("/v1/images/nothing"), json={})
    assert oa.status_code == 404
    assert oa.json()["error"]["type"] == "invalid_request_error"
    assert "Invalid URL (POST /v1/images/nothing)" in oa.json()["error"]["message"]

    cj = httpx.get(gateway.url("/open/v1/nothing"))
    assert cj.status_code == 200
    assert cj.json()["code"] == 400 and cj.json()["data"] is None
    assert "/open/v1/nothing" in cj.json()["msg"]

    other = httpx.get(gateway.url("/no/such/thing"))
    assert other.status_code == 404
    assert other.json()["request_id"] == other.headers["x-request-id"]


def test_wrong_method_in_each_protocols_shape(gateway: Gateway) -> None:
    ds = httpx.get(gateway.url(DS_ASYNC))
    assert ds.status_code == 405 and "GET" in ds.json()["message"]
    assert "POST" in ds.headers["allow"]
    oa = httpx.delete(gateway.url(OPENAI_IMAGES))
    assert oa.status_code == 405 and oa.json()["error"]["type"] == "invalid_request_error"
    cj = httpx.get(gateway.url(CJ_SUBMIT))
    assert cj.status_code == 200 and cj.json()["code"] == 400


def test_a_crash_is_answered_in_the_protocols_internal_error_shape(
    gateway: Gateway, api_key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = chanjing_token(gateway, api_key)

    async def broken(owner: object) -> int:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(gateway.state.service, "in_flight", broken)

    ds = httpx.post(
        gateway.url(DS_ASYNC),
        headers={**api_key.headers, "X-DashScope-Async": "enable"},
        json={
            "model": "wan2.6-t2i",
            "input": {"messages": [{"role": "user", "content": [{"text": "a cat"}]}]},
        },
    )
    assert ds.status_code == 500 and ds.json()["code"] == "InternalError"
    assert "database on fire" not in ds.text  # internals are logged, not shown

    oa = httpx.post(
        gateway.url(OPENAI_IMAGES),
        headers=api_key.headers,
        json={"model": "wan2.6-t2i", "prompt": "a cat"},
    )
    assert oa.status_code == 500 and oa.json()["error"]["type"] == "server_error"
    assert HEX32.match(oa.headers["x-request-id"])
    assert "database on fire" not in oa.text

    cj = httpx.post(
        gateway.url(CJ_SUBMIT),
        headers={"access_token": token},
        json={
            "creation_type": 3,
            "model_code": "doubao-seedream-4.0",
            "ref_prompt": "a cat",
            "number_of_images": 1,
        },
    )
    assert cj.status_code == 200 and cj.json()["code"] == 50000
    monkeypatch.undo()
    assert httpx.get(gateway.url("/healthz")).status_code == 200


# -- signed file links -----------------------------------------------------------------------


def test_signed_file_link_serves_the_image(gateway: Gateway, api_key: KeyPair) -> None:
    url = openai_image(gateway, api_key)
    answer = httpx.get(url)  # no API key: the signature is the credential
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    cache = answer.headers["cache-control"]
    assert "private" in cache and re.search(r"max-age=(\d+)", cache)
    assert 0 < int(re.search(r"max-age=(\d+)", cache).group(1)) <= 86400  # type: ignore[union-attr]
    assert Image.open(io.BytesIO(answer.content)).size == (512, 512)


def test_altered_or_unsigned_links_are_403(gateway: Gateway, api_key: KeyPair) -> None:
    url = openai_image(gateway, api_key)
    parts = urlsplit(url)
    query = dict(pair.split("=", 1) for pair in parts.query.split("&"))
    base = f"{gateway.base_url}{parts.path}"
    flipped = "0" if query["signature"][-1] != "0" else "1"
    other_path = parts.path[:-5] + ("0" if parts.path[-5] != "0" else "1") + ".png"
    cases = {
        "signature": f"{base}?expires={query['expires']}&signature={query['signature'][:-1]}"
        + flipped,
        "expiry": f"{base}?expires={int(query['expires']) + 1}&signature={query['signature']}",
        "path": f"{gateway.base_url}{other_path}?{parts.query}",
        "unsigned": base,
    }
    for name, link in cases.items():
        answer = httpx.get(link)
        assert answer.status_code == 403, name
        assert answer.json()["code"] == "AccessDenied"
        assert answer.headers["cache-control"] == "no-store"
    assert httpx.get(url).status_code == 200


def test_expired_link_is_403_and_missing_blob_is_404(gateway: Gateway, api_key: KeyPair) -> None:
    url = openai_image(gateway, api_key)
    path = urlsplit(url).path
    expired = gateway.state.signer.sign(path, expires_in=-5)
    answer = httpx.get(gateway.url(expired))
    assert answer.status_code == 403
    assert "expired" in answer.json()["message"]

    absent = "/files/ab/cd/abcd" + "0" * 60 + ".png"
    assert httpx.get(gateway.url(gateway.state.signer.sign(absent))).status_code == 404
    escape = "/files/../imagegate.db"
    assert httpx.get(gateway.url(gateway.state.signer.sign(escape))).status_code in (403, 404)


# -- the keys CLI, through the real console script ----------------------------------------------


def imagegate(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "imagegate"
    return subprocess.run(
        [str(script), *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_cli_create_list_revoke(gateway: Gateway) -> None:
    created = imagegate(
        "keys", "create", "--name", "ci", "--qps", "3", "--json", data_dir=gateway.data_dir
    )
    assert created.returncode == 0, created.stderr
    pair = json.loads(created.stdout)
    assert set(pair) == {"app_id", "key"}
    assert pair["app_id"].startswith("ak_") and pair["key"]

    headers = {"Authorization": f"Bearer {pair['key']}"}
    assert httpx.get(gateway.url("/v1/models"), headers=headers).status_code == 200

    listed = imagegate("keys", "list", "--json", data_dir=gateway.data_dir)
    assert listed.returncode == 0, listed.stderr
    rows = {row["app_id"]: row for row in json.loads(listed.stdout)}
    assert rows[pair["app_id"]]["name"] == "ci"
    assert rows[pair["app_id"]]["qps"] == 3
    assert rows[pair["app_id"]]["revoked_at"] is None
    assert pair["key"] not in listed.stdout

    table = keys_cli("list", data_dir=gateway.data_dir)
    assert pair["app_id"] in table.stdout and "active" in table.stdout

    revoked = imagegate("keys", "revoke", pair["app_id"], data_dir=gateway.data_dir)
    assert revoked.returncode == 0, revoked.stderr
    denied = httpx.get(gateway.url("/v1/models"), headers=headers)
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "invalid_api_key"
    ds = httpx.get(gateway.url("/api/v1/tasks"), headers=headers)
    assert ds.status_code == 401 and ds.json()["code"] == "InvalidApiKey"

    unknown = keys_cli("revoke", "ak_nope", data_dir=gateway.data_dir)
    assert unknown.exit_code == 2 and "does not exist" in unknown.stderr


def keys_cli(*args: str, data_dir: Path) -> Result:
    """The same ``keys`` commands in process (fast), for the finer cases."""
    return CliRunner().invoke(keys_app, [*args, "--data-dir", str(data_dir)])


def test_keys_cli_restricts_models_and_refuses_bad_values(gateway: Gateway) -> None:
    created = keys_cli("create", "--model", "wan2.6-t2i", "--json", data_dir=gateway.data_dir)
    assert created.exit_code == 0, created.output
    pair = json.loads(created.stdout)
    headers = {"Authorization": f"Bearer {pair['key']}"}
    denied = httpx.post(
        gateway.url(OPENAI_IMAGES),
        headers=headers,
        json={"model": "wan2.2-t2i-flash", "prompt": "a boat", "size": "512x512"},
    )
    assert denied.status_code == 403
    assert denied.json()["error"]["type"] == "permission_error"
    assert "wan2.2-t2i-flash" in denied.json()["error"]["message"]

    bad = keys_cli("create", "--model", "no-such-model", data_dir=gateway.data_dir)
    assert bad.exit_code == 2 and "no-such-model" in bad.stderr
    zero = keys_cli("create", "--qps", "0", data_dir=gateway.data_dir)
    assert zero.exit_code == 2 and "qps" in zero.stderr

    assert keys_cli("revoke", pair["app_id"], data_dir=gateway.data_dir).exit_code == 0
    again = keys_cli("revoke", pair["app_id"], data_dir=gateway.data_dir)
    assert again.exit_code == 1 and "already revoked" in again.stderr


# -- settings ----------------------------------------------------------------------------------


def test_settings_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[gateway]\nport = 9001\nsync_timeout = 12\ndata_dir = "/srv/ig"\n'
        "[gateway.sandbox]\nlatency = 0.25\n",
        encoding="utf-8",
    )
    env = {"IMAGEGATE_SYNC_TIMEOUT": "30", "IMAGEGATE_SANDBOX_FAILURE_RATE": "0.5"}
    settings = load_settings(config, env=env, data_dir=tmp_path / "flag", port=None)
    assert settings.port == 9001  # file (the None flag is "not given")
    assert settings.sync_timeout == 30  # environment over file
    assert settings.data_dir == tmp_path / "flag"  # flag over both
    assert (settings.sandbox.latency, settings.sandbox.failure_rate) == (0.25, 0.5)
    assert load_settings(env={"IMAGEGATE_DATA_DIR": "/x"}).data_dir == Path("/x")
    assert load_settings(env={}).data_dir == Path("imagegate-data")


def test_settings_errors_name_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [", encoding="utf-8")
    with pytest.raises(InvalidRequest, match=r"bad\.toml is not valid TOML"):
        load_settings(bad, env={})
    with pytest.raises(InvalidRequest, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})
    with pytest.raises(InvalidRequest, match="max_body_bytes"):
        load_settings(env={"IMAGEGATE_MAX_BODY_BYTES": "-1"})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="prot"):
        load_settings(unknown, env={})
