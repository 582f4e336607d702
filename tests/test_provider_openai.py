"""OpenAICompatProvider against the fake aggregator on 127.0.0.1 (real HTTP, real PNGs)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image

from imagegate.catalog import build_request, load_catalog
from imagegate.errors import (
    AuthError,
    ContentRejected,
    DownloadError,
    InvalidRequest,
    RateLimited,
    UnknownModel,
    UpstreamError,
    ValidationError,
)
from imagegate.providers.base import Submission
from imagegate.providers.http import RetryPolicy
from imagegate.providers.openai_compat import OpenAICompatProvider, normalize_base_url
from imagegate.types import GenerationRequest, SizeSpec, TaskStatus
from tests.fakes.openai_vendor import FakeOpenAIVendor
from tests.fakes.server import ThreadedServer, free_port, serve

KEY = "sk-fake-openai"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.3)
CATALOG = load_catalog()


@pytest.fixture
def vendor() -> Iterator[tuple[FakeOpenAIVendor, ThreadedServer]]:
    fake = FakeOpenAIVendor(api_key=KEY)
    with serve(fake.app) as server:
        yield fake, server


@pytest.fixture
async def provider(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer],
) -> AsyncIterator[OpenAICompatProvider]:
    adapter = OpenAICompatProvider(vendor[1].base_url, KEY, retry=FAST, catalog=CATALOG, timeout=10)
    yield adapter
    await adapter.aclose()


def _request(**fields: object) -> GenerationRequest:
    return build_request("wan2.7-image-pro", "一朵红色玫瑰", catalog=CATALOG, **fields)  # type: ignore[arg-type]


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


async def test_url_success_downloads_a_real_png(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], provider: OpenAICompatProvider, tmp_path: Path
) -> None:
    fake, _ = vendor
    state = await provider.submit(_request(size="1K", n=2, seed=42))
    assert state.status is TaskStatus.SUCCEEDED
    assert len(state.images) == 2 and all(image.url for image in state.images)
    assert state.request_id == state.task_id and state.usage and state.usage.image_count == 2
    sent = fake.requests[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {"model": "wan2.7-image-pro", "prompt": "一朵红色玫瑰", "size": "1K",
                         "n": 2, "seed": 42}  # fmt: skip
    saved = [
        await provider.download(image, tmp_path / f"{i}.png")
        for i, image in enumerate(state.images)
    ]
    assert [_png_size(image.path) for image in saved if image.path] == [(1024, 1024)] * 2
    assert (tmp_path / "0.png").read_bytes() != (tmp_path / "1.png").read_bytes()
    downloads = [r for r in fake.requests if r.method == "GET"]
    assert downloads and all("authorization" not in r.headers for r in downloads)
    assert await provider.get(state.task_id) == state
    unknown = await provider.get("oai-nope")
    assert unknown.status is TaskStatus.UNKNOWN and unknown.error is not None


async def test_b64_json_success_writes_a_real_png(tmp_path: Path) -> None:
    fake = FakeOpenAIVendor(api_key=KEY, strict_response_format=False)
    with serve(fake.app) as server:
        adapter = OpenAICompatProvider(server.base_url + "/v1/", KEY, retry=FAST, timeout=10)
        state = await adapter.submit(
            _request(size="1920x1080"),
            Submission(upstream_model="wan2.7-image-pro", options={"response_format": "b64_json"}),
        )
    assert fake.requests[0].body["response_format"] == "b64_json"
    assert fake.requests[0].body["size"] == "1920x1080"
    image = state.images[0]
    assert image.url is None and image.data is not None and image.content_type == "image/png"
    saved = await adapter.download(image, tmp_path / "out" / "a.png")
    await adapter.aclose()
    assert saved.path is not None and _png_size(saved.path) == (1920, 1080)
    assert saved.data is None


async def test_seed_deployment_rejects_string_response_format_without_retry(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], provider: OpenAICompatProvider
) -> None:
    fake, _ = vendor
    with pytest.raises(InvalidRequest) as info:
        await provider.submit(_request(), Submission(options={"response_format": "url"}))
    assert info.value.field == "response_format" and info.value.vendor_code == "invalid_request"
    assert info.value.http_status == 500 and info.value.request_id
    assert fake.count() == 1  # the page labels it a server error; retrying would fail again


async def test_bad_key_is_auth_error(vendor: tuple[FakeOpenAIVendor, ThreadedServer]) -> None:
    fake, server = vendor
    adapter = OpenAICompatProvider(server.base_url, "sk-wrong", retry=FAST, timeout=10)
    with pytest.raises(AuthError) as info:
        await adapter.submit(_request())
    await adapter.aclose()
    assert info.value.http_status == 401 and info.value.vendor_code == "invalid_api_key"
    assert info.value.request_id and "(request id" not in info.value.message
    assert fake.count() == 1


async def test_400_with_param_is_final(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], provider: OpenAICompatProvider
) -> None:
    fake, _ = vendor
    # the adapter trusts its caller (the catalog checks first); the upstream's own rule speaks
    unchecked = GenerationRequest("wan2.7-image-pro", "p", size=SizeSpec(100, 100, "100*100"))
    with pytest.raises(ValidationError) as info:
        await provider.submit(unchecked)
    assert info.value.field == "size" and info.value.http_status == 400
    assert "768*768" in info.value.message and info.value.vendor_code == "invalid_value"
    with pytest.raises(ValidationError) as extra:
        await provider.submit(_request(extra={"style": "vivid"}))
    assert extra.value.field == "style" and extra.value.vendor_code == "unknown_parameter"
    with pytest.raises(ContentRejected):
        await provider.submit(_request().with_(prompt="forbidden-content here"))
    with pytest.raises(UnknownModel) as missing:
        await provider.submit(_request(), Submission(upstream_model="wan9-image"))
    assert missing.value.http_status == 503 and missing.value.field == "model"
    assert fake.count() == 4


async def test_429_is_retried_after_retry_after(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], provider: OpenAICompatProvider
) -> None:
    fake, _ = vendor
    fake.push_rate_limit(retry_after="5")
    started = time.monotonic()
    state = await provider.submit(_request(size="1K"))
    elapsed = time.monotonic() - started
    assert state.status is TaskStatus.SUCCEEDED and fake.count() == 2
    assert elapsed >= 0.29  # Retry-After honoured, capped at the policy's max_delay (0.3 s)


async def test_429_until_attempts_run_out(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], provider: OpenAICompatProvider
) -> None:
    fake, _ = vendor
    for _ in range(3):
        fake.push_rate_limit(retry_after="0")
    with pytest.raises(RateLimited) as info:
        await provider.submit(_request())
    assert info.value.retry_after == 0 and info.value.vendor_code == "rate_limit_exceeded"
    assert fake.count() == 3


async def test_500_is_retried_then_succeeds(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], provider: OpenAICompatProvider
) -> None:
    fake, _ = vendor
    fake.push_server_error()
    fake.push_server_error()
    state = await provider.submit(_request(size="1K"))
    assert state.status is TaskStatus.SUCCEEDED and fake.count() == 3


async def test_transport_error_is_retried_then_reported() -> None:
    adapter = OpenAICompatProvider(f"http://127.0.0.1:{free_port()}", KEY, retry=FAST, timeout=2)
    with pytest.raises(UpstreamError, match="ConnectError"):
        await adapter.submit(_request())
    await adapter.aclose()


async def test_partial_batch_reports_missing_images(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], provider: OpenAICompatProvider
) -> None:
    fake, _ = vendor
    fake.missing_images = 1
    state = await provider.submit(_request(size="1K", n=3))
    assert state.status is TaskStatus.SUCCEEDED
    assert [image.ok for image in state.images] == [True, True, False]
    assert state.images[2].error_code == "IMAGE_MISSING"
    assert state.warnings == ("the upstream returned 2 of 3 requested images",)
    assert state.usage is not None and state.usage.image_count == 2


async def test_cut_download_leaves_no_file(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], provider: OpenAICompatProvider, tmp_path: Path
) -> None:
    fake, _ = vendor
    state = await provider.submit(_request(size="1K"))
    fake.cut_downloads = True
    with pytest.raises(DownloadError):
        await provider.download(state.images[0], tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_describe_call_and_base_url() -> None:
    adapter = OpenAICompatProvider("https://api.example.com", "sk-secret", catalog=CATALOG)
    call = adapter.describe_call(_request(size="16:9", watermark=False))
    assert call.to_dict() == {
        "method": "POST",
        "url": "https://api.example.com/v1/images/generations",
        "headers": {
            "Authorization": "Bearer $IMAGEGATE_OPENAI_API_KEY",
            "Content-Type": "application/json",
        },
        "body": {
            "model": "wan2.7-image-pro",
            "prompt": "一朵红色玫瑰",
            "size": "2560*1440",
            "watermark": False,
        },
    }
    assert "sk-secret" not in str(call.to_dict())
    for given in ("https://h/v1", "https://h/v1/", "https://h", "https://h/"):
        assert normalize_base_url(given) == "https://h/v1"
    assert normalize_base_url("https://h/openai") == "https://h/openai/v1"


async def test_unforwarded_reference_image_is_dropped_with_a_warning(
    vendor: tuple[FakeOpenAIVendor, ThreadedServer], tmp_path: Path
) -> None:
    fake, server = vendor
    adapter = OpenAICompatProvider(server.base_url, KEY, retry=FAST, catalog=CATALOG, timeout=10)
    request = build_request(
        "kling-v2-1", "p", reference_images=["https://x/ref.png"], catalog=CATALOG
    )
    state = await adapter.submit(request, Submission(upstream_model="wan2.7-image-pro"))
    await adapter.aclose()
    assert "ref" not in str(fake.requests[0].body) and fake.requests[0].body["size"] == "1024*1024"
    assert state.warnings and "not forwarded" in state.warnings[0]
