"""The DashScope front over real HTTP: seed bodies byte for byte, answer shapes, every error row.

A real gateway runs on 127.0.0.1 (``tests/gateway_fixtures.py``) with the sandbox as upstream;
the content-rejection row uses the wire-level fake of DashScope's cloud as upstream instead
(the sandbox has no way to reject content).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegate.types import TaskStatus
from tests.fakes.dashscope_vendor import FakeDashScope
from tests.fakes.server import serve
from tests.gateway_fixtures import Gateway, KeyPair, api_key, gateway, gateway_factory

__all__ = ["api_key", "gateway", "gateway_factory"]  # fixtures, imported for pytest

GENERATION = "/api/v1/services/aigc/image-generation/generation"
MULTIMODAL = "/api/v1/services/aigc/multimodal-generation/generation"
SYNTHESIS = "/api/v1/services/aigc/text2image/image-synthesis"
TASKS = "/api/v1/tasks"
ASYNC = {"X-DashScope-Async": "enable"}
SEEDS = Path("/work/shared/seeds")

#: seed 001's curl ``--data``, exactly as the page prints it (two-space indentation)
SEED_001_BODY = "\n".join(
    [
        "{",
        '  "model": "wan2.6-t2i",',
        '  "input": {',
        '    "messages": [',
        "      {",
        '        "role": "user",',
        '        "content": [',
        "          {",
        '            "text": "A flower shop with exquisite windows, a beautiful wooden door, '
        'and flowers on display"',
        "          }",
        "        ]",
        "      }",
        "    ]",
        "  },",
        '  "parameters": {',
        '    "prompt_extend": true,',
        '    "watermark": false,',
        '    "n": 1,',
        '    "negative_prompt": "",',
        '    "size": "1280*1280"',
        "  }",
        "}",
    ]
).encode()

#: seed 002's curl ``--data``, exactly as the page prints it (no indentation)
SEED_002_BODY = "\n".join(line.strip() for line in SEED_001_BODY.decode().splitlines()).encode()


def seed_body(name: str) -> bytes | None:
    """The ``--data`` of a seed page, when the pages are at hand (they are in the workspace)."""
    path = next(SEEDS.glob(f"{name}_*.txt"), None) if SEEDS.is_dir() else None
    if path is None:
        return None
    found = re.search(r"--data '(.*?)'", path.read_text("utf-8"), re.S)
    return found[1].encode() if found else None


# --------------------------------------------------------------------------- helpers


def post(
    gw: Gateway,
    path: str,
    body: bytes | dict[str, Any],
    key: KeyPair | None,
    *,
    is_async: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {"Content-Type": "application/json"}
    if key is not None:
        sent.update(key.headers)
    if is_async:
        sent.update(ASYNC)
    sent.update(headers or {})
    if isinstance(body, dict):
        return httpx.post(gw.url(path), json=body, headers=sent, timeout=30)
    return httpx.post(gw.url(path), content=body, headers=sent, timeout=30)


def messages_body(model: str = "wan2.6-t2i", prompt: str = "a red bicycle", **params: Any) -> dict:
    body: dict[str, Any] = {
        "model": model,
        "input": {"messages": [{"role": "user", "content": [{"text": prompt}]}]},
        "parameters": {"n": 1, **params},
    }
    return body


def prompt_body(model: str, prompt: str = "a lighthouse at dusk", **params: Any) -> dict:
    return {"model": model, "input": {"prompt": prompt}, "parameters": {"n": 1, **params}}


def read_task(gw: Gateway, key: KeyPair, task_id: str) -> dict[str, Any]:
    answer = httpx.get(gw.url(f"{TASKS}/{task_id}"), headers=key.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_task(gw: Gateway, key: KeyPair, task_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = read_task(gw, key, task_id)
        if TaskStatus(body["output"]["task_status"]).is_terminal:
            return body
        assert time.monotonic() < deadline, f"task {task_id} still {body}"
        time.sleep(0.05)


def fetch_image(url: str) -> Image.Image:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(answer.content))
    image.load()
    return image


def choice_urls(output: dict[str, Any]) -> list[str]:
    return [
        part["image"]
        for choice in output["choices"]
        for part in choice["message"]["content"]
        if part["type"] == "image"
    ]


def assert_error(answer: httpx.Response, status: int, code: str, *mentions: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"request_id", "code", "message"}, body
    assert body["code"] == code, body
    assert body["request_id"] == answer.headers["x-request-id"]
    for text in mentions:
        assert text in body["message"], body
    return body


# --------------------------------------------------------------------------- seed pages


def test_seed_001_async_body_byte_for_byte(gateway: Gateway, api_key: KeyPair) -> None:
    page = seed_body("001")
    if page is not None:
        assert page == SEED_001_BODY
    answer = post(gateway, GENERATION, SEED_001_BODY, api_key, is_async=True)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    # seed 001's documented answer: request_id, output.task_id, output.task_status PENDING
    assert list(body) == ["request_id", "output"]
    assert list(body["output"]) == ["task_id", "task_status"]
    assert body["output"]["task_status"] == "PENDING"
    assert body["request_id"] == answer.headers["x-request-id"]

    done = wait_task(gateway, api_key, body["output"]["task_id"])
    output = done["output"]
    assert output["task_status"] == "SUCCEEDED", done
    assert output["finished"] is True
    for stamp in ("submit_time", "scheduled_time", "end_time"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", output[stamp])
    assert done["usage"]["image_count"] == 1
    assert done["usage"]["size"] == "1280*1280"
    (url,) = choice_urls(output)
    assert fetch_image(url).size == (1280, 1280)


def test_seed_002_sync_body_byte_for_byte(gateway: Gateway, api_key: KeyPair) -> None:
    page = seed_body("002")
    if page is not None:
        assert page == SEED_002_BODY
    answer = post(gateway, MULTIMODAL, SEED_002_BODY, api_key)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # seed 002's documented answer, key for key
    assert list(body) == ["output", "usage", "request_id"]
    assert body["output"]["finished"] is True
    (choice,) = body["output"]["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert body["usage"] == {
        "image_count": 1,
        "input_tokens": 0,
        "output_tokens": 0,
        "size": "1280*1280",
        "total_tokens": 0,
    }
    (url,) = choice_urls(body["output"])
    assert fetch_image(url).size == (1280, 1280)


# --------------------------------------------------------------------------- routes and shapes


def test_legacy_synthesis_task_has_results_shape(gateway: Gateway, api_key: KeyPair) -> None:
    body = prompt_body("wan2.5-t2i-preview", size="1104*1472", seed=7)
    body["input"]["negative_prompt"] = "blurry"
    answer = post(gateway, SYNTHESIS, body, api_key, is_async=True)
    assert answer.status_code == 200, answer.text
    done = wait_task(gateway, api_key, answer.json()["output"]["task_id"])
    output = done["output"]
    assert output["task_status"] == "SUCCEEDED"
    (result,) = output["results"]
    assert result["orig_prompt"] == "a lighthouse at dusk"
    assert output["task_metrics"] == {"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0}
    assert done["usage"]["image_count"] == 1
    assert fetch_image(result["url"]).size == (1104, 1472)


def test_sync_call_models_answer_image_synthesis_without_the_header(
    gateway: Gateway, api_key: KeyPair
) -> None:
    answer = post(gateway, SYNTHESIS, prompt_body("wan2.2-t2i-flash", size="768*512"), api_key)
    assert answer.status_code == 200, answer.text
    output = answer.json()["output"]
    assert output["task_status"] == "SUCCEEDED"
    (result,) = output["results"]
    assert fetch_image(result["url"]).size == (768, 512)


def test_any_catalog_model_through_any_route(gateway: Gateway, api_key: KeyPair) -> None:
    """Chanjing and OpenAI-style models too, on both async routes: translated, then checked."""
    sizes = {"kling-v2-1": "1280*720", "wan2.2-t2i": "720*1280", "wan2.7-image-pro": "1K"}
    submitted: dict[str, tuple[str, str]] = {}
    for entry in gateway.ctx.catalog:
        size = sizes.get(entry.name)
        params = {"size": size} if size else {}
        if entry.endpoint == "dashscope-generation":
            route, body = SYNTHESIS, prompt_body(entry.name, **params)
        else:
            route, body = GENERATION, messages_body(entry.name, **params)
        answer = post(gateway, route, body, api_key, is_async=True)
        assert answer.status_code == 200, (entry.name, answer.text)
        submitted[entry.name] = (route, answer.json()["output"]["task_id"])
    for name, (route, task_id) in submitted.items():
        done = wait_task(gateway, api_key, task_id)
        assert done["output"]["task_status"] == "SUCCEEDED", (name, done)
        shape = "choices" if route == GENERATION else "results"
        assert len(done["output"][shape]) == 1, (name, done)
    # one image per task is enough to show the links serve the size that was asked for
    kling = wait_task(gateway, api_key, submitted["kling-v2-1"][1])
    (url,) = choice_urls(kling["output"])
    assert fetch_image(url).size == (1280, 720)


def test_workspace_header_is_accepted_and_ignored(gateway: Gateway, api_key: KeyPair) -> None:
    headers = {"X-DashScope-WorkSpace": "ws-anything"}
    answer = post(gateway, MULTIMODAL, messages_body(), api_key, headers=headers)
    assert answer.status_code == 200, answer.text
    assert len(choice_urls(answer.json()["output"])) == 1


def test_unknown_parameters_are_kept_as_task_warnings(gateway: Gateway, api_key: KeyPair) -> None:
    """The vendor tolerates unknown keys; imagegate accepts them and says so on the task."""
    answer = post(gateway, GENERATION, messages_body(mystery=3), api_key, is_async=True)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["output"]["task_id"]
    assert wait_task(gateway, api_key, task_id)["output"]["task_status"] == "SUCCEEDED"
    stored = gateway.state.tasks.get(task_id, owner=api_key.key.id)
    assert stored is not None
    assert any("parameters.mystery" in warning for warning in stored.warnings), stored.warnings


# --------------------------------------------------------------------------- error rows


def test_malformed_json_is_invalid_parameter(gateway: Gateway, api_key: KeyPair) -> None:
    answer = post(gateway, GENERATION, b'{"model": "wan2.6-t2i", "input": ', api_key, is_async=True)
    assert_error(answer, 400, "InvalidParameter", "body", "JSON")
    answer = post(gateway, MULTIMODAL, b"", api_key)
    assert_error(answer, 400, "InvalidParameter", "body")


def test_wrong_type_names_the_field(gateway: Gateway, api_key: KeyPair) -> None:
    answer = post(gateway, MULTIMODAL, messages_body(n="2"), api_key)
    assert_error(answer, 400, "InvalidParameter", "parameters.n", "integer")
    answer = post(gateway, SYNTHESIS, {"model": "wan2.2-t2i-flash", "input": {}}, api_key)
    assert_error(answer, 400, "InvalidParameter", "input.prompt", "required")


def test_broken_model_rule_names_the_field_and_rule(gateway: Gateway, api_key: KeyPair) -> None:
    answer = post(gateway, GENERATION, messages_body(size="512*512"), api_key, is_async=True)
    body = assert_error(answer, 400, "InvalidParameter", "parameters.size")
    assert "1280*1280" in body["message"] or "1638400" in body["message"], body
    answer = post(gateway, SYNTHESIS, prompt_body("wan2.2-t2i-flash", "x" * 501), api_key)
    assert_error(answer, 400, "InvalidParameter", "input.prompt", "500")


def test_unknown_model_is_model_not_exist(gateway: Gateway, api_key: KeyPair) -> None:
    answer = post(gateway, SYNTHESIS, prompt_body("wan9-imaginary"), api_key, is_async=True)
    assert_error(answer, 400, "InvalidParameter", "Model not exist.", "wan9-imaginary")


def test_missing_or_bad_key_is_invalid_api_key(gateway: Gateway) -> None:
    answer = post(gateway, MULTIMODAL, messages_body(), None)
    assert_error(answer, 401, "InvalidApiKey", "Authorization")
    bad = {"Authorization": "Bearer sk-not-a-key"}
    answer = post(gateway, GENERATION, messages_body(), None, is_async=True, headers=bad)
    assert_error(answer, 401, "InvalidApiKey", "Invalid API-key")
    answer = httpx.get(gateway.url(f"{TASKS}/anything"), headers=bad)
    assert_error(answer, 401, "InvalidApiKey")
    answer = httpx.get(gateway.url(TASKS), headers={"Authorization": "Basic abc"})
    assert_error(answer, 401, "InvalidApiKey", "Bearer")


def test_model_not_allowed_for_the_key_is_access_denied(gateway: Gateway) -> None:
    only_flash = gateway.new_key("flash only", models=("wan2.2-t2i-flash",))
    answer = post(gateway, GENERATION, messages_body(), only_flash, is_async=True)
    assert_error(answer, 403, "AccessDenied", "wan2.6-t2i")
    answer = post(gateway, SYNTHESIS, prompt_body("wan2.2-t2i-flash"), only_flash, is_async=True)
    assert answer.status_code == 200, answer.text


def test_rate_limit_is_throttling_with_retry_after(gateway: Gateway) -> None:
    slow = gateway.new_key("one per second", qps=1)
    first = post(gateway, GENERATION, messages_body(), slow, is_async=True)
    assert first.status_code == 200, first.text
    second = post(gateway, GENERATION, messages_body(), slow, is_async=True)
    assert_error(second, 429, "Throttling.RateQuota", "rate limit")
    assert 1 <= int(second.headers["Retry-After"]) <= 8


def test_in_flight_limit_is_throttling_too(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(sandbox={"latency": 5.0}, max_concurrent=1)
    busy = gw.new_key("one in flight", max_in_flight=1)
    assert post(gw, GENERATION, messages_body(), busy, is_async=True).status_code == 200
    answer = post(gw, GENERATION, messages_body(), busy, is_async=True)
    assert_error(answer, 429, "Throttling.RateQuota", "in flight")
    assert 1 <= int(answer.headers["Retry-After"]) <= 8


def test_body_too_large(gateway: Gateway, api_key: KeyPair) -> None:
    huge = messages_body(prompt="x" * (gateway.ctx.max_body_bytes + 10))
    answer = post(gateway, MULTIMODAL, huge, api_key)
    assert_error(answer, 413, "BadRequest.TooLarge", "body")


def test_content_rejected_upstream(
    gateway_factory: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DashScope's own cloud (the wire-level fake) rejects the content: 400 DataInspectionFailed."""
    vendor = FakeDashScope(polls_to_finish=1)
    with serve(vendor.app) as cloud:
        monkeypatch.setenv("DASHSCOPE_API_KEY", vendor.api_key)
        monkeypatch.setenv("DASHSCOPE_BASE_URL", cloud.base_url + "/api/v1")
        gw = gateway_factory()
        key = gw.new_key()
        rejection = "Output data may contain inappropriate content."
        vendor.plan_next("fail", "DataInspectionFailed", rejection)
        answer = post(gw, MULTIMODAL, messages_body(prompt="something forbidden"), key)
        assert_error(answer, 400, "DataInspectionFailed", rejection)

        vendor.plan_next("fail", "DataInspectionFailed", rejection)
        answer = post(gw, SYNTHESIS, prompt_body("wan2.5-t2i-preview"), key, is_async=True)
        assert answer.status_code == 200, answer.text
        done = wait_task(gw, key, answer.json()["output"]["task_id"])
        assert done["output"]["task_status"] == "FAILED"
        assert done["output"]["code"] == "DataInspectionFailed"
        assert done["output"]["message"].endswith(rejection)
        assert vendor.submit_count() == 2


def test_upstream_failure_is_internal_error(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(sandbox={"latency": 0.0, "failure_rate": 1.0})
    key = gw.new_key()
    answer = post(gw, MULTIMODAL, messages_body(), key)
    assert_error(answer, 500, "InternalError", "injected failure")
    answer = post(gw, GENERATION, messages_body(), key, is_async=True)
    done = wait_task(gw, key, answer.json()["output"]["task_id"])
    assert done["output"]["task_status"] == "FAILED"
    assert "injected failure" in done["output"]["message"]


def test_a_crash_inside_the_gateway_is_internal_error(
    gateway: Gateway, api_key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the store fell over")

    monkeypatch.setattr(gateway.ctx.service, "get", broken)
    answer = httpx.get(gateway.url(f"{TASKS}/some-task"), headers=api_key.headers)
    assert_error(answer, 500, "InternalError", answer.headers["x-request-id"])


def test_sync_route_timeout_is_request_timeout_and_the_task_lives_on(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gw = gateway_factory(sandbox={"latency": 0.6}, sync_timeout=0.1)
    key = gw.new_key()
    answer = post(gw, MULTIMODAL, messages_body(), key)
    body = assert_error(answer, 408, "RequestTimeOut", "0.1 s", "GET /api/v1/tasks/")
    task_id = body["message"].rsplit("/", 1)[1]
    done = wait_task(gw, key, task_id)
    assert done["output"]["task_status"] == "SUCCEEDED", done
    assert len(choice_urls(done["output"])) == 1


# --------------------------------------------------------------------------- sync and async


def test_image_generation_without_the_async_header_is_403(
    gateway: Gateway, api_key: KeyPair
) -> None:
    answer = post(gateway, GENERATION, SEED_001_BODY, api_key)
    assert_error(answer, 403, "AccessDenied", "current user api does not support synchronous calls")


def test_multimodal_with_the_async_header_is_403(gateway: Gateway, api_key: KeyPair) -> None:
    answer = post(gateway, MULTIMODAL, SEED_002_BODY, api_key, is_async=True)
    assert_error(
        answer, 403, "AccessDenied", "current user api does not support asynchronous calls"
    )


@pytest.mark.parametrize("model", ["wan2.5-t2i-preview", "wan2.1-t2i-turbo", "wan2.6-t2i"])
def test_image_synthesis_without_the_header_is_403_for_async_models(
    gateway: Gateway, api_key: KeyPair, model: str
) -> None:
    answer = post(gateway, SYNTHESIS, prompt_body(model), api_key)
    body = assert_error(
        answer, 403, "AccessDenied", "current user api does not support synchronous calls"
    )
    assert "wan2.2-t2i-flash" in body["message"]


# --------------------------------------------------------------------------- tasks


def test_unknown_task_reads_unknown(gateway: Gateway, api_key: KeyPair) -> None:
    for task_id in ("no-such-task", "8d4e6bb6-0000-4000-8000-000000000000"):
        answer = httpx.get(gateway.url(f"{TASKS}/{task_id}"), headers=api_key.headers)
        assert answer.status_code == 200
        assert answer.json()["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}
        assert answer.json()["request_id"] == answer.headers["x-request-id"]


def test_another_key_cannot_see_or_cancel_a_task(gateway: Gateway, api_key: KeyPair) -> None:
    answer = post(gateway, GENERATION, messages_body(), api_key, is_async=True)
    task_id = answer.json()["output"]["task_id"]
    other = gateway.new_key("other")
    assert read_task(gateway, other, task_id)["output"]["task_status"] == "UNKNOWN"
    canceled = httpx.post(gateway.url(f"{TASKS}/{task_id}/cancel"), headers=other.headers)
    assert_error(canceled, 400, "InvalidParameter", task_id)
    listed = httpx.get(gateway.url(TASKS), headers=other.headers).json()
    assert listed["total"] == 0 and listed["tasks"] == []
    assert wait_task(gateway, api_key, task_id)["output"]["task_status"] == "SUCCEEDED"


def test_cancel_pending_then_running_and_finished(
    gateway_factory: Callable[..., Gateway],
) -> None:
    """One worker busy with a slow task: the next task stays PENDING and can be canceled."""
    gw = gateway_factory(sandbox={"latency": 1.0}, max_concurrent=1)
    key = gw.new_key()
    busy = post(gw, GENERATION, messages_body(), key, is_async=True).json()["output"]["task_id"]
    deadline = time.monotonic() + 5
    while gw.state.tasks.get(busy).upstream_task_id is None:  # the worker holds it now
        assert time.monotonic() < deadline
        time.sleep(0.02)
    waiting = post(gw, SYNTHESIS, prompt_body("wan2.2-t2i-flash"), key, is_async=True)
    waiting_id = waiting.json()["output"]["task_id"]

    answer = httpx.post(gw.url(f"{TASKS}/{waiting_id}/cancel"), headers=key.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"]["task_id"] == waiting_id
    assert answer.json()["output"]["task_status"] == "CANCELED"
    assert read_task(gw, key, waiting_id)["output"]["task_status"] == "CANCELED"

    while read_task(gw, key, busy)["output"]["task_status"] == "PENDING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    answer = httpx.post(gw.url(f"{TASKS}/{busy}/cancel"), headers=key.headers)
    assert_error(answer, 400, "UnsupportedOperation", "RUNNING", "PENDING")
    assert wait_task(gw, key, busy)["output"]["task_status"] == "SUCCEEDED"
    answer = httpx.post(gw.url(f"{TASKS}/{busy}/cancel"), headers=key.headers)
    assert_error(answer, 400, "UnsupportedOperation")


def test_list_pages_and_filters(gateway: Gateway, api_key: KeyPair) -> None:
    ids = []
    for model in ("wan2.2-t2i-flash", "wan2.2-t2i-flash", "wan2.1-t2i-turbo"):
        answer = post(gateway, SYNTHESIS, prompt_body(model), api_key, is_async=True)
        ids.append(answer.json()["output"]["task_id"])
    for task_id in ids:
        wait_task(gateway, api_key, task_id)

    def page(**params: Any) -> dict[str, Any]:
        answer = httpx.get(gateway.url(TASKS), params=params, headers=api_key.headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    first, second = page(page_no=1, page_size=2), page(page_no=2, page_size=2)
    assert (first["total"], first["page_no"], first["page_size"]) == (3, 1, 2)
    assert len(first["tasks"]) == 2 and len(second["tasks"]) == 1
    seen = [task["task_id"] for task in first["tasks"] + second["tasks"]]
    assert seen == ids[::-1]  # newest first
    assert all(task["task_status"] == "SUCCEEDED" for task in first["tasks"])
    assert first["tasks"][0]["output"]["results"][0]["url"].startswith(gateway.base_url)

    flash = page(model_name="wan2.2-t2i-flash")
    assert flash["total"] == 2
    assert {task["model"] for task in flash["tasks"]} == {"wan2.2-t2i-flash"}
    assert page(status="SUCCEEDED")["total"] == 3
    assert page(status="PENDING")["total"] == 0
    assert page(start_time="20000101000000", end_time="20991231235959")["total"] == 3
    assert page(end_time="20000101000000")["total"] == 0

    for params, field in (
        ({"page_size": 0}, "page_size"),
        ({"page_no": "x"}, "page_no"),
        ({"status": "DONE"}, "status"),
        ({"start_time": "2023-04-20"}, "start_time"),
    ):
        answer = httpx.get(gateway.url(TASKS), params=params, headers=api_key.headers)
        assert_error(answer, 400, "InvalidParameter", field)
