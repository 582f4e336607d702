"""A submit whose answer is lost is never sent twice (each vendor bills per image).

A raw asyncio server on 127.0.0.1 reads each request whole and then either closes the
connection without answering or answers 200 with a body that is not JSON. The adapters must
raise ``SubmitOutcomeUnknown`` after exactly one request; a connection that never opened is
still retried. Chanjing's token route is answered properly, so its submit is what breaks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from imagegate.catalog import build_request
from imagegate.errors import SubmitOutcomeUnknown, UpstreamError
from imagegate.providers.chanjing import ChanjingProvider
from imagegate.providers.dashscope import DashScopeProvider
from imagegate.providers.http import RetryPolicy, is_retryable, submit_transport_error
from imagegate.providers.openai_compat import OpenAICompatProvider
from imagegate.types import GenerationRequest
from tests.fakes.server import free_port

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


@dataclass
class Swallower:
    """Counts the requests that arrived whole; answers each as ``mode`` says."""

    mode: str  # "close" (no answer at all) or "garbage" (200 with a body that is not JSON)
    requests: int = 0
    base_url: str = ""


@pytest.fixture
async def swallower(request: pytest.FixtureRequest) -> AsyncIterator[Swallower]:
    state = Swallower(mode=request.param)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        if head.startswith(b"POST /open/v1/access_token"):
            token = {"access_token": "tok", "expire_in": 4102444800}
            _answer(writer, {"trace_id": "t", "code": 0, "msg": "success", "data": token})
        else:
            state.requests += 1
            if state.mode == "garbage":
                _answer(writer, b"<html>upstream proxy hiccup</html>")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield state


def _answer(writer: asyncio.StreamWriter, body: bytes | dict[str, object]) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(data)}"
    writer.write(head.encode() + b"\r\n\r\n" + data)


def _chanjing(base_url: str) -> ChanjingProvider:
    return ChanjingProvider("app", "secret", base_url, retry=FAST)


def _dashscope(base_url: str) -> DashScopeProvider:
    return DashScopeProvider("sk-test", base_url + "/api/v1", retry=FAST)


def _openai(base_url: str) -> OpenAICompatProvider:
    return OpenAICompatProvider(base_url, "sk-test", retry=FAST, timeout=10)


ADAPTERS: dict[str, tuple[Callable[[str], object], GenerationRequest]] = {
    "chanjing": (_chanjing, build_request("wan2.2-t2i", "a lake", n=1, aspect_ratio="1:1")),
    "dashscope": (_dashscope, build_request("wan2.6-t2i", "a lake", n=1)),
    "openai": (_openai, build_request("wan2.7-image-pro", "a lake", n=1)),
}


@pytest.mark.parametrize("swallower", ["close", "garbage"], indirect=True)
@pytest.mark.parametrize("vendor", sorted(ADAPTERS))
async def test_a_lost_or_unreadable_answer_is_not_sent_again(
    swallower: Swallower, vendor: str
) -> None:
    make, generation = ADAPTERS[vendor]
    adapter = make(swallower.base_url)
    try:
        with pytest.raises(SubmitOutcomeUnknown, match="not sent again") as caught:
            await adapter.submit(generation)  # type: ignore[attr-defined]
    finally:
        await adapter.aclose()  # type: ignore[attr-defined]
    assert swallower.requests == 1
    assert not is_retryable(caught.value)  # nor will the gateway's engine resend it


@pytest.mark.parametrize("vendor", sorted(ADAPTERS))
async def test_a_connection_that_never_opened_is_retried(vendor: str) -> None:
    make, generation = ADAPTERS[vendor]
    adapter = make(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(UpstreamError, match="ConnectError") as caught:
            await adapter.submit(generation)  # type: ignore[attr-defined]
    finally:
        await adapter.aclose()  # type: ignore[attr-defined]
    assert not isinstance(caught.value, SubmitOutcomeUnknown)
    assert is_retryable(caught.value)


def test_transport_errors_split_by_whether_the_request_left() -> None:
    never_left = submit_transport_error(httpx.ConnectError("refused"), "submit")
    lost = submit_transport_error(httpx.ReadTimeout("no answer"), "submit")
    assert is_retryable(never_left) and not isinstance(never_left, SubmitOutcomeUnknown)
    assert isinstance(lost, SubmitOutcomeUnknown) and not is_retryable(lost)
