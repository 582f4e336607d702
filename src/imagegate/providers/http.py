"""HTTP plumbing shared by the vendor adapters: retries with backoff and streamed downloads."""

from __future__ import annotations

import base64
import os
import random
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx

from imagegate.errors import (
    DownloadError,
    ImagegateError,
    RateLimited,
    SubmitOutcomeUnknown,
    UpstreamError,
)
from imagegate.types import ImageResult

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
USER_AGENT = "imagegate/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    """Retry rate limits and transient failures with exponential backoff and full jitter.

    A ``RateLimited`` error's ``retry_after`` (from ``Retry-After``) is honoured when it is
    longer than the computed delay, capped at ``max_delay``.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, error: ImagegateError) -> float:
        computed = min(self.max_delay, self.base_delay * 2**attempt)
        jittered = random.uniform(computed / 2, computed)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(self.max_delay, max(jittered, float(retry_after)))
        return jittered


#: transport failures that happen before a request leaves this machine: safe to send again
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def is_retryable(error: ImagegateError) -> bool:
    """Rate limits, 5xx and transport failures; never a 4xx parameter error, never a submit
    whose outcome is unknown (``SubmitOutcomeUnknown``)."""
    if isinstance(error, RateLimited):
        return True
    return isinstance(error, UpstreamError) and not isinstance(
        error, DownloadError | SubmitOutcomeUnknown
    )


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retryable: Callable[[ImagegateError], bool] = is_retryable,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> T:
    """Run ``operation``; on a retryable ``ImagegateError`` wait and try again."""
    attempt = 0
    while True:
        try:
            return await operation()
        except ImagegateError as error:
            attempt += 1
            if attempt >= policy.attempts or not retryable(error):
                raise
            await sleep(policy.delay(attempt - 1, error))


def transport_error(error: httpx.HTTPError, what: str) -> UpstreamError:
    """A transport failure (connect, read, timeout) as a retryable ``UpstreamError``."""
    return UpstreamError(f"{what}: {type(error).__name__}: {error}".rstrip(": "))


#: how a ``SubmitOutcomeUnknown`` message ends
NOT_SENT_AGAIN = "the task may exist upstream (and be billed), so it is not sent again"


def unreadable_answer(message: str, *, submit: bool, **details: Any) -> UpstreamError:
    """An answer that cannot be read: for a submit, ``SubmitOutcomeUnknown`` (never resent)."""
    if submit:
        return SubmitOutcomeUnknown(f"{message}; {NOT_SENT_AGAIN}", **details)
    return UpstreamError(message, **details)


@contextmanager
def reading_submit_answer(what: str) -> Iterator[None]:
    """Around decoding a submit's success answer: a failure there means the vendor acted on
    the submit and we cannot tell what it made, so it becomes ``SubmitOutcomeUnknown``."""
    try:
        yield
    except SubmitOutcomeUnknown:
        raise
    except UpstreamError as error:
        raise SubmitOutcomeUnknown(
            f"{what}: the answer could not be read ({error.message}); {NOT_SENT_AGAIN}",
            request_id=error.request_id,
            http_status=error.http_status,
        ) from error


def submit_transport_error(error: httpx.HTTPError, what: str) -> UpstreamError:
    """A transport failure during a submit: retryable only if the request never left.

    After the request was sent the vendor may have created the task, so the answer is
    ``SubmitOutcomeUnknown``, which nothing resends.
    """
    if isinstance(error, NOT_SENT):
        return transport_error(error, what)
    return SubmitOutcomeUnknown(
        f"{what}: {type(error).__name__} after the request was sent; {NOT_SENT_AGAIN}"
    )


async def download_to(
    client: httpx.AsyncClient,
    image: ImageResult,
    dest: Path,
    *,
    chunk_size: int = 1 << 16,
) -> ImageResult:
    """Stream ``image.url`` (or write ``image.data``) into ``dest`` atomically.

    A body shorter than its ``Content-Length`` or a broken connection raises
    ``DownloadError`` and leaves no partial file behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if image.data is not None:
        write_atomic(dest, image.data)
        return _saved(image, dest)
    if not image.url:
        raise DownloadError("image has neither a URL nor inline data")
    if image.url.startswith("data:"):
        write_atomic(dest, base64.b64decode(image.url.split(",", 1)[1]))
        return _saved(image, dest)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    tmp = Path(tmp_name)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async with client.stream("GET", image.url) as response:
                if response.status_code != 200:
                    raise DownloadError(
                        f"download of {_short(image.url)} answered HTTP {response.status_code}",
                        http_status=response.status_code,
                    )
                expected = response.headers.get("content-length")
                async for chunk in response.aiter_raw(chunk_size):
                    out.write(chunk)
                    received += len(chunk)
                if expected is not None and received != int(expected):
                    raise DownloadError(
                        f"download of {_short(image.url)} was cut off: "
                        f"{received} of {expected} bytes"
                    )
        if received == 0:
            raise DownloadError(f"download of {_short(image.url)} was empty")
        publish(tmp, dest)
    except httpx.HTTPError as error:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"download of {_short(image.url)} failed after {received} bytes: {type(error).__name__}"
        ) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _saved(image, dest)


def _saved(image: ImageResult, dest: Path) -> ImageResult:
    return replace(image, path=dest, data=None)


def write_atomic(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` all at once: a reader sees the old file or the whole new one."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    publish(Path(tmp_name), dest)


def _process_umask() -> int:
    mask = os.umask(0o022)  # read once, at import (no threads yet), and put back at once
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_process_umask()


def publish(tmp: Path, dest: Path) -> None:
    """Move a finished temporary file into place with the mode a plain ``open()`` would give.

    ``mkstemp`` creates files readable only by their owner; a saved image should be as readable
    as any other file the user writes.
    """
    tmp.chmod(_FILE_MODE)
    tmp.replace(dest)


def _short(url: str) -> str:
    return url.split("?", 1)[0]
