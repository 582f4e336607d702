"""Turning an upstream's terminal state into the task's stored outcome.

Each produced image is downloaded into the BlobStore (vendor URLs expire after about a day);
an image the upstream failed, or that could not be downloaded after a few tries, is kept in
the task with its own error, next to the images that worked. A task whose every image failed
is FAILED; one with at least one stored image is SUCCEEDED.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

from imagegate.errors import DownloadError, ImagegateError
from imagegate.providers.base import Provider
from imagegate.storage.blobs import Blob, BlobStore
from imagegate.storage.tasks import image_to_json
from imagegate.types import ImageResult, TaskError, TaskStatus, UpstreamState, Usage

log = logging.getLogger("imagegate.engine")


@dataclass(frozen=True)
class Outcome:
    status: TaskStatus
    images: list[dict[str, Any]]
    usage: Usage | None = None
    error: TaskError | None = None


async def download_one(
    provider: Provider,
    blobs: BlobStore,
    image: ImageResult,
    *,
    attempts: int = 3,
    delay: float = 0.5,
) -> Blob:
    """Fetch one image into the store; a GET is safe to repeat, so failures are retried."""
    for attempt in range(max(1, attempts)):
        temp = blobs.temp_path(".download")
        try:
            saved = await provider.download(image, temp)
            return await asyncio.to_thread(blobs.put_file, saved.path or temp)
        except ImagegateError as error:
            temp.unlink(missing_ok=True)
            if attempt + 1 >= attempts:
                raise
            log.warning("download failed (%s); retrying", error)
            await asyncio.sleep(delay * 2**attempt)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


async def outcome_of(
    state: UpstreamState,
    provider: Provider,
    blobs: BlobStore,
    *,
    download_attempts: int = 3,
    download_delay: float = 0.5,
) -> Outcome:
    """What to store for a terminal upstream state (downloads included)."""
    if state.status == TaskStatus.CANCELED:
        return Outcome(TaskStatus.CANCELED, [], state.usage)
    if state.status != TaskStatus.SUCCEEDED:
        error = state.error or TaskError(
            "UpstreamTaskUnknown" if state.status == TaskStatus.UNKNOWN else "UpstreamFailed",
            f"{provider.name} reported task {state.task_id} as {state.status.value} "
            "without saying why",
        )
        return Outcome(TaskStatus.FAILED, [], state.usage, error)
    stored: list[dict[str, Any]] = []
    first_error: TaskError | None = None
    for image in state.images:
        if not image.ok:
            stored.append(image_to_json(image))
            first_error = first_error or TaskError(
                image.error_code or "", image.error_message or ""
            )
            continue
        try:
            blob = await download_one(
                provider, blobs, image, attempts=download_attempts, delay=download_delay
            )
        except ImagegateError as error:
            code = error.vendor_code or DownloadError.code
            stored.append(image_to_json(replace(image, error_code=code, error_message=str(error))))
            first_error = first_error or TaskError(code, str(error))
            continue
        metadata = {**image.metadata, "sha256": blob.sha256}
        kept = replace(image, content_type=blob.content_type, metadata=metadata)
        stored.append(image_to_json(kept, blob=blob.path))
    good = sum(1 for item in stored if item.get("blob"))
    usage = state.usage or Usage(image_count=good)
    if good == 0:
        failure = first_error or TaskError(
            "UpstreamFailed", f"{provider.name} reported success but returned no images"
        )
        return Outcome(TaskStatus.FAILED, stored, usage, failure)
    return Outcome(TaskStatus.SUCCEEDED, stored, usage)
