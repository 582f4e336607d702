"""The official ``dashscope`` SDK (2.0.2), unchanged, against a real gateway on 127.0.0.1.

Every image entry point it ships: the 1.x ``ImageSynthesis`` / ``ImageGeneration`` classes and
their asyncio twins ``AioImageSynthesis`` / ``AioImageGeneration``, and the 2.x ``Client`` /
``AsyncClient`` images API (``images.generate`` and ``images.jobs.*``). Each one that makes
images gets real PNGs back: the links in the answer are downloaded and opened with Pillow.
The SDK is pointed at the gateway the documented way: ``dashscope.base_http_api_url`` for 1.x,
``Client(base_url=...)`` for 2.x, and the key passed as ``api_key=``.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import dashscope
import httpx
import pytest
from dashscope import AsyncClient, Client
from dashscope.aigc.image_generation import AioImageGeneration, ImageGeneration
from dashscope.aigc.image_synthesis import AioImageSynthesis, ImageSynthesis
from dashscope.api_entities.aio_session import close_shared_aio_session
from dashscope.v2.errors import AuthenticationError, BadRequestError
from PIL import Image

from tests.gateway_fixtures import Gateway, KeyPair, gateway_factory, start_gateway, stop_gateway

__all__ = ["gateway_factory"]  # a fixture, imported for pytest

PROMPT = "a paper boat on a quiet lake"
MESSAGES = [{"role": "user", "content": [{"text": PROMPT}]}]
FAST_POLL = {"poll_interval": 0.05, "max_interval": 0.2, "timeout": 20.0}


@pytest.fixture(scope="module")
def sdk_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the module: the SDK calls share it (each uses its own tasks)."""
    gateway = start_gateway(Path(tmp_path_factory.mktemp("dashscope-sdk")))
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


@pytest.fixture(scope="module")
def key(sdk_gateway: Gateway) -> KeyPair:
    return sdk_gateway.new_key("dashscope sdk")


@pytest.fixture
async def aio_session() -> AsyncIterator[None]:
    """The 1.x asyncio classes share one aiohttp session per loop: close it with the loop."""
    yield
    await close_shared_aio_session()


@pytest.fixture(autouse=True)
def _sdk_base_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the 1.x SDK at the gateway used by the test (module-wide or its own)."""
    if "sdk_gateway" in request.fixturenames:
        gateway: Gateway = request.getfixturevalue("sdk_gateway")
        monkeypatch.setattr(dashscope, "base_http_api_url", gateway.base_url + "/api/v1")


def api_base(gateway: Gateway) -> str:
    return gateway.base_url + "/api/v1"


def image_size(url: str) -> tuple[int, int]:
    """Download a result link and open it: a real image, whose size is returned."""
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(answer.content))
    image.load()
    assert image.format == "PNG"
    return image.size


def result_urls(response: Any) -> list[str]:
    """Links of a 1.x ``ImageSynthesisResponse``."""
    assert response.status_code == 200, response
    assert response.output.task_status == "SUCCEEDED", response
    return [result.url for result in response.output.results]


def choice_urls(response: Any) -> list[str]:
    """Links of a 1.x ``ImageGenerationResponse`` (wan2.6 ``choices``)."""
    assert response.status_code == 200, response
    return [
        part["image"]
        for choice in response.output.choices
        for part in choice["message"]["content"]
        if part.get("type") == "image"
    ]


def until_finished(fetch: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Fetch until terminal, so a later ``wait`` returns at once (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        response = fetch()
        assert response.status_code == 200, response
        if response.output.task_status not in ("PENDING", "RUNNING"):
            return response
        assert time.monotonic() < deadline, response
        time.sleep(0.05)


# --------------------------------------------------------------------------- 1.x, blocking


def test_image_synthesis_call(sdk_gateway: Gateway, key: KeyPair) -> None:
    response = ImageSynthesis.call(
        model="wan2.2-t2i-flash", prompt=PROMPT, n=1, size="768*512", api_key=key.secret
    )
    (url,) = result_urls(response)
    assert image_size(url) == (768, 512)
    assert response.usage.image_count == 1


def test_image_synthesis_async_call_fetch_wait(sdk_gateway: Gateway, key: KeyPair) -> None:
    submitted = ImageSynthesis.async_call(
        model="wan2.5-t2i-preview",
        prompt=PROMPT,
        negative_prompt="fog",
        n=1,
        size="1472*1104",
        seed=11,
        api_key=key.secret,
    )
    assert submitted.status_code == 200, submitted
    assert submitted.output.task_status == "PENDING"
    fetched = until_finished(lambda: ImageSynthesis.fetch(submitted, api_key=key.secret))
    assert fetched.output.task_status == "SUCCEEDED"
    waited = ImageSynthesis.wait(submitted, api_key=key.secret)
    (url,) = result_urls(waited)
    assert image_size(url) == (1472, 1104)
    assert waited.output.results[0].orig_prompt == PROMPT


def test_image_synthesis_sync_call(sdk_gateway: Gateway, key: KeyPair) -> None:
    response = ImageSynthesis.sync_call(
        model="wan2.2-t2i-plus", prompt=PROMPT, n=2, size="1024*768", api_key=key.secret
    )
    urls = result_urls(response)
    assert len(urls) == 2
    assert {image_size(url) for url in urls} == {(1024, 768)}


def test_image_synthesis_list(sdk_gateway: Gateway, key: KeyPair) -> None:
    lister = sdk_gateway.new_key("lister")
    for _ in range(3):
        ImageSynthesis.async_call(
            model="wan2.1-t2i-turbo", prompt=PROMPT, n=1, api_key=lister.secret
        )
    page = ImageSynthesis.list(page_no=1, page_size=2, api_key=lister.secret)
    assert page.status_code == 200, page
    assert page.output["total"] == 3
    assert len(page.output["tasks"]) == 2
    assert page.output["tasks"][0]["model"] == "wan2.1-t2i-turbo"
    rest = ImageSynthesis.list(
        page_no=2, page_size=2, model_name="wan2.1-t2i-turbo", api_key=lister.secret
    )
    assert len(rest.output["tasks"]) == 1


def test_image_generation_call_is_synchronous(sdk_gateway: Gateway, key: KeyPair) -> None:
    response = ImageGeneration.call(
        model="wan2.6-t2i", messages=MESSAGES, n=1, size="1696*960", api_key=key.secret
    )
    (url,) = choice_urls(response)
    assert image_size(url) == (1696, 960)
    assert response.usage.image_count == 1


def test_image_generation_async_call_fetch_wait(sdk_gateway: Gateway, key: KeyPair) -> None:
    submitted = ImageGeneration.async_call(
        model="wan2.6-t2i", messages=MESSAGES, n=1, api_key=key.secret
    )
    assert submitted.status_code == 200, submitted
    assert submitted.output.task_status == "PENDING"
    until_finished(lambda: ImageGeneration.fetch(submitted, api_key=key.secret))
    waited = ImageGeneration.wait(submitted, api_key=key.secret)
    assert waited.output.task_status == "SUCCEEDED"
    (url,) = choice_urls(waited)
    assert image_size(url) == (1280, 1280)  # the model's default size
    listed = ImageGeneration.list(model_name="wan2.6-t2i", api_key=key.secret)
    assert submitted.output.task_id in [task["task_id"] for task in listed.output["tasks"]]


def test_cancel_pending_and_running(
    gateway_factory: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One busy worker keeps the next task PENDING: cancel it; a RUNNING one cannot be."""
    gateway = gateway_factory(sandbox={"latency": 1.0}, max_concurrent=1)
    monkeypatch.setattr(dashscope, "base_http_api_url", api_base(gateway))
    key = gateway.new_key()
    base: dict[str, Any] = {}
    busy = ImageSynthesis.async_call(
        model="wan2.2-t2i-flash", prompt=PROMPT, n=1, api_key=key.secret, **base
    )
    assert busy.status_code == 200, busy
    deadline = time.monotonic() + 5
    while ImageSynthesis.fetch(busy, api_key=key.secret, **base).output.task_status != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    queued = ImageGeneration.async_call(
        model="wan2.6-t2i", messages=MESSAGES, n=1, api_key=key.secret, **base
    )
    canceled = ImageGeneration.cancel(queued, api_key=key.secret, **base)
    assert canceled.status_code == 200, canceled
    assert canceled.output["task_status"] == "CANCELED"
    refused = ImageSynthesis.cancel(busy, api_key=key.secret, **base)
    assert refused.status_code == 400
    assert refused.code == "UnsupportedOperation"
    assert "RUNNING" in refused.message


# --------------------------------------------------------------------------- 1.x, asyncio


@pytest.mark.usefixtures("aio_session")
async def test_aio_image_synthesis_every_entry_point(sdk_gateway: Gateway, key: KeyPair) -> None:
    called, synced, submitted = await asyncio.gather(
        AioImageSynthesis.call(
            model="wan2.2-t2i-flash", prompt=PROMPT, n=1, size="512*640", api_key=key.secret
        ),
        AioImageSynthesis.sync_call(
            model="wan2.2-t2i-flash", prompt=PROMPT, n=1, size="640*512", api_key=key.secret
        ),
        AioImageSynthesis.async_call(
            model="wanx2.0-t2i-turbo", prompt=PROMPT, n=1, size="1024*1024", api_key=key.secret
        ),
    )
    assert image_size(result_urls(called)[0]) == (512, 640)
    assert image_size(result_urls(synced)[0]) == (640, 512)
    assert submitted.status_code == 200, submitted
    fetched = await AioImageSynthesis.fetch(submitted, api_key=key.secret)
    assert fetched.status_code == 200 and fetched.output.task_id == submitted.output.task_id
    waited = await AioImageSynthesis.wait(submitted, api_key=key.secret)
    assert image_size(result_urls(waited)[0]) == (1024, 1024)
    listed = await AioImageSynthesis.list(model_name="wanx2.0-t2i-turbo", api_key=key.secret)
    assert listed.status_code == 200
    assert [task["task_id"] for task in listed.output["tasks"]] == [submitted.output.task_id]
    refused = await AioImageSynthesis.cancel(submitted, api_key=key.secret)
    assert refused.status_code == 400 and refused.code == "UnsupportedOperation"


@pytest.mark.usefixtures("aio_session")
async def test_aio_image_generation_every_entry_point(sdk_gateway: Gateway, key: KeyPair) -> None:
    called, submitted = await asyncio.gather(
        AioImageGeneration.call(
            model="wan2.6-t2i", messages=MESSAGES, n=1, size="960*1696", api_key=key.secret
        ),
        AioImageGeneration.async_call(
            model="wan2.6-t2i", messages=MESSAGES, n=1, size="1104*1472", api_key=key.secret
        ),
    )
    assert image_size(choice_urls(called)[0]) == (960, 1696)
    assert submitted.status_code == 200, submitted
    fetched = await AioImageGeneration.fetch(submitted, api_key=key.secret)
    assert fetched.status_code == 200
    waited = await AioImageGeneration.wait(submitted, api_key=key.secret)
    assert image_size(choice_urls(waited)[0]) == (1104, 1472)
    listed = await AioImageGeneration.list(status="SUCCEEDED", api_key=key.secret)
    assert submitted.output.task_id in [task["task_id"] for task in listed.output["tasks"]]
    refused = await AioImageGeneration.cancel(submitted, api_key=key.secret)
    assert refused.status_code == 400 and refused.code == "UnsupportedOperation"


# --------------------------------------------------------------------------- 2.x Client


def test_client_images_generate_both_protocols(sdk_gateway: Gateway, key: KeyPair) -> None:
    client = Client(base_url=api_base(sdk_gateway), api_key=key.secret, max_retries=0)
    legacy = client.images.generate(
        model="wan2.2-t2i-flash", prompt=PROMPT, n=1, size="800x600", **FAST_POLL
    )
    assert legacy.succeeded, legacy
    assert [image_size(url) for url in legacy.image_urls] == [(800, 600)]
    chat_style = client.images.generate(model="wan2.6-t2i", prompt=PROMPT, n=1, size="1472*1104")
    assert chat_style.succeeded, chat_style
    assert [image_size(url) for url in chat_style.image_urls] == [(1472, 1104)]


def test_client_images_jobs(sdk_gateway: Gateway, key: KeyPair) -> None:
    client = Client(base_url=api_base(sdk_gateway), api_key=key.secret, max_retries=0)
    legacy = client.images.jobs.create(model="wan2.1-t2i-plus", prompt=PROMPT, n=1)
    chat_style = client.images.jobs.create(
        model="wan2.6-t2i", prompt=PROMPT, negative_prompt="rain", n=1
    )
    assert legacy.status == "PENDING" and chat_style.status == "PENDING"
    fetched = client.images.jobs.fetch(legacy.task_id)
    assert fetched.task_id == legacy.task_id
    done = client.images.jobs.wait(legacy, **FAST_POLL)
    assert [image_size(url) for url in done.image_urls] == [(1024, 1024)]
    done = client.images.jobs.wait(chat_style.task_id, **FAST_POLL)
    assert [image_size(url) for url in done.image_urls] == [(1280, 1280)]
    page = client.images.jobs.list(model_name="wan2.1-t2i-plus", page_size=5)
    assert page.total >= 1 and page.tasks[0].task_id == legacy.task_id
    assert page.tasks[0].status == "SUCCEEDED"


async def test_async_client_images(sdk_gateway: Gateway, key: KeyPair) -> None:
    async with AsyncClient(
        base_url=api_base(sdk_gateway), api_key=key.secret, max_retries=0
    ) as client:
        legacy, chat_style, job = await asyncio.gather(
            client.images.generate(model="wan2.2-t2i-plus", prompt=PROMPT, n=1, **FAST_POLL),
            client.images.generate(model="wan2.6-t2i", prompt=PROMPT, n=1, size="1696x960"),
            client.images.jobs.create(
                model="wanx2.0-t2i-turbo", prompt=PROMPT, n=1, size="512*512"
            ),
        )
        assert [image_size(url) for url in legacy.image_urls] == [(1024, 1024)]
        assert [image_size(url) for url in chat_style.image_urls] == [(1696, 960)]
        assert (await client.images.jobs.fetch(job.task_id)).task_id == job.task_id
        done = await client.images.jobs.wait(job, **FAST_POLL)
        assert [image_size(url) for url in done.image_urls] == [(512, 512)]
        page = await client.images.jobs.list(model_name="wanx2.0-t2i-turbo", page_size=50)
        assert job.task_id in [task.task_id for task in page.tasks]
        queued = await client.images.jobs.create(model="wan2.6-t2i", prompt=PROMPT, n=1)
        done = await client.images.jobs.wait(queued.task_id, **FAST_POLL)
        assert done.succeeded
        with pytest.raises(BadRequestError) as raised:  # finished: not cancelable any more
            await client.images.jobs.cancel(queued.task_id)
        assert raised.value.code == "UnsupportedOperation"


def test_client_cancel_pending(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(sandbox={"latency": 1.0}, max_concurrent=1)
    key = gateway.new_key()
    client = Client(base_url=api_base(gateway), api_key=key.secret, max_retries=0)
    busy = client.images.jobs.create(model="wan2.2-t2i-flash", prompt=PROMPT, n=1)
    deadline = time.monotonic() + 5
    while client.images.jobs.fetch(busy.task_id).status != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    queued = client.images.jobs.create(model="wan2.6-t2i", prompt=PROMPT, n=1)
    assert client.images.jobs.cancel(queued.task_id).status == "CANCELED"
    assert client.images.jobs.fetch(queued.task_id).status == "CANCELED"


# --------------------------------------------------------------------------- errors


def test_bad_size_is_400_invalid_parameter_naming_size(sdk_gateway: Gateway, key: KeyPair) -> None:
    submitted = ImageSynthesis.async_call(
        model="wan2.2-t2i-flash", prompt=PROMPT, n=1, size="100*100", api_key=key.secret
    )
    assert submitted.status_code == 400
    assert submitted.code == "InvalidParameter"
    assert "size" in submitted.message
    synced = ImageGeneration.call(
        model="wan2.6-t2i", messages=MESSAGES, size="512*512", api_key=key.secret
    )
    assert (synced.status_code, synced.code) == (400, "InvalidParameter")
    assert "parameters.size" in synced.message

    client = Client(base_url=api_base(sdk_gateway), api_key=key.secret, max_retries=0)
    with pytest.raises(BadRequestError) as raised:
        client.images.generate(model="wan2.6-t2i", prompt=PROMPT, n=1, size="512x512")
    assert raised.value.status_code == 400
    assert raised.value.code == "InvalidParameter"
    assert "size" in raised.value.message


def test_bad_key_is_401_invalid_api_key(sdk_gateway: Gateway) -> None:
    response = ImageSynthesis.async_call(
        model="wan2.2-t2i-flash", prompt=PROMPT, n=1, api_key="sk-not-a-gateway-key"
    )
    assert (response.status_code, response.code) == (401, "InvalidApiKey")
    fetched = ImageSynthesis.fetch("any-task", api_key="sk-not-a-gateway-key")
    assert (fetched.status_code, fetched.code) == (401, "InvalidApiKey")

    client = Client(base_url=api_base(sdk_gateway), api_key="sk-not-a-gateway-key", max_retries=0)
    with pytest.raises(AuthenticationError) as raised:
        client.images.jobs.create(model="wan2.6-t2i", prompt=PROMPT, n=1)
    assert raised.value.status_code == 401
    assert raised.value.code == "InvalidApiKey"


def test_unknown_task_is_unknown_through_the_sdk(sdk_gateway: Gateway, key: KeyPair) -> None:
    fetched = ImageSynthesis.fetch("not-a-task", api_key=key.secret)
    assert fetched.status_code == 200
    assert fetched.output.task_status == "UNKNOWN"
    waited = ImageSynthesis.wait("not-a-task", api_key=key.secret)  # terminal: returns at once
    assert waited.output.task_status == "UNKNOWN"
