"""The sandbox's content refusal, offline, through every face: SDK, CLI and each gateway front.

A prompt holding one of the sandbox's ``blocked_words`` (default ``sandbox-blocked``) is refused
at submit the way DashScope's moderation refuses one. Each front then answers with its own
vendor's refusal: DashScope 400 ``DataInspectionFailed`` (or a FAILED task with that code),
OpenAI-style 400 ``content_policy_violation``, Chanjing a task in ``Error`` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dashscope
import httpx
import openai
import pytest
from dashscope.aigc.image_synthesis import ImageSynthesis
from typer.testing import CliRunner

from imagegate import Client, ContentRejected
from imagegate.cli import app as cli_app
from imagegate.providers.sandbox import SandboxProvider
from imagegate.server.settings import load_settings
from imagegate.types import GenerationRequest
from tests.gateway_fixtures import Gateway, KeyPair, api_key, gateway, gateway_factory

__all__ = ["api_key", "gateway", "gateway_factory"]  # fixtures, imported for pytest

BLOCKED = "a Sandbox-Blocked poster"  # the default word, in another case
MULTIMODAL = "/api/v1/services/aigc/multimodal-generation/generation"
GENERATION = "/api/v1/services/aigc/image-generation/generation"


def _messages(prompt: str) -> dict[str, Any]:
    return {
        "model": "wan2.6-t2i",
        "input": {"messages": [{"role": "user", "content": [{"text": prompt}]}]},
        "parameters": {"n": 1, "size": "1280*1280"},
    }


def _task(gateway: Gateway, key: KeyPair, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body = httpx.get(gateway.url(f"/api/v1/tasks/{task_id}"), headers=key.headers).json()
        if body["output"]["task_status"] not in ("PENDING", "RUNNING"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


async def test_the_provider_refuses_a_blocked_word_at_submit(tmp_path: Path) -> None:
    sandbox = SandboxProvider(state_dir=tmp_path)
    request = GenerationRequest(model="wan2.6-t2i", prompt=BLOCKED)
    with pytest.raises(ContentRejected) as caught:
        await sandbox.submit(request)
    assert caught.value.field == "prompt"
    assert caught.value.vendor_code == "DataInspectionFailed"
    assert "sandbox-blocked" in caught.value.message
    assert sandbox.submission_count() == 0  # nothing was accepted, nothing to poll
    # the words are a setting: none at all lets the same prompt through
    allowed = await SandboxProvider(blocked_words=()).submit(request)
    assert allowed.status.value == "SUCCEEDED"


def test_the_words_come_from_the_config_or_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway.sandbox]\nblocked_words = ["forbidden"]\n', encoding="utf-8")
    assert load_settings(config, env={}).sandbox.blocked_words == ["forbidden"]
    env = {"IMAGEGATE_SANDBOX_BLOCKED_WORDS": " red , blue ,"}
    assert load_settings(config, env=env).sandbox.blocked_words == ["red", "blue"]
    assert load_settings(env={}).sandbox.blocked_words == ["sandbox-blocked"]


def test_sdk_and_cli(tmp_path: Path) -> None:
    with Client(sandbox=True) as client, pytest.raises(ContentRejected):
        client.generate(BLOCKED, model="wan2.2-t2i-flash", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(
        cli_app,
        ["generate", BLOCKED, "--model", "wan2.6-t2i", "--sandbox", "--out", str(tmp_path / "cli")],
    )
    assert result.exit_code == 4, result.output  # the upstream refused: not the caller's input
    assert "inappropriate content" in result.output
    assert "DataInspectionFailed" in result.output


def test_dashscope_front_sync_and_async(gateway: Gateway, api_key: KeyPair) -> None:
    answer = httpx.post(gateway.url(MULTIMODAL), json=_messages(BLOCKED), headers=api_key.headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "DataInspectionFailed"
    assert "sandbox-blocked" in answer.json()["message"]
    assert answer.json()["request_id"]

    headers = {**api_key.headers, "X-DashScope-Async": "enable"}
    submitted = httpx.post(gateway.url(GENERATION), json=_messages(BLOCKED), headers=headers)
    assert submitted.status_code == 200, submitted.text
    done = _task(gateway, api_key, submitted.json()["output"]["task_id"])
    assert done["output"]["task_status"] == "FAILED"
    assert done["output"]["code"] == "DataInspectionFailed"
    # the gateway keeps serving: the next, harmless prompt succeeds
    fine = httpx.post(gateway.url(MULTIMODAL), json=_messages("a lake"), headers=api_key.headers)
    assert fine.status_code == 200, fine.text


def test_dashscope_sdk_sees_the_failed_task(
    gateway: Gateway, api_key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashscope, "base_http_api_url", gateway.base_url + "/api/v1")
    answer = ImageSynthesis.async_call(
        model="wan2.2-t2i-flash", prompt=BLOCKED, n=1, api_key=api_key.secret
    )
    assert answer.status_code == 200, answer
    done = ImageSynthesis.wait(answer, api_key=api_key.secret)
    assert done.output.task_status == "FAILED"
    assert done.output.code == "DataInspectionFailed"


def test_openai_front_with_the_official_sdk(gateway: Gateway, api_key: KeyPair) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=api_key.secret, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="wan2.7-image-pro", prompt=BLOCKED)
    assert caught.value.status_code == 400
    assert caught.value.code == "content_policy_violation"
    assert "sandbox-blocked" in caught.value.message


def test_chanjing_front(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(sandbox={"latency": 0.0, "blocked_words": ["forbidden"]})
    key = gw.new_key()
    token = httpx.post(
        gw.url("/open/v1/access_token"), json={"app_id": key.app_id, "secret_key": key.secret}
    ).json()["data"]["access_token"]
    headers = {"access_token": token}
    body = {
        "ref_prompt": "a forbidden garden",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }
    submitted = httpx.post(gw.url("/open/v1/ai_creation/task/submit"), json=body, headers=headers)
    assert submitted.json()["code"] == 0, submitted.text
    unique_id = submitted.json()["data"]
    deadline = time.monotonic() + 20
    while True:
        item = httpx.get(
            gw.url("/open/v1/ai_creation/task"), params={"unique_id": unique_id}, headers=headers
        ).json()["data"]
        if item["progress_desc"] not in ("Queued", "Generating"):
            break
        assert time.monotonic() < deadline, item
        time.sleep(0.05)
    assert item["progress_desc"] == "Error"
    assert "'forbidden'" in item["err_msg"]
    assert item["output_url"] == []
