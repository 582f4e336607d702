"""The sandbox provider: real PNGs, exact sizes, deterministic, with states, failures, resume."""

from __future__ import annotations

import io
import time
from pathlib import Path

import anyio
import pytest
from PIL import Image

from imagegate.catalog import build_request
from imagegate.errors import TaskNotFound, UnsupportedOperation
from imagegate.providers.base import Submission
from imagegate.providers.sandbox import (
    FAILURE_CODE,
    IMAGE_FAILURE_CODE,
    SandboxProvider,
)
from imagegate.providers.sandbox_render import MARK, render, render_png
from imagegate.types import TaskStatus


def _png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_same_inputs_same_bytes_and_different_inputs_differ() -> None:
    first = render_png("a flower shop", 42, 640, 480)
    assert first == render_png("a flower shop", 42, 640, 480)
    assert first != render_png("a flower shop", 43, 640, 480)
    assert first != render_png("a bakery", 42, 640, 480)
    # a different prompt changes the picture itself, not only the metadata
    a = render("a flower shop", 42, 64, 64).tobytes()
    assert a != render("a bakery", 42, 64, 64).tobytes()
    assert a != render("a flower shop", 1, 64, 64).tobytes()


@pytest.mark.parametrize(
    ("width", "height"), [(1280, 1280), (1696, 960), (960, 1696), (512, 1440), (37, 901)]
)
def test_exact_dimensions(width: int, height: int) -> None:
    img = _png(render_png("sizes", 7, width, height))
    assert img.size == (width, height)
    assert img.format == "PNG"


def test_mark_is_visible_and_in_the_png_text() -> None:
    width, height = 800, 600
    img = _png(render_png("mark", 3, width, height))
    assert img.text["sandbox"] == "true"
    assert "sandbox" in img.text["Software"]
    assert img.text["seed"] == "3"
    # the label is white text on a black box in the bottom-left corner
    size = min(width, height) // 28
    pad = size // 3
    box = img.convert("RGB").crop((0, height - 3 * size, width // 3, height))
    colours = {colour for _count, colour in box.getcolors(maxcolors=1 << 16) or []}
    assert (0, 0, 0) in colours
    assert any(min(colour) >= 240 for colour in colours), "no white text in the corner"
    assert img.convert("RGB").getpixel((pad + 1, height - pad - 1)) == (0, 0, 0)
    assert MARK == "SANDBOX"


def test_4096_is_fast() -> None:
    start = time.perf_counter()
    data = render_png("big", 1, 4096, 4096)
    elapsed = time.perf_counter() - start
    assert _png(data).size == (4096, 4096)
    assert elapsed < 4.0, f"4096*4096 took {elapsed:.2f} s"


async def test_submit_and_download_through_the_catalog(tmp_path: Path) -> None:
    sandbox = SandboxProvider()
    request = build_request("wan2.6-t2i", "a flower shop", size="16:9", n=2, seed=100)
    state = await sandbox.submit(request)
    assert state.status is TaskStatus.SUCCEEDED  # no latency: done at once
    assert [image.seed for image in state.images] == [100, 101]
    assert all(image.metadata["sandbox"] is True for image in state.images)
    assert state.usage is not None and state.usage.image_count == 2
    assert state.usage.size == "1696*960"
    saved = [
        await sandbox.download(image, tmp_path / f"{i}.png") for i, image in enumerate(state.images)
    ]
    for image in saved:
        assert image.path is not None
        with Image.open(image.path) as img:
            assert img.size == (1696, 960)
            assert img.text["sandbox"] == "true"
    # the same (prompt, seed, size) renders the same bytes in a new task
    again = await sandbox.submit(request)
    copy = await sandbox.download(again.images[0], tmp_path / "again.png")
    assert copy.path is not None and saved[0].path is not None
    assert copy.path.read_bytes() == saved[0].path.read_bytes()
    # saved as readable as any file the user writes (the umask decides), not mkstemp's 0600
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    assert copy.path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


async def test_defaults_from_the_catalog_and_a_seed_is_picked() -> None:
    sandbox = SandboxProvider()
    state = await sandbox.submit(build_request("wan2.6-t2i", "defaults"))
    assert len(state.images) == 4  # DashScope's n default
    assert {(image.width, image.height) for image in state.images} == {(1280, 1280)}
    seeds = [image.seed for image in state.images]
    assert all(isinstance(seed, int) for seed in seeds)
    assert seeds == [seeds[0] + i for i in range(4)]
    chanjing = await sandbox.submit(build_request("kling-v2-1", "c", aspect_ratio="9:16"))
    assert [(i.width, i.height) for i in chanjing.images] == [(720, 1280)]


async def test_states_follow_latency() -> None:
    sandbox = SandboxProvider(latency=1.0)
    state = await sandbox.submit(build_request("wan2.6-t2i", "slow", n=1))
    assert state.status is TaskStatus.PENDING
    assert state.images == ()
    await anyio.sleep(0.45)
    assert (await sandbox.get(state.task_id)).status is TaskStatus.RUNNING
    await anyio.sleep(0.65)
    done = await sandbox.get(state.task_id)
    assert done.status is TaskStatus.SUCCEEDED
    assert len(done.images) == 1


async def test_sync_submission_waits_for_the_result() -> None:
    sandbox = SandboxProvider(latency=0.2)
    start = time.monotonic()
    state = await sandbox.submit(build_request("wan2.6-t2i", "s", n=1), Submission(sync=True))
    assert time.monotonic() - start >= 0.2
    assert state.status is TaskStatus.SUCCEEDED


async def test_failure_rate_is_deterministic_per_task(tmp_path: Path) -> None:
    always = SandboxProvider(failure_rate=1.0)
    failed = await always.submit(build_request("wan2.6-t2i", "f", n=1))
    assert failed.status is TaskStatus.FAILED
    assert failed.error is not None and failed.error.code == FAILURE_CODE
    assert "injected failure" in failed.error.message

    half = SandboxProvider(failure_rate=0.5, state_dir=tmp_path)
    states = [await half.submit(build_request("wan2.6-t2i", "f", n=1)) for _ in range(40)]
    failures = [s.task_id for s in states if s.status is TaskStatus.FAILED]
    assert 5 <= len(failures) <= 35
    # another process over the same state sees the same outcome for each task id
    other = SandboxProvider(failure_rate=0.0, state_dir=tmp_path)
    for state in states:
        assert (await other.get(state.task_id)).status is state.status


async def test_partial_failure_keeps_the_good_images() -> None:
    sandbox = SandboxProvider(image_failure_rate=0.5)
    for _ in range(30):
        state = await sandbox.submit(build_request("wan2.6-t2i", "p", n=4))
        good = [image for image in state.images if image.ok]
        if state.status is TaskStatus.SUCCEEDED and len(good) < 4:
            break
    else:
        pytest.fail("no partially failed batch in 30 tasks")
    bad = [image for image in state.images if not image.ok]
    assert bad and all(image.error_code == IMAGE_FAILURE_CODE for image in bad)
    assert state.usage is not None and state.usage.image_count == len(good)


async def test_state_dir_resume_never_resubmits(tmp_path: Path) -> None:
    first = SandboxProvider(latency=0.3, state_dir=tmp_path)
    state = await first.submit(build_request("wan2.6-t2i", "resume me", n=1, seed=5))
    assert first.submission_count() == 1
    # a new process: only the state directory survives
    second = SandboxProvider(state_dir=tmp_path)
    assert second.submission_count() == 1
    assert (await second.get(state.task_id)).status in (TaskStatus.PENDING, TaskStatus.RUNNING)
    await anyio.sleep(0.35)
    done = await second.get(state.task_id)
    assert done.status is TaskStatus.SUCCEEDED
    saved = await second.download(done.images[0], tmp_path / "out" / "0.png")
    assert saved.path is not None
    expected = render_png("resume me", 5, 1280, 1280)
    assert saved.path.read_bytes() == expected
    assert second.submission_count() == 1  # polling and downloading submitted nothing
    unknown = await second.get("00000000-0000-4000-8000-000000000000")
    assert unknown.status is TaskStatus.UNKNOWN
    assert (await second.get("../../etc/passwd")).status is TaskStatus.UNKNOWN


async def test_cancel_only_while_pending(tmp_path: Path) -> None:
    sandbox = SandboxProvider(latency=5.0, state_dir=tmp_path)
    state = await sandbox.submit(build_request("wan2.6-t2i", "c", n=1))
    canceled = await sandbox.cancel(state.task_id)
    assert canceled.status is TaskStatus.CANCELED
    assert (await SandboxProvider(state_dir=tmp_path).get(state.task_id)).status is (
        TaskStatus.CANCELED
    )
    quick = SandboxProvider()
    done = await quick.submit(build_request("wan2.6-t2i", "c", n=1))
    with pytest.raises(UnsupportedOperation, match="only PENDING"):
        await quick.cancel(done.task_id)
    with pytest.raises(TaskNotFound):
        await quick.cancel("00000000-0000-4000-8000-000000000000")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        SandboxProvider(failure_rate=1.5)
    with pytest.raises(ValueError, match="latency"):
        SandboxProvider(latency=-1)
