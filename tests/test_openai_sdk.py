"""The official ``openai`` SDK, unchanged, against a real gateway on 127.0.0.1.

Only ``base_url`` and ``api_key`` change, as the gateway issue promises: images come back as
links and as base64, the catalog lists as models, and the SDK's own exception classes fire for
the rulings table's statuses (``max_retries=0`` so a 429 or 5xx is seen, not retried).
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from imagegate.catalog import load_catalog
from tests.gateway_fixtures import Gateway, start_gateway, stop_gateway

MODEL = "wan2.7-image-pro"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    running = start_gateway(tmp_path_factory.mktemp("openai-sdk"))
    yield running
    stop_gateway(running)


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> openai.OpenAI:
    secret = gateway.new_key(qps=100, max_in_flight=50).secret
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def test_generate_with_url(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model=MODEL, prompt="a lighthouse at dusk", size="1536x1024", response_format="url"
    )
    assert len(result.data) == 1
    url = result.data[0].url
    assert url is not None
    assert result.data[0].b64_json is None
    assert _size(httpx.get(url, timeout=30).content) == (1536, 1024)


def test_generate_with_b64_json(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model=MODEL, prompt="a paper boat", size="1024x1024", n=2, response_format="b64_json"
    )
    assert len(result.data) == 2
    for image in result.data:
        assert image.b64_json is not None
        assert _size(base64.b64decode(image.b64_json)) == (1024, 1024)


def test_async_client_generates_too(gateway: Gateway, client: openai.OpenAI) -> None:
    async def run() -> list[openai.types.ImagesResponse]:
        async with openai.AsyncOpenAI(
            base_url=gateway.base_url + "/v1", api_key=client.api_key, max_retries=0
        ) as aclient:
            return await asyncio.gather(
                aclient.images.generate(model=MODEL, prompt="rain", size="1K"),
                aclient.images.generate(
                    model=MODEL, prompt="snow", size="768x1024", response_format="b64_json"
                ),
            )

    by_url, by_b64 = asyncio.run(run())
    assert by_url.data[0].url is not None
    assert _size(httpx.get(by_url.data[0].url, timeout=30).content) == (1024, 1024)
    assert by_b64.data[0].b64_json is not None
    assert _size(base64.b64decode(by_b64.data[0].b64_json)) == (768, 1024)


def test_models_list_is_the_catalog(client: openai.OpenAI) -> None:
    listed = {model.id for model in client.models.list()}
    assert listed == set(load_catalog().names())


def test_bad_size_is_bad_request_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model=MODEL, prompt="x", size="256x256")
    error = caught.value
    assert error.status_code == 400
    assert error.param == "size"
    assert error.type == "invalid_request_error"
    assert "768*768" in error.message  # the rule it breaks
    assert error.request_id and error.request_id in error.message


def test_bad_key_is_authentication_error(gateway: Gateway) -> None:
    bad = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.images.generate(model=MODEL, prompt="x")
    assert caught.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_rate_limit_is_rate_limit_error(gateway: Gateway) -> None:
    secret = gateway.new_key(qps=1).secret

    async def burst() -> list[object]:
        async with openai.AsyncOpenAI(
            base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0
        ) as aclient:
            calls = [aclient.images.generate(model=MODEL, prompt="x", size="1K") for _ in range(3)]
            return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(burst())
    limited = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
    served = [o for o in outcomes if isinstance(o, openai.types.ImagesResponse)]
    assert len(served) == 1, outcomes
    assert len(limited) == 2, outcomes
    error = limited[0]
    assert error.code == "rate_limit_exceeded"
    assert 1 <= int(error.response.headers["retry-after"]) <= 8


def test_unknown_model_is_not_found_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(model="dall-e-3", prompt="x")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_model_not_allowed_is_permission_denied_error(gateway: Gateway) -> None:
    secret = gateway.new_key(models=("wan2.6-t2i",)).secret
    restricted = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        restricted.images.generate(model=MODEL, prompt="x")
