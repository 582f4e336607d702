"""The task engine against a scripted upstream (a Python-level test double) and the sandbox.

``ScriptedProvider`` counts every submit and poll and lets a test hold polls or submits on an
``asyncio.Event``, fail the first submits, fail images, or refuse cancels. Crashes are
simulated with ``engine.stop(release=False)``: its coroutines die, its leases stay behind.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegate.engine.service import GatewayState, open_gateway
from imagegate.engine.upstreams import SingleUpstream
from imagegate.engine.worker import RESUBMIT_WARNING, EngineConfig
from imagegate.errors import (
    ImagegateError,
    RateLimited,
    SubmitOutcomeUnknown,
    UnsupportedOperation,
    UpstreamError,
    ValidationError,
)
from imagegate.providers.base import PollPolicy, Provider, Submission
from imagegate.providers.http import RetryPolicy, download_to
from imagegate.types import (
    ApiKey,
    GenerationRequest,
    ImageResult,
    Task,
    TaskError,
    TaskStatus,
    UpstreamState,
    Usage,
)

KEY = ApiKey(id="ak_test", max_in_flight=50)
FAST_POLL = PollPolicy(initial=0.01, factor=1.0, every=1, maximum=0.01, timeout=10.0)


def png(seed: int, size: int = 16) -> bytes:
    out = io.BytesIO()
    color = (seed & 255, (seed >> 8) & 255, (seed >> 16) & 255)
    Image.new("RGB", (size, size), color).save(out, "PNG")
    return out.getvalue()


@dataclass
class Job:
    n: int
    polls: int = 0
    canceled: bool = False


@dataclass
class ScriptedProvider(Provider):
    """An upstream whose behaviour each test sets; it counts what it was asked."""

    name: str = "scripted"
    polls_to_finish: int = 2
    submit_errors: list[ImagegateError] = field(default_factory=list)
    failed_images: tuple[int, ...] = ()
    task_error: TaskError | None = None
    can_cancel: bool = True
    poll_gate: asyncio.Event | None = None
    submit_gate: asyncio.Event | None = None
    on_poll: Callable[[str], None] | None = None
    submits: int = 0
    submit_calls: int = 0
    cancels: list[str] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.poll_policy = FAST_POLL

    async def submit(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> UpstreamState:
        self.submit_calls += 1
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        if self.submit_gate is not None:
            await self.submit_gate.wait()
        self.submits += 1
        upstream_id = str(uuid.uuid4())
        self.jobs[upstream_id] = Job(n=request.n or 1)
        return UpstreamState(task_id=upstream_id, status=TaskStatus.PENDING)

    async def get(self, task_id: str) -> UpstreamState:
        if self.on_poll is not None:
            self.on_poll(task_id)
        if self.poll_gate is not None:
            await self.poll_gate.wait()
        job = self.jobs.get(task_id)
        if job is None:
            return UpstreamState(task_id, TaskStatus.UNKNOWN)
        if job.canceled:
            return UpstreamState(task_id, TaskStatus.CANCELED)
        job.polls += 1
        if job.polls < self.polls_to_finish:
            return UpstreamState(task_id, TaskStatus.RUNNING)
        if self.task_error is not None:
            return UpstreamState(task_id, TaskStatus.FAILED, error=self.task_error)
        images = tuple(
            ImageResult(error_code="DataInspectionFailed", error_message=f"image {i} blocked")
            if i in self.failed_images
            else ImageResult(data=png(int(task_id[:6], 16) + i), width=16, height=16, seed=i)
            for i in range(job.n)
        )
        return UpstreamState(
            task_id, TaskStatus.SUCCEEDED, images=images, usage=Usage(job.n, "16*16")
        )

    async def cancel(self, task_id: str) -> UpstreamState:
        if not self.can_cancel:
            return await super().cancel(task_id)
        job = self.jobs[task_id]
        if job.polls > 0:
            raise UnsupportedOperation(
                "task is RUNNING; only PENDING tasks can be canceled",
                vendor_code="UnsupportedOperation",
            )
        job.canceled = True
        self.cancels.append(task_id)
        return UpstreamState(task_id, TaskStatus.CANCELED)

    async def download(self, image: ImageResult, dest: Path) -> ImageResult:
        async with httpx.AsyncClient() as client:
            return await download_to(client, image, dest)


def request(n: int = 1, model: str = "wan2.2-t2i-flash") -> GenerationRequest:
    return GenerationRequest(model=model, prompt="a lighthouse at dawn", n=n)


def config(**changes: object) -> EngineConfig:
    base = EngineConfig(
        lease_seconds=0.6,
        idle_interval=0.05,
        submit_retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02),
        download_delay=0.01,
        poll_policy=None,
        stop_grace=2.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def gateway(tmp_path: Path, provider: Provider, **changes: object) -> GatewayState:
    return open_gateway(
        tmp_path / "data", providers=SingleUpstream(provider), engine_config=config(**changes)
    )


@pytest.fixture
async def scripted(tmp_path: Path) -> AsyncIterator[tuple[GatewayState, ScriptedProvider]]:
    provider = ScriptedProvider()
    state = gateway(tmp_path, provider)
    await state.start()
    yield state, provider
    await state.stop()
    state.close()


async def crash(state: GatewayState) -> None:
    """What kill -9 leaves: the coroutines are gone, the leases stay in the database."""
    assert state.engine is not None
    await state.engine.stop(release=False)
    state.close()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_task_runs_to_success_and_images_are_stored(scripted) -> None:
    state, provider = scripted
    task = await state.service.submit(request(n=2), owner=KEY, request_id="r1", front="sdk")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    assert done.status is TaskStatus.SUCCEEDED
    assert provider.submits == 1 and done.upstream_task_id in provider.jobs
    assert done.provider == "scripted"
    assert [image.path.read_bytes()[:4] for image in done.images] == [b"\x89PNG"] * 2
    assert done.usage == Usage(2, "16*16")
    assert done.scheduled_time is not None and done.end_time is not None


async def test_upstream_id_is_stored_before_the_first_poll(tmp_path: Path) -> None:
    seen: list[str | None] = []
    provider = ScriptedProvider()
    state = gateway(tmp_path, provider)
    task_ids: list[str] = []

    def check_store(upstream_id: str) -> None:
        stored = state.tasks.get(task_ids[0])
        seen.append(stored.upstream_task_id if stored else None)
        assert stored is not None and stored.upstream_task_id == upstream_id

    provider.on_poll = check_store
    await state.start()
    try:
        task = await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
        task_ids.append(task.id)
        done = await state.service.wait(task.id, owner=KEY, timeout=5)
    finally:
        await state.stop()
        state.close()
    assert done.status is TaskStatus.SUCCEEDED
    assert seen and all(value == done.upstream_task_id for value in seen)


async def test_crash_after_submit_resumes_by_polling_never_resubmits(tmp_path: Path) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(poll_gate=gate)
    first = gateway(tmp_path, provider)
    await first.start()
    task = await first.service.submit(request(), owner=KEY, request_id="r", front="sdk")
    await eventually(lambda: (first.tasks.get(task.id) or task).upstream_task_id is not None)
    upstream_id = first.tasks.get(task.id).upstream_task_id
    await crash(first)

    gate.set()
    second = gateway(tmp_path, provider)  # "restarted process", new worker id
    await second.start()
    try:
        done = await second.service.wait(task.id, owner=KEY, timeout=5)
    finally:
        await second.stop()
        second.close()
    assert done.status is TaskStatus.SUCCEEDED
    assert provider.submits == 1 and provider.submit_calls == 1
    assert done.upstream_task_id == upstream_id
    assert done.warnings == []


async def test_restart_resumes_every_task_in_flight(tmp_path: Path) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(poll_gate=gate)
    first = gateway(tmp_path, provider)
    await first.start()
    tasks = [
        await first.service.submit(request(), owner=KEY, request_id=f"r{i}", front="sdk")
        for i in range(5)
    ]
    await eventually(lambda: provider.submits == 5)
    await eventually(
        lambda: all(first.tasks.get(t.id).upstream_task_id for t in tasks)  # type: ignore[union-attr]
    )
    queued = await first.service.submit(request(), owner=KEY, request_id="late", front="sdk")
    await crash(first)

    gate.set()
    second = gateway(tmp_path, provider)
    await second.start()
    try:
        results = [await second.service.wait(t.id, owner=KEY, timeout=5) for t in [*tasks, queued]]
    finally:
        await second.stop()
        second.close()
    assert [r.status for r in results] == [TaskStatus.SUCCEEDED] * 6
    assert provider.submits == 6  # five resumed by polling, the queued one submitted once
    assert len({r.upstream_task_id for r in results}) == 6


async def test_graceful_stop_hands_tasks_over_at_once(tmp_path: Path) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(poll_gate=gate)
    first = gateway(tmp_path, provider, lease_seconds=60.0)  # a crash would wait a minute
    await first.start()
    task = await first.service.submit(request(), owner=KEY, request_id="r", front="sdk")
    await eventually(lambda: provider.submits == 1)
    await first.stop()
    first.close()
    gate.set()
    second = gateway(tmp_path, provider, lease_seconds=60.0)
    await second.start()
    try:
        done = await second.service.wait(task.id, owner=KEY, timeout=3)
    finally:
        await second.stop()
        second.close()
    assert done.status is TaskStatus.SUCCEEDED and provider.submits == 1


async def test_crash_during_submit_resubmits_with_a_visible_warning(tmp_path: Path) -> None:
    never = asyncio.Event()
    provider = ScriptedProvider(submit_gate=never)
    first = gateway(tmp_path, provider)
    await first.start()
    task = await first.service.submit(request(), owner=KEY, request_id="r", front="sdk")
    await eventually(lambda: provider.submit_calls == 1)
    await crash(first)

    provider.submit_gate = None
    second = gateway(tmp_path, provider)
    await second.start()
    try:
        done = await second.service.wait(task.id, owner=KEY, timeout=5)
    finally:
        await second.stop()
        second.close()
    assert done.status is TaskStatus.SUCCEEDED
    assert done.warnings == [RESUBMIT_WARNING.format(provider="scripted")]
    assert provider.submit_calls == 2


async def test_rate_limits_and_5xx_are_retried_then_succeed(scripted) -> None:
    state, provider = scripted
    provider.submit_errors = [
        RateLimited("Throttling.RateQuota", vendor_code="Throttling.RateQuota"),
        UpstreamError("HTTP 503 from upstream"),
    ]
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    assert done.status is TaskStatus.SUCCEEDED
    assert provider.submit_calls == 3 and provider.submits == 1
    record = state.tasks.get_record(task.id)
    assert record is not None and record.attempts == 3


async def test_retries_are_bounded(scripted) -> None:
    state, provider = scripted
    provider.submit_errors = [UpstreamError(f"HTTP 502 number {i}") for i in range(10)]
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    assert done.status is TaskStatus.FAILED
    assert provider.submit_calls == 4  # RetryPolicy.attempts
    assert done.error is not None and "HTTP 502 number 3" in done.error.message


async def test_a_submit_with_an_unknown_outcome_is_never_resent(scripted) -> None:
    """The answer to a sent submit was lost: the vendor may have made (and billed) the task."""
    state, provider = scripted
    provider.submit_errors = [SubmitOutcomeUnknown("read timeout after the request was sent")]
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and "read timeout" in done.error.message
    assert provider.submit_calls == 1


async def test_parameter_error_is_final(scripted) -> None:
    state, provider = scripted
    provider.submit_errors = [
        ValidationError("size 5000*5000 is out of range", vendor_code="InvalidParameter")
    ]
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    assert done.status is TaskStatus.FAILED
    assert done.error == TaskError("InvalidParameter", "size 5000*5000 is out of range")
    assert provider.submit_calls == 1


async def test_vendor_failure_keeps_its_code_and_message(scripted) -> None:
    state, provider = scripted
    provider.task_error = TaskError("InternalError.Algo", "algorithm failed")
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    assert done.status is TaskStatus.FAILED
    assert done.error == TaskError("InternalError.Algo", "algorithm failed")


async def test_partial_failure_keeps_each_image(scripted) -> None:
    state, provider = scripted
    provider.failed_images = (1,)
    task = await state.service.submit(request(n=3), owner=KEY, request_id="r", front="sdk")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    assert done.status is TaskStatus.SUCCEEDED
    assert [image.ok for image in done.images] == [True, False, True]
    assert done.images[1].error_code == "DataInspectionFailed"
    assert done.images[1].path is None
    assert all(done.images[i].path.is_file() for i in (0, 2))


async def test_every_image_failing_fails_the_task(scripted) -> None:
    state, provider = scripted
    provider.failed_images = (0, 1)
    task = await state.service.submit(request(n=2), owner=KEY, request_id="r", front="sdk")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.code == "DataInspectionFailed"


async def test_poll_timeout_fails_the_task(tmp_path: Path) -> None:
    provider = ScriptedProvider(polls_to_finish=10_000)
    short = PollPolicy(initial=0.01, factor=1.0, every=1, maximum=0.01, timeout=0.2)
    state = gateway(tmp_path, provider, poll_policy=short)
    await state.start()
    try:
        task = await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
        done = await state.service.wait(task.id, owner=KEY, timeout=5)
    finally:
        await state.stop()
        state.close()
    assert done.status is TaskStatus.FAILED
    assert done.error is not None and done.error.code == "Timeout"
    assert "did not finish within 0.2 s" in done.error.message


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(poll_gate=gate)
    state = gateway(tmp_path, provider, max_concurrent=2)
    await state.start()
    try:
        tasks = [
            await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
            for _ in range(4)
        ]
        await eventually(lambda: provider.submits == 2)
        await asyncio.sleep(0.2)
        assert provider.submits == 2  # two slots, two tasks in progress
        gate.set()
        results = [await state.service.wait(t.id, owner=KEY, timeout=5) for t in tasks]
    finally:
        await state.stop()
        state.close()
    assert all(r.status is TaskStatus.SUCCEEDED for r in results)


async def test_submit_wakes_the_engine_without_waiting_for_a_tick(tmp_path: Path) -> None:
    provider = ScriptedProvider(polls_to_finish=1)
    state = gateway(tmp_path, provider, idle_interval=30.0)
    await state.start()
    try:
        await asyncio.sleep(0.05)  # the dispatcher is idle now, for 30 s
        task = await state.service.submit(request(), owner=KEY, request_id="r", front="sdk")
        done = await state.service.wait(task.id, owner=KEY, timeout=2)
    finally:
        await state.stop()
        state.close()
    assert done.status is TaskStatus.SUCCEEDED


async def test_sandbox_provider_end_to_end(tmp_path: Path) -> None:
    from imagegate.providers.sandbox import SandboxProvider

    provider = SandboxProvider(latency=0.1, state_dir=tmp_path / "sandbox")
    state = open_gateway(
        tmp_path / "data",
        providers=SingleUpstream(provider),
        engine_config=config(poll_policy=FAST_POLL),
    )
    await state.start()
    try:
        task = await state.service.submit(
            GenerationRequest(model="wan2.2-t2i-flash", prompt="a blue cube", n=2, seed=7),
            owner=KEY,
            request_id="r",
            front="dashscope-synthesis",
        )
        done: Task = await state.service.wait(task.id, owner=KEY, timeout=10)
    finally:
        await state.stop()
        state.close()
    assert done.status is TaskStatus.SUCCEEDED, done.error
    assert done.provider == "sandbox" and provider.submission_count() == 1
    assert len(done.images) == 2
    for image in done.images:
        with Image.open(image.path) as picture:
            assert picture.size == (1024, 1024)  # wan2.2's default size
