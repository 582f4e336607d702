"""The OpenAI-compatible front against a real gateway on 127.0.0.1 (sandbox upstream).

Seed 003's four example bodies are sent byte for byte (with the ``\\r\\n`` their JSON strings
hold) and answered in the page's shape; then every error row of the rulings table is produced
by a real bad request, each answer carrying ``x-request-id``.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegate.catalog import load_catalog
from tests.fakes.openai_vendor import BLOCKED_WORD, FakeOpenAIVendor
from tests.fakes.server import serve
from tests.gateway_fixtures import Gateway, gateway_factory, start_gateway, stop_gateway

__all__ = ["gateway_factory"]  # a fixture, imported for pytest

#: seed 003's request examples, exactly as the page's JSON strings hold them
SEED_003 = {
    "default-2K": (
        '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": '
        '"一间有着精致窗户的花店,漂亮的木质门,摆放着花朵"\r\n}',
        (2048, 2048),
    ),
    "size-4K": (
        '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "雪山湖泊日出,写实摄影",\r\n'
        ' "size": "4K"\r\n}',
        (4096, 4096),
    ),
    "pixels-16:9": (
        '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "宽银幕城市夜景",\r\n'
        ' "size": "1920*1080",\r\n "watermark": false\r\n}',
        (1920, 1080),
    ),
    "2K-seed-42": (
        '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "相同种子复现测试,红色玫瑰",\r\n'
        ' "size": "2K",\r\n "n": 1,\r\n "watermark": false,\r\n "seed": 42\r\n}',
        (2048, 2048),
    ),
}
GENERATIONS = "/v1/images/generations"
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the module's tests (each test makes its own keys)."""
    running = start_gateway(tmp_path_factory.mktemp("openai-front"))
    yield running
    stop_gateway(running)


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.new_key(qps=100, max_in_flight=50).secret


def _post(
    gateway: Gateway, secret: str | None, body: bytes | str | dict[str, Any]
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    content = json.dumps(body) if isinstance(body, dict) else body
    if isinstance(content, str):
        content = content.encode("utf-8")
    return httpx.post(gateway.base_url + GENERATIONS, content=content, headers=headers, timeout=30)


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize("name", list(SEED_003))
def test_seed_003_example_bodies_answer_in_the_page_shape(
    gateway: Gateway, key: str, name: str
) -> None:
    body, size = SEED_003[name]
    assert "\r\n" in body
    response = _post(gateway, key, body)
    assert response.status_code == 200, response.text
    assert REQUEST_ID.match(response.headers["x-request-id"])
    answer = response.json()
    # The page's success schema: {created: int, data: [{url, b64_json?, revised_prompt}]}, no extras
    assert set(answer) == {"created", "data"}
    assert isinstance(answer["created"], int)
    assert len(answer["data"]) == 1
    item = answer["data"][0]
    assert set(item) <= {"url", "b64_json", "revised_prompt"}
    assert item["revised_prompt"] == ""
    image = httpx.get(item["url"], timeout=30)
    assert image.status_code == 200
    assert _png_size(image.content) == size


def test_b64_json_carries_the_stored_image(gateway: Gateway, key: str) -> None:
    body = {"model": "wan2.7-image-pro", "prompt": "a red kite", "size": "1K", "n": 2}
    response = _post(gateway, key, {**body, "response_format": "b64_json"})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 2
    for item in data:
        assert "url" not in item
        assert _png_size(base64.b64decode(item["b64_json"])) == (1024, 1024)


def test_any_catalog_model_through_this_front(gateway: Gateway, key: str) -> None:
    response = _post(gateway, key, {"model": "wan2.6-t2i", "prompt": "a fox", "size": "1280x1280"})
    assert response.status_code == 200, response.text
    url = response.json()["data"][0]["url"]
    assert _png_size(httpx.get(url, timeout=30).content) == (1280, 1280)


def test_models_lists_the_catalog(gateway: Gateway, key: str) -> None:
    response = httpx.get(
        gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 200
    assert REQUEST_ID.match(response.headers["x-request-id"])
    listed = response.json()
    assert listed["object"] == "list"
    assert {model["id"] for model in listed["data"]} == set(load_catalog().names())
    assert all(model["object"] == "model" for model in listed["data"])


def test_a_finished_task_can_be_read_again_and_only_by_its_key(gateway: Gateway, key: str) -> None:
    response = _post(gateway, key, {"model": "wan2.7-image-pro", "prompt": "owl", "size": "1K"})
    task_id = response.headers["x-imagegate-task-id"]
    path = f"{gateway.base_url}{GENERATIONS}/{task_id}"
    again = httpx.get(path, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert again.status_code == 200
    assert _png_size(httpx.get(again.json()["data"][0]["url"], timeout=10).content) == (1024, 1024)
    other = gateway.new_key().secret
    hidden = httpx.get(path, headers={"Authorization": f"Bearer {other}"}, timeout=10)
    _assert_error(hidden, 404, "invalid_request_error", "task_not_found")


# ------------------------------------------------------------------------------ error rows


def _assert_error(
    response: httpx.Response, status: int, kind: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    request_id = response.headers["x-request-id"]
    assert REQUEST_ID.match(request_id)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == kind
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param
        assert param in error["message"]
    assert request_id in error["message"]
    return error


def test_bad_json_is_400(gateway: Gateway, key: str) -> None:
    response = _post(gateway, key, b'{"model": "wan2.7-image-pro", "prompt": ')
    error = _assert_error(response, 400, "invalid_request_error", "invalid_request")
    assert "JSON" in error["message"]


def test_a_wrong_type_is_400_naming_the_param(gateway: Gateway, key: str) -> None:
    body = {"model": "wan2.7-image-pro", "prompt": "x", "n": "2"}
    error = _assert_error(
        _post(gateway, key, body), 400, "invalid_request_error", "invalid_request", "n"
    )
    assert "integer" in error["message"]


def test_an_unknown_field_is_400_naming_it(gateway: Gateway, key: str) -> None:
    body = {"model": "wan2.7-image-pro", "prompt": "x", "colour": "red"}
    _assert_error(
        _post(gateway, key, body), 400, "invalid_request_error", "invalid_request", "colour"
    )


def test_a_broken_model_rule_is_400_with_param(gateway: Gateway, key: str) -> None:
    body = {"model": "wan2.7-image-pro", "prompt": "x", "size": "100x100"}
    response = _post(gateway, key, body)
    error = _assert_error(response, 400, "invalid_request_error", "invalid_parameter", "size")
    assert "768" in error["message"]  # the rule: total pixels from 768*768
    too_many = _post(gateway, key, {"model": "wan2.7-image-pro", "prompt": "x", "n": 5})
    _assert_error(too_many, 400, "invalid_request_error", "invalid_parameter", "n")


def test_an_unknown_model_is_404_model_not_found(gateway: Gateway, key: str) -> None:
    response = _post(gateway, key, {"model": "dall-e-9", "prompt": "x"})
    error = _assert_error(response, 404, "invalid_request_error", "model_not_found", "model")
    assert "dall-e-9" in error["message"]


@pytest.mark.parametrize("authorization", [None, "Bearer sk-not-a-key", "Basic abc"])
def test_missing_or_bad_credentials_are_401(gateway: Gateway, authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    body = json.dumps({"model": "wan2.7-image-pro", "prompt": "x"})
    response = httpx.post(gateway.base_url + GENERATIONS, content=body, headers=headers, timeout=10)
    error = _assert_error(response, 401, "invalid_request_error", "invalid_api_key")
    assert "Authorization" in error["message"]
    models = httpx.get(gateway.base_url + "/v1/models", headers=headers, timeout=10)
    _assert_error(models, 401, "invalid_request_error", "invalid_api_key")


def test_a_model_not_allowed_for_the_key_is_403(gateway: Gateway) -> None:
    restricted = gateway.new_key(models=("wan2.2-t2i",)).secret
    response = _post(gateway, restricted, {"model": "wan2.7-image-pro", "prompt": "x"})
    error = _assert_error(response, 403, "permission_error", "permission_denied")
    assert "wan2.7-image-pro" in error["message"]


def test_a_rate_limit_is_429_with_retry_after(gateway: Gateway) -> None:
    slow = gateway.new_key(qps=0.2).secret
    body = {"model": "wan2.7-image-pro", "prompt": "x", "size": "1K"}
    assert _post(gateway, slow, body).status_code == 200
    response = _post(gateway, slow, body)
    _assert_error(response, 429, "rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(response.headers["Retry-After"]) <= 8


def test_unknown_routes_and_tasks_are_openai_404s(gateway: Gateway, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    route = httpx.get(gateway.base_url + "/v1/nothing-here", headers=auth, timeout=10)
    assert route.status_code == 404
    assert REQUEST_ID.match(route.headers["x-request-id"])
    assert route.json()["error"]["type"] == "invalid_request_error"
    task = httpx.get(
        f"{gateway.base_url}{GENERATIONS}/0b7c9e52-7d0c-4a43-9d3d-3f3e2d1c0b0a",
        headers=auth,
        timeout=10,
    )
    _assert_error(task, 404, "invalid_request_error", "task_not_found")


def test_content_rejected_upstream_is_400_content_policy_violation(
    gateway_factory: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor = FakeOpenAIVendor(api_key="sk-upstream")
    with serve(vendor.app) as upstream:
        # wan2.7-image-pro now goes to the (fake, wire-level) vendor, which refuses the word
        monkeypatch.setenv("IMAGEGATE_OPENAI_BASE_URL", upstream.base_url)
        monkeypatch.setenv("IMAGEGATE_OPENAI_API_KEY", "sk-upstream")
        gateway = gateway_factory()
        secret = gateway.new_key().secret
        body = {"model": "wan2.7-image-pro", "prompt": f"a {BLOCKED_WORD} picture"}
        response = _post(gateway, secret, body)
        error = _assert_error(response, 400, "invalid_request_error", "content_policy_violation")
        assert "safety system" in error["message"]
        fine = _post(gateway, secret, {"model": "wan2.7-image-pro", "prompt": "a lake"})
        assert fine.status_code == 200, fine.text
    assert [r.path for r in vendor.requests].count(GENERATIONS) == 2


def test_an_upstream_failure_is_500_server_error(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(sandbox={"latency": 0.0, "failure_rate": 1.0})
    secret = gateway.new_key().secret
    response = _post(gateway, secret, {"model": "wan2.7-image-pro", "prompt": "x"})
    error = _assert_error(response, 500, "server_error", "upstream_error")
    assert "injected failure" in error["message"]


def test_a_sync_wait_that_runs_out_keeps_the_task(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(sandbox={"latency": 1.0}, sync_timeout=0.2)
    secret = gateway.new_key().secret
    response = _post(gateway, secret, {"model": "wan2.7-image-pro", "prompt": "x", "size": "1K"})
    error = _assert_error(response, 504, "server_error", "timeout")
    assert response.headers["x-should-retry"] == "false"  # the SDK must not pay twice
    task_id = (
        response.headers.get("x-imagegate-task-id")
        or re.findall(r"[0-9a-f-]{36}", error["message"])[0]
    )
    path = f"{gateway.base_url}{GENERATIONS}/{task_id}"
    deadline = time.monotonic() + 10
    while (
        later := httpx.get(path, headers={"Authorization": f"Bearer {secret}"})
    ).status_code != 200:
        assert later.status_code == 504, later.text
        assert time.monotonic() < deadline
        time.sleep(0.1)
    url = later.json()["data"][0]["url"]
    assert _png_size(httpx.get(url, timeout=10).content) == (1024, 1024)
