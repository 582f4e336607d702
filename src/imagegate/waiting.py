"""Submit, poll until terminal with the provider's policy, download: the loop, written once.

The SDK uses it for ``generate``/``wait``; the gateway engine can use ``poll_until_done`` and
``download_images`` with its own stores. Polling follows ``PollPolicy`` (start fast, back off,
cap), tolerates a few transient upstream errors in a row (a 503 while a task runs does not
lose the task), and gives up with ``Timeout`` at the deadline, never earlier than one last
poll. Nothing here re-submits: a task id, once issued, is only ever polled.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import anyio

from imagegate.errors import DownloadError, ImagegateError, Timeout
from imagegate.providers.base import PollPolicy, Provider, Submission
from imagegate.providers.http import is_retryable
from imagegate.types import GenerationRequest, ImageResult, TaskStatus, UpstreamState

#: consecutive transient poll errors tolerated before the error is raised
MAX_TRANSIENT = 5

_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_BY_TYPE = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


@dataclass(frozen=True)
class Progress:
    """One step of a task's life, as reported to ``on_progress`` callbacks."""

    task_id: str
    status: TaskStatus
    elapsed: float
    polls: int
    stage: str = "polling"  # "submitted" | "polling" | "downloading" | "done"


StateCallback = Callable[[UpstreamState, float, int], object]


async def notify(callback: Callable[..., object] | None, *args: object) -> None:
    """Callbacks may be plain functions or coroutines."""
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


async def poll_until_done(
    provider: Provider,
    task_id: str,
    *,
    first: UpstreamState | None = None,
    policy: PollPolicy | None = None,
    timeout: float | None = None,
    on_state: StateCallback | None = None,
    label: str | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> UpstreamState:
    """Poll ``provider`` about ``task_id`` until a terminal state; return that state.

    ``first`` is the state already known (from the submit), so it is not asked again.
    ``on_state(state, elapsed, polls)`` runs after every answer. Raises ``Timeout`` after
    ``timeout`` seconds (default: the policy's), naming the task so the caller can resume.
    """
    policy = policy or provider.poll_policy
    limit = policy.timeout if timeout is None else timeout
    start = clock()
    deadline = start + limit
    polls = 0
    transient = 0
    state = first
    if state is None:
        state = await provider.get(task_id)
        polls += 1
    await notify(on_state, state, clock() - start, polls)
    while not state.status.is_terminal:
        now = clock()
        if now >= deadline:
            shown = label or f"{provider.name}:{task_id}"
            raise Timeout(
                f"task {shown} is still {state.status.value} after {limit:g} s (timeout); it "
                f"keeps running upstream, wait for it again with wait({shown!r})",
                field="timeout",
            )
        await sleep(min(policy.interval(polls), deadline - now))
        try:
            state = await provider.get(task_id)
            transient = 0
        except ImagegateError as error:
            transient += 1
            if not is_retryable(error) or transient > MAX_TRANSIENT:
                raise
        polls += 1
        await notify(on_state, state, clock() - start, polls)
    return state


async def submit_and_wait(
    provider: Provider,
    request: GenerationRequest,
    *,
    submission: Submission | None = None,
    policy: PollPolicy | None = None,
    timeout: float | None = None,
    on_submitted: Callable[[UpstreamState], object] | None = None,
    on_state: StateCallback | None = None,
) -> UpstreamState:
    """Submit once, report the upstream id (``on_submitted``) at once, then poll to the end."""
    state = await provider.submit(request, submission)
    await notify(on_submitted, state)
    return await poll_until_done(
        provider, state.task_id, first=state, policy=policy, timeout=timeout, on_state=on_state
    )


def image_name(stem: str, index: int, image: ImageResult) -> str:
    """``<stem>-<index><ext>``: deterministic, so a repeated download overwrites, not piles up."""
    return f"{stem}-{index}{_BY_TYPE.get(image.content_type, '.png')}"


def _inspect(path: Path) -> tuple[int, int, str | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.width, img.height, img.format
    except (UnidentifiedImageError, OSError) as error:
        raise DownloadError(f"{path.name} is not an image Pillow can read: {error}") from error


async def download_images(
    provider: Provider,
    images: tuple[ImageResult, ...] | list[ImageResult],
    out_dir: Path,
    stem: str,
) -> list[ImageResult]:
    """Save every successful image as ``out_dir/<stem>-<i>.<ext>``; keep failed ones as they are.

    Each saved file is read back with Pillow: ``width``/``height`` are the real pixels, and a
    file whose bytes are not the announced type is renamed to its true extension. A download
    error is recorded on that image (``error_code`` ``download_failed``), the others go on.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[ImageResult] = []
    for index, image in enumerate(images):
        if not image.ok:
            saved.append(image)
            continue
        dest = out_dir / image_name(stem, index, image)
        try:
            result = await provider.download(image, dest)
            path = result.path or dest
            width, height, kind = await anyio.to_thread.run_sync(_inspect, path)
        except DownloadError as error:
            saved.append(replace(image, error_code=error.code, error_message=str(error)))
            continue
        ext = _EXTENSIONS.get(kind or "")
        if ext and path.suffix.lower() != ext:
            path = path.rename(path.with_suffix(ext))
        content_type = f"image/{(kind or 'png').lower()}"
        saved.append(
            replace(result, path=path, width=width, height=height, content_type=content_type)
        )
    return saved
