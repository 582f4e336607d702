"""The Chanjing adapter against a wire-level fake Chanjing cloud on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image

from imagegate.catalog import build_request
from imagegate.errors import (
    AuthError,
    DownloadError,
    RateLimited,
    UnsupportedOperation,
    UpstreamError,
    ValidationError,
)
from imagegate.protocols import chanjing as wire
from imagegate.providers.base import PollPolicy, Submission
from imagegate.providers.chanjing import CHANJING_POLL, ChanjingProvider
from imagegate.providers.http import RetryPolicy
from imagegate.types import GenerationRequest, TaskStatus, UpstreamState
from tests.fakes.chanjing_vendor import Answer, ChanjingVendor, Outcome, png_bytes
from tests.fakes.server import serve

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
FAST_POLL = PollPolicy(initial=0.01, factor=2.0, every=2, maximum=0.04, timeout=5.0)
WAN = build_request("wan2.2-t2i", "高级感室内设计渲染图", aspect_ratio="9:16", n=1, quality="std")


@pytest.fixture
def vendor() -> Iterator[ChanjingVendor]:
    fake = ChanjingVendor()
    with serve(fake.app) as server:
        fake.base_url = server.base_url  # type: ignore[attr-defined]
        yield fake


def make(vendor: ChanjingVendor, **kwargs: object) -> ChanjingProvider:
    options: dict = {"retry": FAST_RETRY, "poll_policy": FAST_POLL, **kwargs}
    secret = options.pop("secret_key", "sk_test")
    return ChanjingProvider("ak_test", secret, vendor.base_url, **options)  # type: ignore[attr-defined]


@pytest.fixture
async def provider(vendor: ChanjingVendor) -> AsyncIterator[ChanjingProvider]:
    adapter = make(vendor)
    yield adapter
    await adapter.aclose()


async def wait(provider: ChanjingProvider, task_id: str) -> list[UpstreamState]:
    """Poll with the provider's policy until terminal (bounded); every state seen."""
    seen = []
    for attempt in range(30):
        state = await provider.get(task_id)
        seen.append(state)
        if state.status.is_terminal:
            return seen
        await asyncio.sleep(provider.poll_policy.interval(attempt))
    raise AssertionError(f"task {task_id} never finished: {seen[-1]}")


def with_n(n: int) -> GenerationRequest:
    return WAN.with_(n=n)


# --------------------------------------------------------------------------- happy path


async def test_token_submit_poll_download(
    vendor: ChanjingVendor, provider: ChanjingProvider, tmp_path: Path
) -> None:
    submitted = await provider.submit(with_n(2))
    assert submitted.status is TaskStatus.PENDING and submitted.task_id in vendor.tasks
    assert submitted.request_id and submitted.warnings == ()
    assert vendor.submitted == [wire.encode_submit(with_n(2))]
    assert list(vendor.submitted[0]) == list(wire.encode_submit(with_n(2)))

    states = await wait(provider, submitted.task_id)
    assert [s.status for s in states] == [
        TaskStatus.PENDING,
        TaskStatus.RUNNING,
        TaskStatus.SUCCEEDED,
    ]
    final = states[-1]
    assert len(final.images) == 2 and final.usage is not None and final.usage.image_count == 2

    for index, image in enumerate(final.images):
        saved = await provider.download(image, tmp_path / f"{index}.png")
        assert saved.path is not None and saved.path.read_bytes() == png_bytes(index)
        assert Image.open(io.BytesIO(saved.path.read_bytes())).size == (16, 8)
    assert vendor.token_requests == 1 and vendor.submits == 1


def test_default_poll_cadence_backs_off_from_2_to_10_seconds() -> None:
    intervals = [CHANJING_POLL.interval(attempt) for attempt in range(8)]
    assert intervals[0] == 2.0 and max(intervals) == 10.0
    assert intervals == sorted(intervals) and CHANJING_POLL.timeout == 1800.0


async def test_a_kling_reference_is_not_sent_and_the_warning_comes_back(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    kling = build_request(
        "kling-v2-1",
        "海报",
        aspect_ratio="3:4",
        clarity=2048,
        n=1,
        reference_images=["https://r/x"],
    )
    state = await provider.submit(kling, Submission(upstream_model="kling-v2-1"))
    assert "ref_img_url" not in vendor.submitted[0]
    assert state.warnings and "ref_img_url was not forwarded" in state.warnings[0]


# --------------------------------------------------------------------------- tokens


async def test_token_is_cached_and_refreshed_five_minutes_before_expiry() -> None:
    fake = ChanjingVendor(token_ttl=3600)
    now = [time.time()]
    with serve(fake.app) as server:
        adapter = ChanjingProvider(
            "ak_test", "sk_test", server.base_url, retry=FAST_RETRY, clock=lambda: now[0]
        )
        task = await adapter.submit(WAN)
        expiry = next(iter(fake.tokens.values()))
        assert fake.token_requests == 1

        now[0] = expiry - 301  # still more than 5 minutes left: cached
        await adapter.get(task.task_id)
        assert fake.token_requests == 1

        now[0] = expiry - 299  # inside the 5-minute margin: refreshed before the call
        await adapter.get(task.task_id)
        assert fake.token_requests == 2
        assert fake.task_requests == 2  # no call was rejected on the way
        await adapter.aclose()


async def test_concurrent_callers_share_one_token_request(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    vendor.plan(Outcome())
    task = await provider.submit(WAN)
    assert vendor.token_requests == 1
    vendor.invalidate_tokens()
    states = await asyncio.gather(*(provider.get(task.task_id) for _ in range(8)))
    assert {s.task_id for s in states} == {task.task_id}
    assert vendor.token_requests == 2  # eight rejected callers, one refresh


async def test_cold_cache_concurrent_callers_fetch_one_token(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    await asyncio.gather(*(provider.list_page() for _ in range(6)))
    assert vendor.token_requests == 1


async def test_10400_refreshes_once_and_retries(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    task = await provider.submit(WAN)
    vendor.invalidate_tokens()
    state = await provider.get(task.task_id)
    assert state.status is TaskStatus.PENDING
    assert vendor.token_requests == 2 and vendor.task_requests == 2


async def test_a_token_rejected_twice_is_an_auth_error_after_one_refresh(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    vendor.reject_tokens = True
    with pytest.raises(AuthError) as caught:
        await provider.submit(WAN)
    assert caught.value.vendor_code == "10400"
    assert vendor.token_requests == 2 and vendor.submit_requests == 2 and vendor.submits == 0


async def test_wrong_credentials_are_an_auth_error_not_retried(vendor: ChanjingVendor) -> None:
    adapter = make(vendor, secret_key="wrong")
    with pytest.raises(AuthError, match="refused app_id/secret_key") as caught:
        await adapter.submit(WAN)
    assert caught.value.vendor_code == "40000"
    assert vendor.token_requests == 1 and vendor.submit_requests == 0
    await adapter.aclose()


# --------------------------------------------------------------------------- retries


async def test_40001_and_429_are_retried_and_retry_after_is_honoured(
    vendor: ChanjingVendor,
) -> None:
    vendor.script("submit", Answer(code=40001), Answer(http=429, retry_after="0.3"))
    adapter = make(vendor, retry=RetryPolicy(attempts=4, base_delay=0.01, max_delay=1.0))
    started = time.monotonic()
    state = await adapter.submit(WAN)
    assert time.monotonic() - started >= 0.3
    assert state.task_id in vendor.tasks
    assert vendor.submit_requests == 3 and vendor.submits == 1
    await adapter.aclose()


async def test_rate_limits_give_up_after_the_policy_attempts(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    vendor.script("submit", *[Answer(code=40001)] * 4)
    with pytest.raises(RateLimited) as caught:
        await provider.submit(WAN)
    assert caught.value.vendor_code == "40001"
    assert vendor.submit_requests == 4 and vendor.submits == 0


async def test_50000_and_http_5xx_on_polls_and_token_are_retried(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    vendor.script("token", Answer(code=50000))
    task = await provider.submit(WAN)
    vendor.script("task", Answer(code=50000), Answer(http=503))
    state = await provider.get(task.task_id)
    assert state.status is TaskStatus.PENDING
    assert vendor.token_requests == 2 and vendor.task_requests == 3


async def test_parameter_errors_from_the_vendor_are_final(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    vendor.script("submit", Answer(code=40000, msg="number_of_images 参数错误"))
    with pytest.raises(ValidationError) as caught:
        await provider.submit(WAN)
    assert caught.value.field == "number_of_images" and vendor.submit_requests == 1


async def test_rules_are_checked_before_any_call(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    with pytest.raises(ValidationError, match=r"^number_of_images is 5"):
        await provider.submit(with_n(5))
    with pytest.raises(ValidationError, match=r"^page_size is 51"):
        await provider.list_page(page_size=51)
    assert vendor.token_requests == 0 and vendor.submit_requests == 0


async def test_an_unreachable_host_is_an_upstream_error() -> None:
    from tests.fakes.server import free_port

    adapter = ChanjingProvider(
        "a", "s", f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(2, 0.01, 0.02)
    )
    with pytest.raises(UpstreamError, match="ConnectError"):
        await adapter.submit(WAN)
    await adapter.aclose()


# --------------------------------------------------------------------------- task outcomes


async def test_a_failed_task_reports_err_msg(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    vendor.plan(Outcome(steps=("Queued", "Generating", "Error")))
    task = await provider.submit(WAN)
    final = (await wait(provider, task.task_id))[-1]
    assert final.status is TaskStatus.FAILED and final.error is not None
    assert final.error.code == "Error" and final.error.message == "任务失败,本次生成不消耗蝉豆"


async def test_an_unknown_task_id_reads_as_unknown(
    vendor: ChanjingVendor, provider: ChanjingProvider
) -> None:
    state = await provider.get("00000000-0000-0000-0000-000000000000")
    assert state.status is TaskStatus.UNKNOWN and state.status.is_terminal
    assert state.error is not None and state.error.code == "task_not_found"
    assert "任务不存在" in state.error.message and "[40000]" in state.error.message


async def test_fewer_output_urls_than_asked_is_a_partial_batch(
    vendor: ChanjingVendor, provider: ChanjingProvider, tmp_path: Path
) -> None:
    vendor.plan(Outcome(images=1))
    task = await provider.submit(with_n(3))
    final = (await wait(provider, task.task_id))[-1]
    assert final.status is TaskStatus.SUCCEEDED
    assert [image.ok for image in final.images] == [True, False, False]
    assert final.warnings == ("Chanjing returned 1 of 3 requested images",)
    saved = await provider.download(final.images[0], tmp_path / "0.png")
    assert saved.path is not None and saved.path.read_bytes() == png_bytes(0)


async def test_a_download_cut_off_is_a_download_error(
    vendor: ChanjingVendor, provider: ChanjingProvider, tmp_path: Path
) -> None:
    vendor.plan(Outcome(cut_download=True))
    task = await provider.submit(WAN)
    final = (await wait(provider, task.task_id))[-1]
    with pytest.raises(DownloadError):
        await provider.download(final.images[0], tmp_path / "out" / "0.png")
    assert list((tmp_path / "out").iterdir()) == []  # no partial file left behind


async def test_cancel_is_unsupported(provider: ChanjingProvider) -> None:
    with pytest.raises(UnsupportedOperation, match="no cancel endpoint"):
        await provider.cancel("x")


async def test_list_page(vendor: ChanjingVendor, provider: ChanjingProvider) -> None:
    vendor.plan(Outcome(steps=("Success",)), Outcome(), Outcome())
    first = await provider.submit(WAN)
    others = [await provider.submit(WAN) for _ in range(2)]
    await provider.get(first.task_id)  # first poll: Success
    states, total = await provider.list_page(page_size=2)
    assert total == 3 and [s.task_id for s in states] == [o.task_id for o in reversed(others)]
    done, total = await provider.list_page(is_success=True)
    assert total == 1 and done[0].task_id == first.task_id
    assert done[0].status is TaskStatus.SUCCEEDED
    chosen, total = await provider.list_page(unique_ids=[others[0].task_id])
    assert total == 1 and chosen[0].task_id == others[0].task_id


# --------------------------------------------------------------------------- dry run


def test_describe_call_shows_the_exact_request_with_the_token_redacted() -> None:
    adapter = ChanjingProvider("ak", "sk", "https://open-api.chanjing.cc/")
    kling = build_request(
        "kling-v2-1",
        "海报",
        aspect_ratio="3:4",
        clarity=2048,
        n=1,
        reference_images=["https://r/x"],
    )
    call = adapter.describe_call(kling)
    assert call.method == "POST"
    assert call.url == "https://open-api.chanjing.cc/open/v1/ai_creation/task/submit"
    assert call.headers == {
        "access_token": "$CHANJING_ACCESS_TOKEN",
        "Content-Type": "application/json",
    }
    assert call.body == wire.encode_submit(kling) and "ref_img_url" not in call.body
    assert call.warnings == tuple(wire.submit_warnings(kling))
    assert call.to_dict()["warnings"] == list(call.warnings)
    assert "warnings" not in adapter.describe_call(WAN).to_dict()
    with pytest.raises(ValidationError, match=r"^number_of_images"):
        adapter.describe_call(with_n(9))
