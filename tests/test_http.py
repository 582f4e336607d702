"""Retries and streamed downloads, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from imagegate.errors import (
    DownloadError,
    RateLimited,
    UpstreamError,
    ValidationError,
)
from imagegate.protocols.headers import parse_retry_after
from imagegate.providers.http import (
    RetryPolicy,
    download_to,
    is_retryable,
    with_retries,
)
from imagegate.types import ImageResult
from tests.fakes.server import ThreadedServer, serve

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


async def whole(request: Request) -> Response:
    return Response(PNG, media_type="image/png")


async def cut(request: Request) -> StreamingResponse:
    async def body():  # type: ignore[no-untyped-def]
        yield PNG[:1000]

    return StreamingResponse(
        body(), media_type="image/png", headers={"content-length": str(len(PNG))}
    )


async def gone(request: Request) -> Response:
    return Response("expired", status_code=403)


@pytest.fixture(scope="module")
def files() -> Iterator[ThreadedServer]:
    app = Starlette(
        routes=[Route("/whole.png", whole), Route("/cut.png", cut), Route("/gone.png", gone)]
    )
    with serve(app) as server:
        yield server


async def test_download_streams_the_whole_file(files: ThreadedServer, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        saved = await download_to(
            client, ImageResult(url=files.base_url + "/whole.png?Expires=1"), tmp_path / "a.png"
        )
    assert saved.path == tmp_path / "a.png"
    assert saved.path.read_bytes() == PNG
    # as readable as a file opened by the user (the umask decides), not mkstemp's 0600
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    assert saved.path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777


async def test_download_cut_off_raises_and_leaves_nothing(
    files: ThreadedServer, tmp_path: Path
) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(DownloadError) as caught:
            await download_to(
                client, ImageResult(url=files.base_url + "/cut.png"), tmp_path / "b.png"
            )
    assert "cut.png" in caught.value.message
    assert list(tmp_path.iterdir()) == []


async def test_download_of_an_expired_link(files: ThreadedServer, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(DownloadError) as caught:
            await download_to(
                client, ImageResult(url=files.base_url + "/gone.png"), tmp_path / "c.png"
            )
    assert caught.value.http_status == 403


async def test_inline_data_is_written(tmp_path: Path) -> None:
    async with httpx.AsyncClient() as client:
        saved = await download_to(client, ImageResult(data=PNG), tmp_path / "d" / "d.png")
    assert saved.path is not None and saved.path.read_bytes() == PNG and saved.data is None


async def test_retries_rate_limits_then_succeeds() -> None:
    calls: list[int] = []
    slept: list[float] = []

    async def operation() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RateLimited("slow down", retry_after=2)
        return "ok"

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    result = await with_retries(operation, RetryPolicy(attempts=4), sleep=sleep)
    assert result == "ok" and len(calls) == 3
    assert slept == [2.0, 2.0]  # Retry-After wins over the shorter computed backoff


async def test_a_parameter_error_is_final() -> None:
    calls: list[int] = []

    async def operation() -> None:
        calls.append(1)
        raise ValidationError("size is wrong", field="size")

    async def sleep(seconds: float) -> None:
        raise AssertionError("must not sleep")

    with pytest.raises(ValidationError):
        await with_retries(operation, RetryPolicy(), sleep=sleep)
    assert calls == [1]


async def test_gives_up_after_the_attempts() -> None:
    calls: list[int] = []

    async def operation() -> None:
        calls.append(1)
        raise UpstreamError("502")

    async def sleep(seconds: float) -> None:
        assert 0 <= seconds <= 8

    with pytest.raises(UpstreamError):
        await with_retries(operation, RetryPolicy(attempts=3), sleep=sleep)
    assert len(calls) == 3


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    delays = [policy.delay(attempt, UpstreamError("x")) for attempt in range(10)]
    assert all(0 < delay <= 8.0 for delay in delays)
    assert delays[0] <= 0.5 and delays[-1] >= 4.0
    assert policy.delay(0, RateLimited("x", retry_after=60)) == 8.0


def test_retryable_classes() -> None:
    assert is_retryable(RateLimited("x"))
    assert is_retryable(UpstreamError("x"))
    assert not is_retryable(DownloadError("x"))
    assert not is_retryable(ValidationError("x"))


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30
