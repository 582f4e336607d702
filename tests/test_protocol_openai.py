"""The OpenAI-compatible images codec: seed 003 bodies, answers, errors, and the server side."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from imagegate.catalog import build_request, load_catalog
from imagegate.errors import (
    AuthError,
    ContentRejected,
    ImagegateError,
    InvalidRequest,
    NotConfigured,
    PermissionDenied,
    RateLimited,
    TaskNotFound,
    Timeout,
    UnknownModel,
    UpstreamError,
    ValidationError,
)
from imagegate.protocols import openai as oai
from imagegate.protocols import openai_server as oai_server
from imagegate.types import ImageResult, Task, TaskStatus
from tests.fakes.server import serve

CATALOG = load_catalog()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24

# Seed 003's four request examples, verbatim (the page's strings, \r\n and all).
SEED_BODIES = [
    '{\r\n "model": "wan2.7-image-pro",\r\n '
    '"prompt": "一间有着精致窗户的花店,漂亮的木质门,摆放着花朵"\r\n}',
    '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "雪山湖泊日出,写实摄影",\r\n '
    '"size": "4K"\r\n}',
    '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "宽银幕城市夜景",\r\n "size": "1920*1080",'
    '\r\n "watermark": false\r\n}',
    '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "相同种子复现测试,红色玫瑰",\r\n '
    '"size": "2K",\r\n "n": 1,\r\n "watermark": false,\r\n "seed": 42\r\n}',
]
SEED_RESPONSE = {
    "created": 1710000000,
    "data": [
        {
            "url": "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/xxx.png?Expires=xxx",
            "revised_prompt": "",
        }
    ],
}
SEED_ERROR = json.loads(
    '{"error":{"message":"invalid request body: json: cannot unmarshal string into Go struct '
    "field GeneralOpenAIRequest.response_format of type dto.ResponseFormat (request id: "
    '20260507163239913971004ZVwereT)","type":"new_api_error","param":"","code":"invalid_request"}}'
)


# ----------------------------------------------------------------------------- encode_request


@pytest.mark.parametrize("text", SEED_BODIES)
def test_seed_bodies_reproduced_exactly(text: str) -> None:
    seed = json.loads(text)
    fields = {k: v for k, v in seed.items() if k not in ("model", "prompt")}
    request = build_request(seed["model"], seed["prompt"], catalog=CATALOG, **fields)
    body = oai.encode_request(request)
    assert body == seed
    assert list(body) == list(seed)
    assert json.dumps(body, ensure_ascii=False) == json.dumps(seed, ensure_ascii=False)


@pytest.mark.parametrize(
    ("size", "sent"),
    [("1920x1080", "1920x1080"), ("1920*1080", "1920*1080"), ("4k", "4K"), ("16:9", "2560*1440")],
)
def test_size_notation(size: str, sent: str) -> None:
    request = build_request("wan2.7-image-pro", "p", size=size, catalog=CATALOG)
    assert oai.encode_request(request)["size"] == sent


def test_response_format_only_when_asked_and_upstream_model_name() -> None:
    request = build_request("wan2.7-image-pro", "p", n=2, catalog=CATALOG)
    assert "response_format" not in oai.encode_request(request)
    body = oai.encode_request(request, model_name="wan-pro-alias", response_format="b64_json")
    assert body == {"model": "wan-pro-alias", "prompt": "p", "n": 2, "response_format": "b64_json"}
    with pytest.raises(ValidationError) as info:
        oai.encode_request(request, response_format="png")
    assert info.value.field == "response_format"


def test_fields_outside_the_seed_schema_are_sent_last_never_dropped() -> None:
    request = build_request(
        "wan2.6-t2i", "p", size="1280*1280", negative_prompt="blur", prompt_extend=False, seed=1,
        extra={"parameters": {"x": 1}}, catalog=CATALOG,
    )  # fmt: skip
    body = oai.encode_request(request)
    assert list(body) == [
        "model", "prompt", "size", "seed", "negative_prompt", "prompt_extend", "parameters",
    ]  # fmt: skip
    with pytest.raises(ValidationError) as info:
        oai.encode_request(request.with_(reference_images=("https://x/y.png",)))
    assert info.value.field == "reference_images"


# ----------------------------------------------------------------------------- decode_response


def test_decode_seed_response() -> None:
    state = oai.decode_response(SEED_RESPONSE, request_id="req-1")
    assert state.status is TaskStatus.SUCCEEDED
    assert state.task_id == "req-1"
    assert [image.url for image in state.images] == [SEED_RESPONSE["data"][0]["url"]]
    assert state.images[0].actual_prompt is None
    assert state.usage is not None and state.usage.image_count == 1
    synthetic = oai.decode_response(SEED_RESPONSE)
    assert synthetic.task_id.startswith("oai-") and synthetic.task_id != state.task_id


def test_decode_b64_and_partial_batch() -> None:
    b64 = base64.b64encode(PNG).decode()
    body = {"created": 1, "data": [{"b64_json": b64, "revised_prompt": "a red rose"}]}
    state = oai.decode_response(body, expected_n=3)
    assert state.status is TaskStatus.SUCCEEDED
    assert state.images[0].data == PNG and state.images[0].actual_prompt == "a red rose"
    assert [image.error_code for image in state.images] == [None, "IMAGE_MISSING", "IMAGE_MISSING"]
    assert state.warnings == ("the upstream returned 1 of 3 requested images",)
    assert state.raw is not None and b64 not in json.dumps(state.raw)


def test_decode_failures() -> None:
    failed = oai.decode_response(
        {"error": {"message": "bad", "type": "ali_error", "param": "", "code": "InternalError"}}
    )
    assert failed.status is TaskStatus.FAILED and failed.error is not None
    assert failed.error.code == "InternalError"
    empty = oai.decode_response({"created": 1, "data": []})
    assert empty.status is TaskStatus.FAILED and empty.error is not None
    with pytest.raises(UpstreamError):
        oai.decode_response({"created": 1})
    with pytest.raises(UpstreamError, match=r"data\[0\]\.b64_json"):
        oai.decode_response({"created": 1, "data": [{"b64_json": "%%%"}]})


# ----------------------------------------------------------------------------- decode_error


def test_decode_seed_error_example() -> None:
    for status in (400, 500):  # the page does not show the status; it labels it a server error
        error = oai.decode_error(status, SEED_ERROR)
        assert type(error) is InvalidRequest
        assert error.field == "response_format"
        assert error.vendor_code == "invalid_request"
        assert error.request_id == "20260507163239913971004ZVwereT"
        assert error.http_status == status
        assert "(request id" not in error.message


def _err(message: str, kind: str | None, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@pytest.mark.parametrize(
    ("status", "body", "cls", "field", "vendor_code"),
    [
        (400, _err("size bad", "invalid_request_error", "size", "invalid_value"),
         ValidationError, "size", "invalid_value"),
        (400, _err("Your request was rejected as a result of our safety system.",
                   "invalid_request_error", None, None), ContentRejected, None,
         "invalid_request_error"),
        (400, _err("x", "invalid_request_error", None, "content_policy_violation"),
         ContentRejected, None, "content_policy_violation"),
        (200, _err("Inappropriate content", "ali_error", "", "DataInspectionFailed"),
         ContentRejected, None, "DataInspectionFailed"),
        (401, _err("Incorrect API key", "invalid_request_error", None, "invalid_api_key"),
         AuthError, None, "invalid_api_key"),
        (403, _err("no access", "new_api_error", None, "access_denied"),
         PermissionDenied, None, "access_denied"),
        (429, _err("You exceeded your current quota", "insufficient_quota", None,
                   "insufficient_quota"), PermissionDenied, None, "insufficient_quota"),
        (404, _err("The model `x` does not exist", "invalid_request_error", "model",
                   "model_not_found"), UnknownModel, "model", "model_not_found"),
        (503, {"error": {"message": "无可用渠道", "type": "new_api_error",
                         "code": "model_not_found"}}, UnknownModel, "model", "model_not_found"),
        (404, "404 page not found", NotConfigured, None, None),
        (500, _err("The server had an error", "server_error", None, None),
         UpstreamError, None, "server_error"),
        (502, "<html>Bad Gateway</html>", UpstreamError, None, None),
        (503, None, UpstreamError, None, None),
    ],
)  # fmt: skip
def test_status_maps_to_error_class(
    status: int, body: Any, cls: type, field: str | None, vendor_code: str | None
) -> None:
    error = oai.decode_error(status, body, {"X-Request-Id": "rid-9"})
    assert type(error) is cls
    assert error.field == field
    assert error.vendor_code == vendor_code
    assert error.request_id == "rid-9" and error.http_status == status
    assert error.message


def test_rate_limit_retry_after() -> None:
    body = _err("Rate limit reached", "rate_limit_error", None, "rate_limit_exceeded")
    error = oai.decode_error(429, body, {"Retry-After": "3"})
    assert isinstance(error, RateLimited) and error.retry_after == 3
    error = oai.decode_error(429, body, {"retry-after-ms": "250"})
    assert isinstance(error, RateLimited) and error.retry_after == 0.25
    error = oai.decode_error(429, b"slow down")
    assert isinstance(error, RateLimited) and error.retry_after is None
    assert error.message == "slow down"


# ----------------------------------------------------------------------------- server side


def test_decode_body_defaults_and_accepted_fields() -> None:
    request, fmt = oai_server.decode_body({"model": "wan2.7-image-pro", "prompt": "p"}, CATALOG)
    assert (request.n, request.size, fmt) == (1, None, "url")
    request, fmt = oai_server.decode_body(
        json.dumps({
            "model": "wanx2.1-t2i-plus", "prompt": "p", "size": "1024x768", "n": 2,
            "response_format": "b64_json", "seed": 7, "watermark": True,
            "negative_prompt": "blur", "prompt_extend": False, "user": "u-1",
            "safety_identifier": "h", "quality": "auto", "style": None, "background": "opaque",
            "moderation": "auto", "stream": False, "output_compression": 100,
        }).encode(),
        CATALOG,
    )  # fmt: skip
    assert request.model == "wan2.1-t2i-plus" and fmt == "b64_json"
    assert (request.size.width, request.size.height) if request.size else None == (1024, 768)
    assert (request.n, request.seed, request.watermark) == (2, 7, True)
    assert (request.negative_prompt, request.prompt_extend, request.quality) == (
        "blur",
        False,
        None,
    )
    request, _ = oai_server.decode_body(
        {"model": "wan2.2-t2i", "prompt": "p", "quality": "pro", "size": "16:9"}, CATALOG
    )
    assert request.quality == "pro" and request.size is not None and request.size.width == 1280


@pytest.mark.parametrize(
    ("body", "cls", "field", "words"),
    [
        ([1, 2], InvalidRequest, None, "JSON object"),
        (b"{nope", InvalidRequest, None, "not valid JSON"),
        ({"model": "wan2.7-image-pro"}, InvalidRequest, "prompt", "required"),
        ({"prompt": "p"}, InvalidRequest, "model", "required"),
        ({"model": "wan2.7-image-pro", "prompt": 5}, InvalidRequest, "prompt", "string"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "n": "2"}, InvalidRequest, "n", "integer"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "watermark": "no"}, InvalidRequest,
         "watermark", "true or false"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "foo": 1, "bar": 2}, InvalidRequest, "foo",
         "unknown parameters foo, bar"),
        ({"model": "dall-e-3", "prompt": "p"}, UnknownModel, "model", "dall-e-3"),
        ({"model": "wan2.7-image-pro", "prompt": ""}, ValidationError, "prompt", "empty"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "n": 5}, ValidationError, "n", "1 to 4"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "size": "512x512"}, ValidationError, "size",
         "768*768"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "seed": -1}, ValidationError, "seed", "0"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "negative_prompt": "x"}, ValidationError,
         "negative_prompt", "not a parameter"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "response_format": "png"}, ValidationError,
         "response_format", "url or b64_json"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "style": "vivid"}, ValidationError, "style",
         "not supported"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "quality": "hd"}, ValidationError, "quality",
         "not supported"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "background": "transparent"},
         ValidationError, "background", "auto, opaque"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "stream": True}, ValidationError, "stream",
         "not supported"),
        ({"model": "wan2.7-image-pro", "prompt": "p", "output_format": "webp"}, ValidationError,
         "output_format", "not supported"),
        ({"model": "wan2.2-t2i", "prompt": "p", "size": "21:9"}, ValidationError, "size", "21:9"),
        ({"model": "wan2.2-t2i", "prompt": "p", "quality": "hd"}, ValidationError, "quality",
         "std, pro"),
    ],
)  # fmt: skip
def test_decode_body_errors_name_the_param(
    body: Any, cls: type, field: str | None, words: str
) -> None:
    with pytest.raises(ImagegateError) as info:
        oai_server.decode_body(body, CATALOG)
    assert type(info.value) is cls
    assert info.value.field == field
    assert words in info.value.message
    if field:
        assert field in info.value.message


@pytest.mark.parametrize(
    ("error", "status", "kind", "code", "param", "back"),
    [
        (InvalidRequest("prompt must be a string", field="prompt"), 400,
         "invalid_request_error", "invalid_request", "prompt", InvalidRequest),
        (ValidationError("n is 9", field="n"), 400, "invalid_request_error",
         "invalid_parameter", "n", ValidationError),
        (UnknownModel("no such model"), 404, "invalid_request_error", "model_not_found", "model",
         UnknownModel),
        (AuthError("bad key"), 401, "invalid_request_error", "invalid_api_key", None, AuthError),
        (PermissionDenied("not for this key"), 403, "permission_error", "permission_denied", None,
         PermissionDenied),
        (RateLimited("slow", retry_after=2), 429, "rate_limit_error", "rate_limit_exceeded", None,
         RateLimited),
        (ContentRejected("unsafe"), 400, "invalid_request_error", "content_policy_violation",
         None, ContentRejected),
        (UpstreamError("boom"), 500, "server_error", "upstream_error", None, UpstreamError),
        (TaskNotFound("task x does not exist"), 404, "invalid_request_error", "task_not_found",
         None, NotConfigured),
        (Timeout("still running"), 504, "server_error", "timeout", None, UpstreamError),
    ],
)  # fmt: skip
def test_encode_error_table(
    error: ImagegateError, status: int, kind: str, code: str, param: str | None, back: type
) -> None:
    got_status, body = oai_server.encode_error(error, "req-42")
    assert got_status == status
    assert body["error"] == {
        "message": f"{error.message} (request id: req-42)",
        "type": kind,
        "param": param,
        "code": code,
    }
    # what our own adapter makes of it when another imagegate is its upstream
    read = oai.decode_error(status, body)
    assert type(read) is back
    assert read.request_id == "req-42" and error.message in read.message


def test_error_headers_and_models() -> None:
    assert oai_server.error_headers(RateLimited("x", retry_after=30), "r") == {
        "x-request-id": "r",
        "Retry-After": "8",
    }
    assert oai_server.error_headers(RateLimited("x", retry_after=0.2), "r")["Retry-After"] == "1"
    assert oai_server.error_headers(AuthError("x"), "r") == {"x-request-id": "r"}
    listing = oai_server.encode_models(CATALOG, 1700000000)
    assert listing["object"] == "list"
    assert [item["id"] for item in listing["data"]] == CATALOG.names()
    assert listing["data"][0] == {
        "id": "wan2.6-t2i",
        "object": "model",
        "created": 1700000000,
        "owned_by": "alibaba",
    }


# ----------------------------------------------------------------------------- with the SDK


def _sdk_app() -> tuple[FastAPI, list[Any]]:
    """A minimal front on the codec, to see what the official SDK sends and reads back."""
    app, seen = FastAPI(), []

    @app.post("/v1/images/generations")
    async def generate(request: Request) -> JSONResponse:
        raw = await request.body()
        seen.append(json.loads(raw))
        try:
            parsed, fmt = oai_server.decode_body(raw, CATALOG)
        except ImagegateError as error:
            status, body = oai_server.encode_error(error, "rid-1")
            return JSONResponse(body, status, headers=oai_server.error_headers(error, "rid-1"))
        n = parsed.n or 1
        task = Task(id="t1", model=parsed.model, request=parsed, status=TaskStatus.SUCCEEDED)
        task.images = [ImageResult(actual_prompt=f"rev {i}") for i in range(n)]
        b64 = base64.b64encode(PNG).decode()
        pairs = [
            (None, b64) if fmt == "b64_json" else (f"http://x/{i}.png", None) for i in range(n)
        ]
        return JSONResponse(oai_server.encode_response(task, pairs))

    return app, seen


def test_official_sdk_round_trip() -> None:
    app, seen = _sdk_app()
    with serve(app) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
        result = client.images.generate(
            model="wan2.7-image-pro",
            prompt="a red rose",
            size="1024x1024",
            n=2,
            response_format="b64_json",
            extra_body={"seed": 7, "watermark": False},
        )
        assert seen[-1] == {
            "model": "wan2.7-image-pro", "prompt": "a red rose", "n": 2,
            "response_format": "b64_json", "size": "1024x1024", "seed": 7, "watermark": False,
        }  # fmt: skip
        assert result.data is not None and len(result.data) == 2
        assert base64.b64decode(result.data[0].b64_json or "") == PNG
        assert result.data[1].revised_prompt == "rev 1"
        url = client.images.generate(model="wan2.7-image-pro", prompt="p", user="u")
        assert url.data is not None and url.data[0].url == "http://x/0.png"
        with pytest.raises(openai.BadRequestError) as bad:
            client.images.generate(model="wan2.7-image-pro", prompt="p", size="100x100")
        assert bad.value.param == "size" and bad.value.code == "invalid_parameter"
        with pytest.raises(openai.NotFoundError) as missing:
            client.images.generate(model="dall-e-3", prompt="p")
        assert missing.value.code == "model_not_found"
        assert missing.value.response.headers["x-request-id"] == "rid-1"


async def test_official_async_sdk_round_trip() -> None:
    app, _ = _sdk_app()
    with serve(app) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0)
        result = await client.images.generate(model="wan2.7-image-pro", prompt="p", n=3)
        assert result.data is not None and [d.url for d in result.data] == [
            "http://x/0.png", "http://x/1.png", "http://x/2.png",
        ]  # fmt: skip
        with pytest.raises(openai.BadRequestError) as bad:
            await client.images.generate(model="wan2.7-image-pro", prompt="p", style="vivid")
        assert bad.value.param == "style"
        await client.close()
