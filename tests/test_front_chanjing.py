"""The Chanjing front against a real gateway on 127.0.0.1 (sandbox upstream).

Seed 000's and seed 004's bodies (the "请求参数 Body" block and the curl ``--data-raw`` body of
each page) are sent byte for byte after getting a token, answered with the page's envelope,
read to completion, fetched and listed; then every error row of the rulings table is produced
by a real bad request: HTTP 200 always, the error in ``code``.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegate.errors import ContentRejected
from imagegate.server.fronts import chanjing as front
from tests.fakes.openai_vendor import BLOCKED_WORD, FakeOpenAIVendor
from tests.fakes.server import serve
from tests.gateway_fixtures import Gateway, KeyPair, gateway_factory, start_gateway, stop_gateway

__all__ = ["gateway_factory"]  # a fixture, imported for pytest

TOKEN = "/open/v1/access_token"
SUBMIT = "/open/v1/ai_creation/task/submit"
DETAIL = "/open/v1/ai_creation/task"
PAGE = "/open/v1/ai_creation/task/page"
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
#: the prompt of both pages' curl examples
PAGE_PROMPT = (
    "生成一张微缩模型风格的创意场景图。"
    "画面中央是一个古典青花瓷碗,碗里盛着雪白的汤圆,最上面一颗破皮流出黑芝麻馅。"
)

#: the pages' request bodies, byte for byte: (body, expected PNG size, a warning expected)
SEED_BODIES: dict[str, tuple[str, tuple[int, int], bool]] = {
    "000-body": (
        '{\n  "ref_prompt": "高级感室内设计渲染图,现代极简风,真实材质表现",\n'
        '  "creation_type": 3,\n  "aspect_ratio": "9:16",\n  "number_of_images": 1,\n'
        '  "quality_mode": "std",\n  "model_code": "wan2.2-t2i"\n}',
        (720, 1280),
        False,
    ),
    "000-curl": (
        f'{{\n    "ref_prompt": "{PAGE_PROMPT}",\n    "creation_type": 3,\n'
        '    "aspect_ratio": "9:16",\n    "number_of_images": 1,\n    "quality_mode": "std",\n'
        '    "model_code": "wan2.2-t2i"\n}',
        (720, 1280),
        False,
    ),
    "004-body": (
        '{\n  "ref_img_url": [\n'
        '    "https://res.chanjing.cc/chanjing/res/aigc_creation/photo/xxx.jpg"\n  ],\n'
        '  "ref_prompt": "少女风时尚海报,柔光,杂志封面质感",\n  "creation_type": 3,\n'
        '  "aspect_ratio": "3:4",\n  "clarity": 2048,\n  "number_of_images": 1,\n'
        '  "model_code": "kling-v2-1"\n}',
        (1728, 2304),
        True,
    ),
    "004-curl": (
        f'{{\n    "ref_prompt": "{PAGE_PROMPT}",\n    "creation_type": 3,\n'
        '    "aspect_ratio": "9:16",\n    "clarity": 2048,\n    "number_of_images": 1,\n'
        '    "model_code": "kling-v2-1"\n}',
        (1440, 2560),
        False,
    ),
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    running = start_gateway(tmp_path_factory.mktemp("chanjing-front"))
    yield running
    stop_gateway(running)


def _token(gateway: Gateway, pair: KeyPair) -> str:
    body = {"app_id": pair.app_id, "secret_key": pair.secret}
    answer = _envelope(httpx.post(gateway.url(TOKEN), json=body, timeout=10))
    assert answer["code"] == 0, answer
    return str(answer["data"]["access_token"])


@pytest.fixture(scope="module")
def token(gateway: Gateway) -> str:
    return _token(gateway, gateway.new_key())


def _envelope(response: httpx.Response) -> dict[str, Any]:
    """Every Chanjing answer: HTTP 200, ``{trace_id, code, msg, data}``, trace id = request id."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"trace_id", "code", "msg", "data"} <= set(body)
    assert TRACE_ID.match(body["trace_id"])
    assert response.headers["x-request-id"] == body["trace_id"]
    return body


def _submit(gateway: Gateway, token: str | None, body: str | bytes | dict[str, Any]) -> dict:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["access_token"] = token
    content = json.dumps(body, ensure_ascii=False) if isinstance(body, dict) else body
    if isinstance(content, str):
        content = content.encode("utf-8")
    return _envelope(httpx.post(gateway.url(SUBMIT), content=content, headers=headers, timeout=10))


def _detail(gateway: Gateway, token: str, unique_id: str) -> dict[str, Any]:
    response = httpx.get(
        gateway.url(DETAIL), params={"unique_id": unique_id}, headers={"access_token": token}
    )
    return _envelope(response)


def _finished(gateway: Gateway, token: str, unique_id: str) -> dict[str, Any]:
    """Poll the detail route (bounded) until the task leaves Queued / Generating."""
    deadline = time.monotonic() + 15
    while True:
        answer = _detail(gateway, token, unique_id)
        assert answer["code"] == 0, answer
        if answer["data"]["progress_desc"] not in ("Queued", "Ready", "Generating"):
            return dict(answer["data"])
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def _assert_error(answer: dict[str, Any], code: int, *words: str) -> None:
    assert answer["code"] == code, answer
    assert answer["data"] is None
    for word in words:
        assert word in answer["msg"], answer


# ------------------------------------------------------------------------------ happy paths


def test_access_token_is_issued_for_a_key_pair(gateway: Gateway) -> None:
    pair = gateway.new_key()
    body = {"app_id": pair.app_id, "secret_key": pair.secret}
    answer = _envelope(httpx.post(gateway.url(TOKEN), json=body, timeout=10))
    assert (answer["code"], answer["msg"]) == (0, "success")
    data = answer["data"]
    assert set(data) == {"access_token", "expire_in"}
    assert isinstance(data["access_token"], str) and data["access_token"]
    # expire_in is the Unix time of expiry (about 24 h ahead), not a TTL
    assert time.time() + 3600 < data["expire_in"] <= time.time() + 86400 + 60


@pytest.mark.parametrize("name", list(SEED_BODIES))
def test_seed_bodies_run_to_a_fetched_image(gateway: Gateway, token: str, name: str) -> None:
    raw, size, warned = SEED_BODIES[name]
    sent = json.loads(raw)
    answer = _submit(gateway, token, raw)
    assert (answer["code"], answer["msg"]) == (0, "success")
    unique_id = answer["data"]
    assert isinstance(unique_id, str) and len(unique_id) == 36
    # the page's envelope: exactly its four keys, plus "warnings" only when there is one
    assert set(answer) - {"trace_id", "code", "msg", "data"} == ({"warnings"} if warned else set())

    item = _finished(gateway, token, unique_id)
    assert item["progress_desc"] == "Success", item
    assert item["unique_id"] == unique_id
    assert item["type"] == 3
    assert item["model_code"] == sent["model_code"]
    assert item["aspect_ratio"] == sent["aspect_ratio"]
    assert item["photo_info"]["ref_prompt"] == sent["ref_prompt"]
    assert item["photo_info"]["number_of_images"] == 1
    assert isinstance(item["create_time"], int)
    assert len(item["output_url"]) == 1
    image = httpx.get(item["output_url"][0], timeout=30)
    assert image.status_code == 200
    assert _png_size(image.content) == size
    if warned:
        # kling-v2-1 takes ref_img_url but does not use it (seed 004's note): said, not hidden
        for warnings in (answer["warnings"], item["warnings"]):
            assert any("ref_img_url" in w and "not forwarded" in w for w in warnings)
    else:
        assert "warnings" not in item

    listed = httpx.post(
        gateway.url(PAGE),
        json={"unique_ids": [unique_id], "type": 3, "page": 1, "page_size": 50, "is_success": True},
        headers={"access_token": token},
    )
    page = _envelope(listed)["data"]
    assert [entry["unique_id"] for entry in page["list"]] == [unique_id]
    assert page["list"][0]["output_url"]
    assert page["total"] == 1
    assert page["page_info"] == {"page": 1, "size": 50, "total_count": 1, "total_page": 1}


def test_page_lists_only_the_keys_own_tasks_newest_first(gateway: Gateway) -> None:
    pair = gateway.new_key()
    token = _token(gateway, pair)
    body = {
        "ref_prompt": "a",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    ids = [_submit(gateway, token, {**body, "ref_prompt": p})["data"] for p in ("one", "two")]
    # the list page's own example body
    example = b'{"unique_ids": [], "type": 3, "page": 1, "page_size": 50, "is_success": false}'
    answer = _envelope(
        httpx.post(
            gateway.url(PAGE),
            content=example,
            headers={"access_token": token, "Content-Type": "application/json"},
        )
    )
    assert answer["code"] == 0
    assert [item["unique_id"] for item in answer["data"]["list"]] == ids[::-1]
    assert answer["data"]["total"] == 2


# ------------------------------------------------------------------------------ error rows


def test_bad_json_is_code_400(gateway: Gateway, token: str) -> None:
    _assert_error(_submit(gateway, token, b'{"ref_prompt": "x",'), 400, "JSON")


def test_a_wrong_type_is_code_400_naming_the_field(gateway: Gateway, token: str) -> None:
    body = {
        "ref_prompt": "x",
        "creation_type": 3,
        "number_of_images": "1",
        "model_code": "wan2.2-t2i",
    }
    _assert_error(_submit(gateway, token, body), 400, "number_of_images", "integer")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"number_of_images": 5}, "number_of_images"),
        ({"aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"quality_mode": "ultra"}, "quality_mode"),
        ({"model_code": "kling-v2-1", "clarity": 4096}, "clarity"),
    ],
)
def test_a_broken_model_rule_is_code_40000_naming_the_field(
    gateway: Gateway, token: str, change: dict[str, Any], field: str
) -> None:
    body = {
        "ref_prompt": "x",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    _assert_error(_submit(gateway, token, {**body, **change}), 40000, field)


def test_an_unknown_model_is_code_40000(gateway: Gateway, token: str) -> None:
    body = {"ref_prompt": "x", "creation_type": 3, "number_of_images": 1, "model_code": "mj-v7"}
    _assert_error(_submit(gateway, token, body), 40000, "model_code", "mj-v7", "does not exist")


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
def test_a_missing_or_bad_token_is_code_10400(gateway: Gateway, token: str | None) -> None:
    body = {
        "ref_prompt": "x",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    _assert_error(_submit(gateway, token, body), 10400, "access_token")
    headers = {"access_token": token} if token is not None else {}
    detail = httpx.get(gateway.url(DETAIL), params={"unique_id": "x"}, headers=headers)
    _assert_error(_envelope(detail), 10400, "access_token")


def test_a_bad_key_pair_gets_no_token(gateway: Gateway) -> None:
    pair = gateway.new_key()
    wrong = {"app_id": pair.app_id, "secret_key": pair.secret + "x"}
    _assert_error(_envelope(httpx.post(gateway.url(TOKEN), json=wrong)), 10400, "secret_key")
    missing = {"app_id": pair.app_id}
    _assert_error(_envelope(httpx.post(gateway.url(TOKEN), json=missing)), 400, "secret_key")


def test_a_model_not_allowed_for_the_key_is_code_40000(gateway: Gateway) -> None:
    token = _token(gateway, gateway.new_key(models=("kling-v2-1",)))
    body = {
        "ref_prompt": "x",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    _assert_error(_submit(gateway, token, body), 40000, "wan2.2-t2i")


def test_a_rate_limit_is_code_40001_with_retry_after(gateway: Gateway) -> None:
    token = _token(gateway, gateway.new_key(qps=0.2))
    body = {
        "ref_prompt": "x",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    assert _submit(gateway, token, body)["code"] == 0
    response = httpx.post(gateway.url(SUBMIT), json=body, headers={"access_token": token})
    _assert_error(_envelope(response), 40001, "rate limit")
    assert 1 <= int(response.headers["Retry-After"]) <= 8


def test_an_unknown_or_foreign_task_does_not_exist(gateway: Gateway, token: str) -> None:
    missing = _detail(gateway, token, "a60747d7-dc05-4afc-b2ef-ee4370ed53c6")
    _assert_error(missing, 40000, "does not exist")
    body = {
        "ref_prompt": "x",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    mine = _submit(gateway, token, body)["data"]
    stranger = _token(gateway, gateway.new_key())
    _assert_error(_detail(gateway, stranger, mine), 40000, "does not exist")
    no_id = _envelope(httpx.get(gateway.url(DETAIL), headers={"access_token": token}))
    _assert_error(no_id, 400, "unique_id")


def test_unknown_routes_answer_in_the_envelope(gateway: Gateway, token: str) -> None:
    response = httpx.get(gateway.url("/open/v1/nothing"), headers={"access_token": token})
    _assert_error(_envelope(response), 400, "/open/v1/nothing")


def test_content_rejected_upstream(
    gateway_factory: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Submission is asynchronous: the refusal arrives on the task (``Error`` + ``err_msg``).

    The front's answer for a ``ContentRejected`` raised while answering is code 40000.
    """
    vendor = FakeOpenAIVendor(api_key="sk-upstream")
    with serve(vendor.app) as upstream:
        monkeypatch.setenv("IMAGEGATE_OPENAI_BASE_URL", upstream.base_url)
        monkeypatch.setenv("IMAGEGATE_OPENAI_API_KEY", "sk-upstream")
        gateway = gateway_factory()
        token = _token(gateway, gateway.new_key())
        body = {
            "ref_prompt": f"a {BLOCKED_WORD} poster",
            "creation_type": 3,
            "aspect_ratio": "16:9",
            "number_of_images": 1,
            "model_code": "wan2.7-image-pro",
        }
        answer = _submit(gateway, token, body)
        assert answer["code"] == 0, answer
        item = _finished(gateway, token, answer["data"])
    assert item["progress_desc"] == "Error"
    assert "safety system" in item["err_msg"]
    assert item["output_url"] == []
    shaped = front.error_response(ContentRejected("prompt: rejected by moderation"), "ab" * 16)
    assert shaped.status_code == 200
    assert json.loads(bytes(shaped.body))["code"] == 40000


def test_an_upstream_failure_shows_on_the_task(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(sandbox={"latency": 0.0, "failure_rate": 1.0})
    token = _token(gateway, gateway.new_key())
    body = {
        "ref_prompt": "x",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    item = _finished(gateway, token, _submit(gateway, token, body)["data"])
    assert item["progress_desc"] == "Error"
    assert "injected failure" in item["err_msg"]


def test_an_internal_failure_is_code_50000(gateway_factory: Callable[..., Gateway]) -> None:
    """A real fault inside the gateway (its task table gone) answers 50000, not a 500 page."""
    gateway = gateway_factory()
    token = _token(gateway, gateway.new_key())
    body = {
        "ref_prompt": "x",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    database = sqlite3.connect(gateway.data_dir / "imagegate.db", timeout=10)
    try:
        database.execute("ALTER TABLE tasks RENAME TO tasks_away")
        database.commit()
        _assert_error(_submit(gateway, token, body), 50000, "Internal error")
    finally:
        database.execute("ALTER TABLE tasks_away RENAME TO tasks")
        database.commit()
        database.close()
    assert _submit(gateway, token, body)["code"] == 0
