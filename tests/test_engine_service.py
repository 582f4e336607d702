"""GatewayTaskService: validation, permissions, owner isolation, cancel rules, wait, URLs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from imagegate.engine.service import GatewayState, open_gateway
from imagegate.engine.upstreams import SingleUpstream
from imagegate.errors import (
    PermissionDenied,
    RateLimited,
    TaskNotFound,
    Timeout,
    UnknownModel,
    UnsupportedOperation,
    ValidationError,
)
from imagegate.types import ApiKey, GenerationRequest, Task, TaskStatus
from tests.test_engine_worker import KEY, ScriptedProvider, config, eventually, request

OTHER = ApiKey(id="ak_other")


@pytest.fixture
async def held(tmp_path: Path) -> AsyncIterator[tuple[GatewayState, ScriptedProvider]]:
    """A running gateway whose upstream keeps every task PENDING until the gate opens."""
    provider = ScriptedProvider(poll_gate=asyncio.Event())
    state = open_gateway(
        tmp_path / "data", providers=SingleUpstream(provider), engine_config=config()
    )
    await state.start()
    yield state, provider
    assert provider.poll_gate is not None
    provider.poll_gate.set()
    await state.stop()
    state.close()


@pytest.fixture
def idle(tmp_path: Path) -> GatewayState:
    """A gateway whose engine is not running: tasks stay PENDING in the store."""
    return open_gateway(tmp_path / "data")


async def test_submit_validates_with_the_catalog_first(idle: GatewayState) -> None:
    service = idle.service
    with pytest.raises(UnknownModel):
        await service.submit(request(model="no-such-model"), owner=KEY, request_id="r", front="x")
    with pytest.raises(ValidationError, match="n is 9"):
        await service.submit(request(n=9), owner=KEY, request_id="r", front="x")
    assert idle.tasks.count_unfinished(KEY.id) == 0  # nothing stored for a bad request
    idle.close()


async def test_submit_stores_before_returning(idle: GatewayState) -> None:
    task = await idle.service.submit(
        request(), owner=KEY, request_id="req-7", front="openai", warnings=["from front"]
    )
    stored = idle.tasks.get(task.id)
    assert stored is not None and stored.status is TaskStatus.PENDING
    assert stored.owner == KEY.id and stored.front == "openai" and stored.request_id == "req-7"
    assert stored.warnings == ["from front"]
    idle.close()


async def test_catalog_warnings_are_stored(idle: GatewayState) -> None:
    kling = GenerationRequest(
        model="kling-v2-1",
        prompt="a cat",
        n=1,
        reference_images=("https://example.com/ref.png",),
    )
    task = await idle.service.submit(kling, owner=KEY, request_id="r", front="chanjing")
    stored = idle.tasks.get(task.id)
    assert stored is not None and len(stored.warnings) == 1
    assert "ref" in stored.warnings[0].lower() or "reference" in stored.warnings[0].lower()
    idle.close()


async def test_model_not_allowed_for_key(idle: GatewayState) -> None:
    narrow = ApiKey(id="ak_narrow", models=("wan2.6-t2i",))
    with pytest.raises(PermissionDenied, match=r"wan2\.2-t2i-flash is not allowed"):
        await idle.service.submit(request(), owner=narrow, request_id="r", front="x")
    idle.close()


async def test_in_flight_limit_and_count(idle: GatewayState) -> None:
    small = ApiKey(id="ak_small", max_in_flight=2)
    for _ in range(2):
        await idle.service.submit(request(), owner=small, request_id="r", front="x")
    assert await idle.service.in_flight(small) == 2
    with pytest.raises(RateLimited) as caught:
        await idle.service.submit(request(), owner=small, request_id="r", front="x")
    assert caught.value.retry_after == 1
    idle.close()


async def test_other_keys_never_see_a_task(held) -> None:
    state, _ = held
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    assert await state.service.get(task.id, owner=OTHER) is None
    assert await state.service.get("not-a-task", owner=KEY) is None
    assert await state.service.list(owner=OTHER) == ([], 0)
    with pytest.raises(TaskNotFound):
        await state.service.cancel(task.id, owner=OTHER)
    with pytest.raises(TaskNotFound):
        await state.service.wait(task.id, owner=OTHER, timeout=0.1)
    mine, total = await state.service.list(owner=KEY)
    assert total == 1 and mine[0].id == task.id


async def test_cancel_pending_tells_the_upstream(held) -> None:
    state, provider = held
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    await eventually(lambda: (state.tasks.get(task.id) or task).upstream_task_id is not None)
    canceled = await state.service.cancel(task.id, owner=KEY)
    assert canceled.status is TaskStatus.CANCELED and canceled.end_time is not None
    assert provider.cancels == [canceled.upstream_task_id]
    with pytest.raises(UnsupportedOperation, match="is CANCELED; only PENDING"):
        await state.service.cancel(task.id, owner=KEY)
    assert provider.poll_gate is not None
    provider.poll_gate.set()
    await asyncio.sleep(0.1)
    final = await state.service.get(task.id, owner=KEY)
    assert final is not None and final.status is TaskStatus.CANCELED  # the worker let go


async def test_cancel_before_any_upstream_submit(idle: GatewayState) -> None:
    task = await idle.service.submit(request(), owner=KEY, request_id="r", front="x")
    canceled = await idle.service.cancel(task.id, owner=KEY)
    assert canceled.status is TaskStatus.CANCELED and canceled.upstream_task_id is None
    idle.close()


async def test_cancel_running_or_finished_is_unsupported(tmp_path: Path) -> None:
    provider = ScriptedProvider(polls_to_finish=3, poll_gate=asyncio.Event())
    state = open_gateway(tmp_path, providers=SingleUpstream(provider), engine_config=config())
    await state.start()
    try:
        task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
        assert provider.poll_gate is not None
        provider.poll_gate.set()
        await eventually(lambda: (state.tasks.get(task.id) or task).status == TaskStatus.RUNNING)
        with pytest.raises(UnsupportedOperation, match="is RUNNING"):
            await state.service.cancel(task.id, owner=KEY)
        done = await state.service.wait(task.id, owner=KEY, timeout=5)
        assert done.status is TaskStatus.SUCCEEDED
        with pytest.raises(UnsupportedOperation, match="is SUCCEEDED"):
            await state.service.cancel(task.id, owner=KEY)
    finally:
        await state.stop()
        state.close()


async def test_upstream_refusing_cancel_keeps_the_task(held) -> None:
    state, provider = held
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    await eventually(lambda: (state.tasks.get(task.id) or task).upstream_task_id is not None)
    stored = state.tasks.get(task.id)
    assert stored is not None and stored.upstream_task_id is not None
    provider.jobs[stored.upstream_task_id].polls = 1  # upstream started it meanwhile
    with pytest.raises(UnsupportedOperation, match="can no longer be canceled") as caught:
        await state.service.cancel(task.id, owner=KEY)
    assert caught.value.vendor_code == "UnsupportedOperation"
    still = await state.service.get(task.id, owner=KEY)
    assert still is not None and still.status is TaskStatus.PENDING


async def test_upstream_without_cancel_cancels_locally_with_a_warning(held) -> None:
    state, provider = held
    provider.can_cancel = False
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    await eventually(lambda: (state.tasks.get(task.id) or task).upstream_task_id is not None)
    canceled = await state.service.cancel(task.id, owner=KEY)
    assert canceled.status is TaskStatus.CANCELED
    assert canceled.warnings == [
        f"scripted cannot cancel tasks; its task {canceled.upstream_task_id} may still run"
    ]


async def test_wait_times_out_without_busy_polling(held) -> None:
    state, _ = held
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    state.service.recheck_interval = 0.2
    reads = 0
    original = state.tasks.get

    def counting_get(*args: object, **kwargs: object) -> Task | None:
        nonlocal reads
        reads += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    state.tasks.get = counting_get  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"did not finish within 0\.5 s"):
        await state.service.wait(task.id, owner=KEY, timeout=0.5)
    assert 0.45 < time.monotonic() - started < 2
    assert reads <= 6  # a re-read every 0.2 s (plus task events), not a tight loop


async def test_wait_wakes_on_the_task_event(held) -> None:
    state, provider = held
    state.service.recheck_interval = 30.0  # only the event can end this wait in time
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    assert provider.poll_gate is not None
    provider.poll_gate.set()
    started = time.monotonic()
    done = await state.service.wait(task.id, owner=KEY, timeout=10)
    assert done.status is TaskStatus.SUCCEEDED and time.monotonic() - started < 3


async def test_list_filters(held) -> None:
    state, provider = held
    first = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    second = await state.service.submit(
        GenerationRequest(model="wanx2.1-t2i-turbo", prompt="a boat", n=1),
        owner=KEY,
        request_id="r",
        front="x",
    )
    assert second.model == "wan2.1-t2i-turbo"  # the alias resolves to the canonical name
    by_model, total = await state.service.list(owner=KEY, model="wanx2.1-t2i-turbo")
    assert total == 1 and by_model[0].id == second.id
    by_ids, _ = await state.service.list(owner=KEY, ids=[first.id])
    assert [t.id for t in by_ids] == [first.id]
    assert provider.poll_gate is not None
    provider.poll_gate.set()
    await state.service.wait(first.id, owner=KEY, timeout=5)
    done, total_done = await state.service.list(owner=KEY, status=TaskStatus.SUCCEEDED)
    assert total_done >= 1 and all(t.status is TaskStatus.SUCCEEDED for t in done)
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await state.service.list(owner=KEY, start=future) == ([], 0)


async def test_image_url_is_signed_and_points_at_the_blob(held) -> None:
    state, provider = held
    assert provider.poll_gate is not None
    provider.poll_gate.set()
    task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    done = await state.service.wait(task.id, owner=KEY, timeout=5)
    url = state.service.image_url(done, done.images[0], "http://127.0.0.1:8000/")
    split = urlsplit(url)
    query = parse_qs(split.query)
    assert url.startswith("http://127.0.0.1:8000/files/")
    assert state.signer.verify(split.path, query["expires"][0], query["signature"][0])
    blob = split.path.removeprefix("/files/")
    path = state.blobs.resolve(blob)
    assert path is not None and path == done.images[0].path
    assert not state.signer.verify(split.path + "x", query["expires"][0], query["signature"][0])


async def test_expired_tasks_read_as_unknown_and_the_sweep_removes_them(held) -> None:
    state, provider = held
    assert provider.poll_gate is not None
    provider.poll_gate.set()
    old = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
    new = await state.service.submit(request(n=2), owner=KEY, request_id="r", front="x")
    old_done = await state.service.wait(old.id, owner=KEY, timeout=5)
    new_done = await state.service.wait(new.id, owner=KEY, timeout=5)
    # age the first task past the 7-day retention, and its file past the grace period
    from imagegate.storage import db

    with db.write(state.database) as conn:
        conn.execute(
            db.tasks.update()
            .where(db.tasks.c.id == old.id)
            .values(submit_time=datetime.now(UTC) - timedelta(days=8))
        )
    old_file = old_done.images[0].path
    assert old_file is not None and old_file not in [i.path for i in new_done.images]
    past = time.time() - 7200
    os.utime(old_file, (past, past))
    assert await state.service.get(old.id, owner=KEY) is None  # expired before any sweep
    assert old.id not in [t.id for t in (await state.service.list(owner=KEY))[0]]

    result = await asyncio.to_thread(state.retention.sweep)
    assert result.tasks == 1 and result.blobs == 1
    assert not old_file.exists()
    assert all(image.path.exists() for image in new_done.images)  # type: ignore[union-attr]
    assert state.tasks.get(old.id) is None
    assert await state.service.get(new.id, owner=KEY) is not None


async def test_cancel_while_the_submit_is_in_flight_cancels_upstream_too(tmp_path: Path) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(submit_gate=gate)
    state = open_gateway(tmp_path, providers=SingleUpstream(provider), engine_config=config())
    await state.start()
    try:
        task = await state.service.submit(request(), owner=KEY, request_id="r", front="x")
        await eventually(lambda: provider.submit_calls == 1)
        canceled = await state.service.cancel(task.id, owner=KEY)
        assert canceled.status is TaskStatus.CANCELED and canceled.upstream_task_id is None
        gate.set()  # the upstream accepts the task after all
        await eventually(lambda: len(provider.cancels) == 1)
        final = state.tasks.get(task.id)
        assert final is not None and final.status is TaskStatus.CANCELED
        assert final.upstream_task_id == provider.cancels[0]  # recorded: never submitted again
        assert provider.submits == 1
    finally:
        await state.stop()
        state.close()
