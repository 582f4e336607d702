"""DashScopeProvider against the fake DashScope cloud on 127.0.0.1 (real HTTP, real PNGs)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegate.catalog import build_request
from imagegate.errors import (
    AuthError,
    ContentRejected,
    DownloadError,
    PermissionDenied,
    RateLimited,
    UnknownModel,
    UnsupportedOperation,
    UpstreamError,
    ValidationError,
)
from imagegate.providers.base import Submission
from imagegate.providers.dashscope import DASHSCOPE_POLL, DashScopeProvider
from imagegate.providers.http import RetryPolicy
from imagegate.types import TaskStatus, UpstreamState
from tests.fakes.dashscope_vendor import FakeDashScope, serve_fake
from tests.fakes.server import free_port

KEY = "sk-fake"
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.3)


@pytest.fixture
def fake() -> Iterator[FakeDashScope]:
    with serve_fake(api_key=KEY, polls_to_finish=2) as vendor:
        yield vendor


@pytest.fixture
async def provider(fake: FakeDashScope) -> AsyncIterator[DashScopeProvider]:
    upstream = DashScopeProvider(KEY, fake.api_base, retry=FAST)
    yield upstream
    await upstream.aclose()


async def finish(provider: DashScopeProvider, state: UpstreamState) -> UpstreamState:
    for _ in range(10):
        if state.status.is_terminal:
            return state
        state = await provider.get(state.task_id)
    raise AssertionError(f"task {state.task_id} never finished: {state.status}")


@pytest.mark.parametrize(
    ("model", "size", "path"),
    [
        ("wan2.6-t2i", (1280, 1280), "/services/aigc/image-generation/generation"),
        ("wan2.2-t2i-flash", (1024, 768), "/services/aigc/text2image/image-synthesis"),
    ],
)
async def test_submit_poll_download_end_to_end(
    provider: DashScopeProvider,
    fake: FakeDashScope,
    tmp_path: Path,
    model: str,
    size: tuple[int, int],
    path: str,
) -> None:
    request = build_request(model, "a red fox", n=2, size=f"{size[0]}*{size[1]}")
    submitted = await provider.submit(request)
    assert submitted.status is TaskStatus.PENDING and submitted.request_id
    sent = fake.submits[-1]
    assert sent["path"] == "/api/v1" + path and sent["async"] is True
    assert sent["body"]["parameters"] == {"n": 2, "size": f"{size[0]}*{size[1]}"}
    running = await provider.get(submitted.task_id)
    assert running.status is TaskStatus.RUNNING and running.images == ()
    done = await finish(provider, running)
    assert done.status is TaskStatus.SUCCEEDED and done.usage is not None
    assert done.usage.image_count == 2 and len(done.images) == 2
    saved = await provider.download(done.images[0], tmp_path / "out" / "0.png")
    assert saved.path == tmp_path / "out" / "0.png"
    with Image.open(saved.path) as image:
        assert (image.format, image.size) == ("PNG", size)
    assert fake.submit_count("a red fox") == 1


async def test_sync_endpoints(provider: DashScopeProvider, fake: FakeDashScope) -> None:
    wan26 = await provider.submit(
        build_request("wan2.6-t2i", "sync fox", n=1), Submission(sync=True)
    )
    assert wan26.status is TaskStatus.SUCCEEDED and len(wan26.images) == 1
    assert fake.submits[-1]["path"].endswith("/multimodal-generation/generation")
    assert fake.submits[-1]["async"] is False
    flash = await provider.submit(
        build_request("wan2.2-t2i-flash", "sync flash", n=1), Submission(sync=True)
    )
    assert flash.status is TaskStatus.SUCCEEDED and flash.images[0].actual_prompt
    assert fake.submits[-1]["async"] is False
    # a model without a sync flavour falls back to the async task
    plus = await provider.submit(
        build_request("wan2.1-t2i-plus", "no sync", n=1), Submission(sync=True)
    )
    assert plus.status is TaskStatus.PENDING and fake.submits[-1]["async"] is True


async def test_upstream_model_name_and_unknown_model(
    provider: DashScopeProvider, fake: FakeDashScope
) -> None:
    request = build_request("wan2.1-t2i-turbo", "alias", n=1)
    await provider.submit(request, Submission(upstream_model="wanx2.1-t2i-turbo"))
    assert fake.submits[-1]["body"]["model"] == "wanx2.1-t2i-turbo"
    with pytest.raises(UnknownModel, match="Model not exist") as caught:
        await provider.submit(request, Submission(upstream_model="wan9-t2i"))
    assert caught.value.vendor_code == "InvalidParameter" and caught.value.request_id
    with pytest.raises(ValidationError, match="not a DashScope model"):
        await provider.submit(build_request("kling-v2-1", "x"))


async def test_bad_key_is_an_auth_error(fake: FakeDashScope) -> None:
    provider = DashScopeProvider("sk-wrong", fake.api_base, retry=FAST)
    try:
        with pytest.raises(AuthError) as caught:
            await provider.submit(build_request("wan2.6-t2i", "x", n=1))
        assert (caught.value.vendor_code, caught.value.http_status) == ("InvalidApiKey", 401)
        assert caught.value.request_id
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "InvalidParameter", ValidationError),
        (400, "DataInspectionFailed", ContentRejected),
        (403, "AccessDenied", PermissionDenied),
        (400, "UnsupportedOperation", UnsupportedOperation),
    ],
)
async def test_documented_errors_are_final(
    provider: DashScopeProvider,
    fake: FakeDashScope,
    status: int,
    code: str,
    expected: type[Exception],
) -> None:
    fake.fail_next("submit", status, code, f"scripted {code}")
    with pytest.raises(expected) as caught:
        await provider.submit(build_request("wan2.6-t2i", "x", n=1))
    assert caught.value.vendor_code == code  # type: ignore[attr-defined]
    assert f"scripted {code}" in str(caught.value)
    assert fake.hits["submit"] == 1 and fake.submit_count() == 0


async def test_429_then_success_honours_retry_after(
    provider: DashScopeProvider, fake: FakeDashScope
) -> None:
    fake.throttle_next("submit", retry_after=1)
    started = time.monotonic()
    state = await provider.submit(build_request("wan2.6-t2i", "patient", n=1))
    elapsed = time.monotonic() - started
    assert state.status is TaskStatus.PENDING
    # Retry-After 1 s, capped by the policy's max_delay (0.3 s); without it ~1 ms
    assert elapsed >= 0.29
    assert fake.hits["submit"] == 2 and fake.submit_count("patient") == 1


async def test_429_until_attempts_run_out(provider: DashScopeProvider, fake: FakeDashScope) -> None:
    fake.throttle_next("submit", retry_after=0, times=3)
    with pytest.raises(RateLimited) as caught:
        await provider.submit(build_request("wan2.6-t2i", "x", n=1))
    assert caught.value.retry_after == 0.0 and caught.value.vendor_code == "Throttling.RateQuota"
    assert fake.hits["submit"] == 3


async def test_500_then_success_on_submit_and_poll(
    provider: DashScopeProvider, fake: FakeDashScope
) -> None:
    fake.fail_next("submit", 500, "InternalError", "try again")
    state = await provider.submit(build_request("wan2.6-t2i", "x", n=1))
    fake.fail_next("task", 503, raw="<html>Service Unavailable</html>")
    fake.fail_next("task", 500, "InternalError.Algo", "again")
    polled = await provider.get(state.task_id)
    assert polled.status is TaskStatus.RUNNING
    assert (fake.hits["submit"], fake.hits["task"]) == (2, 3)


async def test_non_json_5xx_until_attempts_run_out(
    provider: DashScopeProvider, fake: FakeDashScope
) -> None:
    fake.fail_next("task", 502, raw="<html>Bad Gateway</html>", times=3)
    with pytest.raises(UpstreamError, match="Bad Gateway") as caught:
        await provider.get("any")
    assert caught.value.http_status == 502


async def test_connection_refused_is_retried_then_reported() -> None:
    provider = DashScopeProvider(KEY, f"http://127.0.0.1:{free_port()}/api/v1", retry=FAST)
    try:
        with pytest.raises(UpstreamError, match="ConnectError"):
            await provider.submit(build_request("wan2.6-t2i", "x", n=1))
    finally:
        await provider.aclose()


async def test_failed_task(provider: DashScopeProvider, fake: FakeDashScope) -> None:
    fake.plan_next("fail", "DataInspectionFailed", "Output data may contain inappropriate content.")
    state = await finish(provider, await provider.submit(build_request("wan2.6-t2i", "x", n=1)))
    assert state.status is TaskStatus.FAILED and state.usage is None
    assert state.error is not None and state.error.code == "DataInspectionFailed"
    assert "inappropriate" in state.error.message


async def test_unknown_task_id(provider: DashScopeProvider) -> None:
    state = await provider.get("0f0f-no-such-task")
    assert (state.task_id, state.status) == ("0f0f-no-such-task", TaskStatus.UNKNOWN)
    assert state.error is not None and "24 hours" in state.error.message


async def test_partially_failed_batch(
    provider: DashScopeProvider, fake: FakeDashScope, tmp_path: Path
) -> None:
    fake.plan_next("partial", "DataInspectionFailed", "image 2 was blocked")
    request = build_request("wan2.2-t2i-flash", "two foxes", n=2)
    state = await finish(provider, await provider.submit(request))
    assert state.status is TaskStatus.SUCCEEDED
    good, bad = state.images
    assert good.ok and good.url and good.actual_prompt == "two foxes, detailed"
    assert (bad.ok, bad.error_code, bad.error_message) == (
        False,
        "DataInspectionFailed",
        "image 2 was blocked",
    )
    assert state.usage is not None and state.usage.image_count == 1
    assert state.warnings and "blocked" in state.warnings[0]
    saved = await provider.download(good, tmp_path / "good.png")
    assert saved.path is not None and saved.path.stat().st_size > 0


async def test_download_cut_off_leaves_no_file(
    provider: DashScopeProvider, fake: FakeDashScope, tmp_path: Path
) -> None:
    state = await finish(provider, await provider.submit(build_request("wan2.6-t2i", "x", n=1)))
    fake.cut_next_download()
    dest = tmp_path / "images" / "cut.png"
    with pytest.raises(DownloadError):
        await provider.download(state.images[0], dest)
    assert list(dest.parent.iterdir()) == []
    again = await provider.download(state.images[0], dest)
    assert again.path == dest and dest.stat().st_size > 0


async def test_cancel(provider: DashScopeProvider, fake: FakeDashScope) -> None:
    pending = await provider.submit(build_request("wan2.6-t2i", "x", n=1))
    canceled = await provider.cancel(pending.task_id)
    assert (canceled.task_id, canceled.status) == (pending.task_id, TaskStatus.CANCELED)
    assert (await provider.get(pending.task_id)).status is TaskStatus.CANCELED
    started = await provider.submit(build_request("wan2.6-t2i", "y", n=1))
    await provider.get(started.task_id)
    with pytest.raises(UnsupportedOperation) as caught:
        await provider.cancel(started.task_id)
    assert caught.value.vendor_code == "UnsupportedOperation"


def test_describe_call_redacts_the_key() -> None:
    provider = DashScopeProvider("sk-secret", "https://example.test/api/v1", workspace="ws-1")
    call = provider.describe_call(build_request("wan2.6-t2i", "cat", n=1, seed=3))
    assert call.method == "POST"
    assert call.url == "https://example.test/api/v1/services/aigc/image-generation/generation"
    assert call.headers == {
        "Authorization": "Bearer $DASHSCOPE_API_KEY",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "X-DashScope-Async": "enable",
        "X-DashScope-WorkSpace": "ws-1",
    }
    assert "sk-secret" not in str(call.to_dict())
    assert call.body == {
        "model": "wan2.6-t2i",
        "input": {"messages": [{"role": "user", "content": [{"text": "cat"}]}]},
        "parameters": {"n": 1, "seed": 3},
    }
    sync = provider.describe_call(build_request("wan2.6-t2i", "cat"), Submission(sync=True))
    assert sync.url.endswith("/multimodal-generation/generation")
    assert "X-DashScope-Async" not in sync.headers
    assert provider.poll_policy == DASHSCOPE_POLL
    assert [DASHSCOPE_POLL.interval(i) for i in range(8)] == [1, 1, 1, 2, 2, 2, 4, 4]
    assert DASHSCOPE_POLL.interval(9) == 5


def _wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise AssertionError("the fake vendor process exited")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("the fake vendor process did not start")


async def test_standalone_fake_keeps_tasks_across_restarts(tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "fake.json"
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tests.fakes.dashscope_vendor", "--port", str(port)]
    command += ["--state", str(state), "--polls", "3"]
    root = Path(__file__).resolve().parents[1]
    provider = DashScopeProvider(KEY, base + "/api/v1", retry=FAST)
    try:
        process = subprocess.Popen(command, cwd=root)
        try:
            _wait_for(base + "/_fake/state", process)
            submitted = await provider.submit(build_request("wan2.6-t2i", "durable", n=1))
            assert (await provider.get(submitted.task_id)).status is TaskStatus.RUNNING
        finally:
            process.terminate()
            process.wait(timeout=10)
        process = subprocess.Popen(command, cwd=root)
        try:
            _wait_for(base + "/_fake/state", process)
            counts = httpx.get(base + "/_fake/state").json()
            assert counts["submits"] == 1 and counts["by_prompt"] == {"durable": 1}
            assert (await provider.get(submitted.task_id)).status is TaskStatus.RUNNING
            assert (await provider.get(submitted.task_id)).status is TaskStatus.SUCCEEDED
        finally:
            process.terminate()
            process.wait(timeout=10)
    finally:
        await provider.aclose()


def test_fake_can_be_scripted_over_http() -> None:
    with serve_fake(api_key=KEY) as fake:
        script = {"fail": {"route": "submit", "status": 500, "code": "InternalError"}}
        assert httpx.post(fake.base_url + "/_fake/script", json=script).json() == {"ok": True}
        body = {"model": "wan2.6-t2i", "input": {"messages": [{"content": [{"text": "x"}]}]}}
        headers = {"Authorization": f"Bearer {KEY}", "X-DashScope-Async": "enable"}
        url = fake.api_base + "/services/aigc/image-generation/generation"
        first = httpx.post(url, json=body, headers=headers)
        assert (first.status_code, first.json()["code"]) == (500, "InternalError")
        assert httpx.post(url, json=body, headers=headers).json()["output"]["task_status"] == (
            "PENDING"
        )


def test_the_official_sdk_reads_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake is faithful: dashscope 1.x and 2.x parse its answers as they would the cloud's."""
    import dashscope
    from dashscope.aigc.image_generation import ImageGeneration
    from dashscope.v2 import Client

    with serve_fake(api_key=KEY, polls_to_finish=1) as fake:
        monkeypatch.setattr(dashscope, "base_http_api_url", fake.api_base)
        legacy = dashscope.ImageSynthesis.call(
            model="wan2.2-t2i-flash", prompt="sdk fox", n=2, api_key=KEY
        )
        assert legacy.status_code == 200 and legacy.output.task_status == "SUCCEEDED"
        assert len(legacy.output.results) == 2 and legacy.usage.image_count == 2
        messages = [{"role": "user", "content": [{"text": "sdk fox"}]}]
        sync = ImageGeneration.call(model="wan2.6-t2i", messages=messages, n=1, api_key=KEY)
        assert sync.status_code == 200
        assert sync.output.choices[0].message.content[0]["image"].endswith(".png")
        job = Client(base_url=fake.api_base, api_key=KEY).images.generate(
            model="wan2.1-t2i-turbo", prompt="sdk fox", n=1
        )
        assert job.succeeded and len(job.image_urls) == 1
        assert fake.submit_count("sdk fox") == 3
