"""The SDK against the sandbox and against a wire-level DashScope fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import imagegate
from imagegate import AsyncClient, Client
from imagegate.errors import (
    AuthError,
    InvalidRequest,
    NotConfigured,
    TaskFailed,
    Timeout,
    UnsupportedOperation,
    ValidationError,
)
from imagegate.providers.base import PollPolicy
from imagegate.providers.sandbox import SandboxProvider
from imagegate.types import TaskStatus
from imagegate.waiting import Progress
from tests.fakes.dashscope_vendor import FakeDashScope
from tests.fakes.server import serve

FAST = PollPolicy(initial=0.01, factor=2.0, every=3, maximum=0.05, timeout=10.0)


def _sandbox(tmp_path: Path, **options: object) -> AsyncClient:
    return AsyncClient(
        sandbox=True,
        out_dir=tmp_path / "out",
        poll_policy=FAST,
        sandbox_options={"state_dir": tmp_path / "state", **options},
    )


def test_the_package_exports_the_sdk() -> None:
    assert imagegate.Client is Client and imagegate.AsyncClient is AsyncClient
    assert imagegate.__version__
    assert issubclass(imagegate.ValidationError, imagegate.ImagegateError)


async def test_generate_saves_every_image(tmp_path: Path) -> None:
    events: list[Progress] = []
    async with _sandbox(tmp_path) as client:
        result = await client.generate(
            "a flower shop", model="wan2.6-t2i", size="16:9", n=2, seed=9, on_progress=events.append
        )
    task = result.task
    assert task.id.startswith("sandbox:") and task.upstream_task_id
    assert task.status is TaskStatus.SUCCEEDED and task.provider == "sandbox"
    assert task.usage is not None and task.usage.image_count == 2
    assert [p.name for p in result.paths] == [
        f"sandbox-{task.upstream_task_id}-0.png",
        f"sandbox-{task.upstream_task_id}-1.png",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in result.paths
    )
    for image, seed in zip(result.images, (9, 10), strict=True):
        assert (image.width, image.height, image.seed) == (1696, 960, seed)
        assert image.path is not None
        with Image.open(image.path) as img:
            assert img.size == (1696, 960)
    assert events[0].stage == "submitted" and events[-1].stage == "done"
    assert all(e.task_id == task.id for e in events)


async def test_invalid_request_sends_nothing(tmp_path: Path) -> None:
    async with _sandbox(tmp_path) as client:
        with pytest.raises(ValidationError) as caught:
            await client.generate("a flower shop", model="wan2.6-t2i", size="512*512")
        assert caught.value.field == "size"
        assert "1280*1280 to 1440*1440" in str(caught.value)
        with pytest.raises(ValidationError, match="n is 5"):
            await client.submit("x", model="wan2.6-t2i", n=5)
        with pytest.raises(ValidationError, match="sync"):
            await client.submit("x", model="wan2.5-t2i-preview", sync=True)
    assert SandboxProvider(state_dir=tmp_path / "state").submission_count() == 0


async def test_failed_task_raises_with_the_vendor_code(tmp_path: Path) -> None:
    async with _sandbox(tmp_path, failure_rate=1.0) as client:
        with pytest.raises(TaskFailed) as caught:
            await client.generate("x", model="wan2.6-t2i", n=1)
    assert caught.value.vendor_code == "SandboxInjectedFailure"
    assert "injected failure" in str(caught.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


async def test_partial_batch_returns_the_good_images(tmp_path: Path) -> None:
    async with _sandbox(tmp_path, image_failure_rate=0.5) as client:
        for _ in range(30):
            try:
                result = await client.generate("p", model="wan2.6-t2i", n=4)
            except TaskFailed:  # every image failed: try another task
                continue
            if len(result.paths) < 4:
                break
        else:
            pytest.fail("no partially failed batch in 30 tasks")
    failed = [image for image in result.images if not image.ok]
    assert failed and len(result.paths) == 4 - len(failed)
    assert all(path.exists() for path in result.paths)
    assert sum(w.startswith("image ") and "failed" in w for w in result.task.warnings) == len(
        failed
    )


async def test_timeout_then_resume_with_wait(tmp_path: Path) -> None:
    async with _sandbox(tmp_path, latency=0.6) as client:
        with pytest.raises(Timeout) as caught:
            await client.generate("slow", model="wan2.6-t2i", n=1, timeout=0.1)
        assert caught.value.exit_code == 5
        task_id = str(caught.value).split("wait('")[1].split("')")[0]
        done = await client.wait(task_id, timeout=5)
        assert done.status is TaskStatus.SUCCEEDED
        result = await client.download(done)
        assert len(result.paths) == 1


async def test_submit_get_wait_cancel_statelessly(tmp_path: Path) -> None:
    async with _sandbox(tmp_path, latency=0.5) as client:
        task = await client.submit("kept", model="kling-v2-1", aspect_ratio="9:16", n=2)
        assert task.status is TaskStatus.PENDING and task.id.startswith("sandbox:")
        other = await client.submit("canceled", model="wan2.6-t2i", n=1)
        canceled = await client.cancel(other.id)
        assert canceled.status is TaskStatus.CANCELED
    # a brand-new client (another process, in effect) knows the tasks by id alone
    async with _sandbox(tmp_path) as fresh:
        assert (await fresh.get(other.id)).status is TaskStatus.CANCELED
        with pytest.raises(TaskFailed, match="canceled"):
            await fresh.download(other.id)
        statuses: list[TaskStatus] = []
        done = await fresh.wait(task.id, on_progress=lambda p: statuses.append(p.status))
        assert done.status is TaskStatus.SUCCEEDED
        assert TaskStatus.SUCCEEDED in statuses
        with pytest.raises(UnsupportedOperation, match="only PENDING"):
            await fresh.cancel(task.id)
        result = await fresh.download(task.id, tmp_path / "later")
        assert [Image.open(p).size for p in result.paths] == [(720, 1280), (720, 1280)]
        with pytest.raises(InvalidRequest, match=r"task id .* must look like"):
            await fresh.get("no-provider-prefix")
    assert SandboxProvider(state_dir=tmp_path / "state").submission_count() == 2


def test_sync_client_outside_a_loop(tmp_path: Path) -> None:
    with Client(sandbox=True, out_dir=tmp_path, poll_policy=FAST) as client:
        result = client.generate("sync", model="wan2.2-t2i-flash", size="1:1", n=1, seed=1)
        assert [Image.open(p).size for p in result.paths] == [(1024, 1024)]
        task = client.submit("again", model="wan2.2-t2i-flash", n=1)
        assert client.get(task.id).status is TaskStatus.SUCCEEDED
        assert client.wait(task.id).status is TaskStatus.SUCCEEDED


async def test_sync_client_inside_a_running_loop(tmp_path: Path) -> None:
    asyncio.get_running_loop()  # we are inside one
    with Client(sandbox=True, out_dir=tmp_path, poll_policy=FAST) as client:
        result = client.generate("inside", model="wan2.6-t2i", n=1)
    assert len(result.paths) == 1


def test_not_configured_without_credentials(tmp_path: Path) -> None:
    with Client(out_dir=tmp_path) as client, pytest.raises(NotConfigured, match="DASHSCOPE"):
        client.generate("x", model="wan2.6-t2i")


def test_dry_run_never_shows_the_key() -> None:
    with Client(api_key="sk-very-secret") as client:
        dry = client.dry_run("x", model="wan2.6-t2i", n=1)
    assert dry.call is not None
    text = str(dry.to_dict())
    assert "sk-very-secret" not in text
    assert dry.call.headers["Authorization"] == "Bearer $DASHSCOPE_API_KEY"


# -- against a DashScope fake on loopback --------------------------------------------------


@pytest.fixture
def dashscope() -> Iterator[tuple[FakeDashScope, str]]:
    fake = FakeDashScope("sk-fake", polls_to_finish=2)
    with serve(fake.app) as server:
        yield fake, f"{server.base_url}/api/v1"


def _vendor(base: str, tmp_path: Path, key: str = "sk-fake") -> AsyncClient:
    return AsyncClient(api_key=key, base_url=base, out_dir=tmp_path, poll_policy=FAST)


async def test_generate_against_dashscope(
    dashscope: tuple[FakeDashScope, str], tmp_path: Path
) -> None:
    fake, base = dashscope
    async with _vendor(base, tmp_path) as client:
        result = await client.generate("a flower shop", model="wan2.6-t2i", size="16:9", n=2)
    assert result.task.id.startswith("dashscope:")
    assert result.task.upstream_task_id in fake.tasks
    assert [Image.open(p).size for p in result.paths] == [(1696, 960), (1696, 960)]
    assert fake.submit_count("a flower shop") == 1
    body = fake.submits[0]["body"]
    assert body["parameters"]["size"] == "1696*960" and body["parameters"]["n"] == 2


async def test_dashscope_submit_get_wait_cancel(
    dashscope: tuple[FakeDashScope, str], tmp_path: Path
) -> None:
    fake, base = dashscope
    async with _vendor(base, tmp_path) as client:
        task = await client.submit("legacy", model="wan2.2-t2i-plus", n=1)
        assert task.status is TaskStatus.PENDING
        canceled = await client.cancel(task.id)
        assert canceled.status is TaskStatus.CANCELED
        second = await client.submit("legacy two", model="wan2.2-t2i-plus", n=1)
    async with _vendor(base, tmp_path) as fresh:
        done = await fresh.wait(second.id)
        assert done.status is TaskStatus.SUCCEEDED
        with pytest.raises(UnsupportedOperation):
            await fresh.cancel(second.id)
        result = await fresh.download(done)
        assert [Image.open(p).size for p in result.paths] == [(1024, 1024)]
    assert fake.submit_count() == 2


async def test_dashscope_failure_partial_and_auth(
    dashscope: tuple[FakeDashScope, str], tmp_path: Path
) -> None:
    fake, base = dashscope
    async with _vendor(base, tmp_path) as client:
        fake.plan_next("fail", "DataInspectionFailed", "Output data may be inappropriate.")
        with pytest.raises(TaskFailed) as caught:
            await client.generate("bad", model="wan2.2-t2i-flash", n=1)
        assert caught.value.vendor_code == "DataInspectionFailed"
        fake.plan_next("partial")
        result = await client.generate("partly", model="wan2.2-t2i-flash", n=3)
        assert len(result.paths) == 2
        assert any(not image.ok for image in result.images)
    async with _vendor(base, tmp_path, key="sk-wrong") as wrong:
        with pytest.raises(AuthError):
            await wrong.generate("x", model="wan2.6-t2i", n=1)
