"""The DashScope codec with plain values: seed bodies byte for byte, answers, errors, shapes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from imagegate.catalog import build_request, load_catalog
from imagegate.errors import (
    AuthError,
    ContentRejected,
    ImagegateError,
    InvalidRequest,
    NotConfigured,
    PermissionDenied,
    RateLimited,
    TaskFailed,
    TaskNotFound,
    Timeout,
    UnknownModel,
    UnsupportedOperation,
    UpstreamError,
    ValidationError,
)
from imagegate.protocols import dashscope as ds
from imagegate.protocols import dashscope_server as server
from imagegate.protocols.dashscope_errors import decode_error
from imagegate.types import (
    GenerationRequest,
    ImageResult,
    SizeSpec,
    Task,
    TaskError,
    TaskStatus,
    Usage,
)

SEEDS = Path("/work/shared/seeds")
CATALOG = load_catalog()
PROMPT = "A flower shop with exquisite windows, a beautiful wooden door, and flowers on display"

# The request bodies of seeds 001 and 002, exactly as their curl examples send them.
SEED_001_BODY = """{
  "model": "wan2.6-t2i",
  "input": {
    "messages": [
      {
        "role": "user",
        "content": [
          {
            "text": "PROMPT"
          }
        ]
      }
    ]
  },
  "parameters": {
    "prompt_extend": true,
    "watermark": false,
    "n": 1,
    "negative_prompt": "",
    "size": "1280*1280"
  }
}""".replace("PROMPT", PROMPT)
SEED_002_BODY = "\n".join(line.strip() for line in SEED_001_BODY.splitlines())
SEED_001_ANSWER = (
    '{"request_id": "<string>", "output": {"task_id": "<string>", "task_status": "PENDING"}}'
)
SEED_002_ANSWER = """{
"output": {"choices": [{"finish_reason": "stop", "message": {"content": [{
"image": "https://dashscope-463f.oss-accelerate.aliyuncs.com/xxxx.png?Expires=xxx",
"type": "image"}], "role": "assistant"}}], "finished": true},
"usage": {"image_count": 1, "input_tokens": 0, "output_tokens": 0, "size": "1280*1280",
"total_tokens": 0},
"request_id": "815505c6-7c3d-49d7-b197-xxxxxx"}"""


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _seed_text(number: str) -> str:
    found = sorted(SEEDS.glob(f"{number}_*.txt"))
    if not found:
        pytest.skip("seed pages not present")
    return found[0].read_text("utf-8")


def seed_request() -> GenerationRequest:
    return GenerationRequest(
        model="wan2.6-t2i",
        prompt=PROMPT,
        negative_prompt="",
        n=1,
        size=SizeSpec(1280, 1280, "1280*1280"),
        prompt_extend=True,
        watermark=False,
    )


def _keys(value: Any) -> Any:
    """Every key of a JSON value, in order, recursively (for key-order comparisons)."""
    if isinstance(value, dict):
        return [(key, _keys(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [_keys(item) for item in value]
    return None


# --------------------------------------------------------------------------- seed bodies


@pytest.mark.parametrize(("number", "body"), [("001", SEED_001_BODY), ("002", SEED_002_BODY)])
def test_seed_bodies_are_copied_verbatim(number: str, body: str) -> None:
    assert body in _seed_text(number)


@pytest.mark.parametrize("body", [SEED_001_BODY, SEED_002_BODY])
def test_encode_reproduces_seed_body_byte_for_byte(body: str) -> None:
    encoded = ds.encode_request(seed_request(), "generation")
    seed = json.loads(body)
    assert encoded == seed
    assert _keys(encoded) == _keys(seed)
    assert json.dumps(encoded, ensure_ascii=False, indent=2) == SEED_001_BODY


def test_seed_body_decodes_and_round_trips() -> None:
    request = server.decode_generation_body(json.loads(SEED_001_BODY), CATALOG)
    assert request == seed_request().with_(size=request.size)
    assert request.size is not None and request.size.star == "1280*1280"
    assert json.dumps(ds.encode_request(request, "dashscope-generation"), indent=2) == (
        SEED_001_BODY
    )


def test_encode_sends_only_set_fields_and_overrides_the_model() -> None:
    request = GenerationRequest(model="wan2.6-t2i", prompt="cat", seed=7)
    body = ds.encode_request(request, "generation", model_name="wan2.6-t2i-upstream")
    assert body == {
        "model": "wan2.6-t2i-upstream",
        "input": {"messages": [{"role": "user", "content": [{"text": "cat"}]}]},
        "parameters": {"seed": 7},
    }


def test_encode_legacy_puts_negative_prompt_in_input_and_keeps_order() -> None:
    request = build_request(
        "wan2.2-t2i-flash",
        "a fox",
        negative_prompt="blurry",
        size="1024x768",
        n=2,
        seed=42,
        prompt_extend=False,
        watermark=True,
    )
    body = ds.encode_request(request, "synthesis")
    assert list(body) == ["model", "input", "parameters"]
    assert body["input"] == {"prompt": "a fox", "negative_prompt": "blurry"}
    assert list(body["parameters"].items()) == [
        ("prompt_extend", False),
        ("watermark", True),
        ("n", 2),
        ("size", "1024*768"),
        ("seed", 42),
    ]


def test_encode_passthrough_is_explicit_and_endpoint_is_checked() -> None:
    request = GenerationRequest(
        model="wan2.2-t2i-flash",
        prompt="x",
        extra={"dashscope": {"parameters": {"style": "<anime>"}}},
    )
    assert ds.encode_request(request, "synthesis")["parameters"] == {"style": "<anime>"}
    with pytest.raises(ValueError, match="not a DashScope endpoint"):
        ds.encode_request(request, "chanjing-task")


def test_paths() -> None:
    assert ds.submit_path("generation") == "/services/aigc/image-generation/generation"
    assert ds.submit_path("generation", sync=True) == (
        "/services/aigc/multimodal-generation/generation"
    )
    assert ds.submit_path("dashscope-synthesis") == "/services/aigc/text2image/image-synthesis"
    assert ds.task_path("abc") == "/tasks/abc"
    assert ds.cancel_path("a/b") == "/tasks/a%2Fb/cancel"
    assert ds.PATH_TASKS == "/tasks"


# --------------------------------------------------------------------------- answers


def test_decode_seed_answers() -> None:
    submitted = ds.decode_submit(json.loads(SEED_001_ANSWER))
    assert (submitted.task_id, submitted.status, submitted.request_id) == (
        "<string>",
        TaskStatus.PENDING,
        "<string>",
    )
    assert _squash(SEED_002_ANSWER) in _squash(_seed_text("002"))
    state = ds.decode_sync(json.loads(SEED_002_ANSWER))
    assert state.status is TaskStatus.SUCCEEDED
    assert [image.url for image in state.images] == [
        "https://dashscope-463f.oss-accelerate.aliyuncs.com/xxxx.png?Expires=xxx"
    ]
    assert state.usage == Usage(image_count=1, size="1280*1280")
    assert state.request_id == state.task_id == "815505c6-7c3d-49d7-b197-xxxxxx"


LEGACY_DONE = {
    "request_id": "f767d108",
    "output": {
        "task_id": "d492bffd",
        "task_status": "SUCCEEDED",
        "submit_time": "2025-01-08 16:03:59.840",
        "scheduled_time": "2025-01-08 16:03:59.863",
        "end_time": "2025-01-08 16:04:10.660",
        "results": [
            {"orig_prompt": "cat", "actual_prompt": "a fluffy cat", "url": "https://r/1.png"},
            {"code": "DataInspectionFailed", "message": "Output data may be inappropriate."},
        ],
        "task_metrics": {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1},
    },
    "usage": {"image_count": 1},
}


def test_decode_legacy_task_with_partial_failure() -> None:
    state = ds.decode_task(LEGACY_DONE)
    assert (state.task_id, state.status, state.request_id) == (
        "d492bffd",
        TaskStatus.SUCCEEDED,
        "f767d108",
    )
    good, bad = state.images
    assert (good.url, good.actual_prompt, good.metadata) == (
        "https://r/1.png",
        "a fluffy cat",
        {"orig_prompt": "cat"},
    )
    assert (bad.ok, bad.error_code, bad.error_message) == (
        False,
        "DataInspectionFailed",
        "Output data may be inappropriate.",
    )
    assert state.usage == Usage(image_count=1)
    assert state.warnings and "DataInspectionFailed" in state.warnings[0]


def test_decode_wan26_task_pending_failed_unknown() -> None:
    done = ds.decode_task(
        {
            "request_id": "r",
            "output": {
                "task_id": "t",
                "task_status": "SUCCEEDED",
                "finished": True,
                "choices": [
                    {"message": {"content": [{"image": f"https://r/{i}.png", "type": "image"}]}}
                    for i in range(2)
                ],
            },
            "usage": {"size": "1376*768", "image_count": 2},
        }
    )
    assert [image.url for image in done.images] == ["https://r/0.png", "https://r/1.png"]
    assert done.usage == Usage(2, "1376*768")
    pending = ds.decode_task({"output": {"task_id": "t", "task_status": "RUNNING"}, "usage": {}})
    assert (pending.status, pending.images, pending.usage) == (TaskStatus.RUNNING, (), None)
    failed = ds.decode_task(
        {
            "output": {
                "task_id": "t",
                "task_status": "FAILED",
                "code": "InternalError.Algo",
                "message": "Algorithm process error.",
            }
        }
    )
    assert failed.error == TaskError("InternalError.Algo", "Algorithm process error.")
    unknown = ds.decode_task({"output": {"task_id": "zz", "task_status": "UNKNOWN"}})
    assert unknown.status is TaskStatus.UNKNOWN and unknown.error is not None
    assert ds.decode_task({"output": {"task_id": "t", "task_status": "SUSPENDED"}}).status is (
        TaskStatus.PENDING
    )


@pytest.mark.parametrize(
    "body",
    [None, "html", [], {"output": "x"}, {"output": {"task_id": "t", "task_status": "WEIRD"}}],
)
def test_unreadable_answers_are_upstream_errors(body: Any) -> None:
    with pytest.raises(UpstreamError):
        ds.decode_task(body)


def test_submit_without_task_id_and_200_with_code() -> None:
    with pytest.raises(UpstreamError, match="task_id"):
        ds.decode_submit({"output": {"task_status": "PENDING"}})
    with pytest.raises(ValidationError) as caught:
        ds.decode_submit({"request_id": "r9", "code": "InvalidParameter", "message": "bad n"})
    assert (caught.value.vendor_code, caught.value.request_id) == ("InvalidParameter", "r9")


# --------------------------------------------------------------------------- errors in


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, "InvalidParameter", "n out of range", ValidationError),
        (400, "InvalidParameter", "Model not exist.", UnknownModel),
        (400, "InvalidParameter.DataInspection", "format", ValidationError),
        (400, "BadRequest.EmptyInput", "input missing", ValidationError),
        (400, "BadRequest.EmptyModel", "model missing", ValidationError),
        (413, "BadRequest.TooLarge", "too large", InvalidRequest),
        (400, "InvalidURL", "bad url", ValidationError),
        (400, "DataInspectionFailed", "inappropriate", ContentRejected),
        (400, "Arrearage", "overdue", PermissionDenied),
        (400, "UnsupportedOperation", "only PENDING", UnsupportedOperation),
        (401, "InvalidApiKey", "Invalid API-key provided.", AuthError),
        (403, "AccessDenied", "denied", PermissionDenied),
        (403, "AccessDenied.Unpurchased", "not activated", PermissionDenied),
        (408, "RequestTimeOut", "timeout", Timeout),
        (429, "Throttling", "slow down", RateLimited),
        (429, "Throttling.RateQuota", "rate", RateLimited),
        (429, "Throttling.AllocationQuota", "quota", RateLimited),
        (500, "InternalError", "oops", UpstreamError),
        (500, "InternalError.Algo", "algo", UpstreamError),
        (503, None, "", UpstreamError),
        (429, None, "", RateLimited),
        (401, None, "", AuthError),
        (404, "SomethingNew", "?", InvalidRequest),
    ],
)
def test_decode_error_maps_every_code(
    status: int, code: str | None, message: str, expected: type[ImagegateError]
) -> None:
    body = {"request_id": "req-1", "code": code, "message": message}
    error = decode_error(status, body)
    assert type(error) is expected
    assert (error.vendor_code, error.request_id, error.http_status) == (code, "req-1", status)
    assert message in error.message


def test_decode_error_retry_after_and_odd_bodies() -> None:
    throttled = decode_error(
        429, b'{"code": "Throttling.RateQuota", "message": "m"}', {"Retry-After": "3"}
    )
    assert isinstance(throttled, RateLimited) and throttled.retry_after == 3.0
    html = decode_error(502, "<html>Bad Gateway</html>", {"x-request-id": "gw-7"})
    assert isinstance(html, UpstreamError) and "Bad Gateway" in html.message
    assert html.request_id == "gw-7"
    assert isinstance(decode_error(500, None), UpstreamError)
    assert isinstance(decode_error(400, b"\xff\xfe not json"), InvalidRequest)
    assert "region" in decode_error(401, {"code": "InvalidApiKey"}).message


# --------------------------------------------------------------------------- errors out


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (InvalidRequest("body is not JSON"), 400, "InvalidParameter"),
        (ValidationError("parameters.n is 9", field="parameters.n"), 400, "InvalidParameter"),
        (UnknownModel("model 'x' does not exist"), 400, "InvalidParameter"),
        (AuthError("no key"), 401, "InvalidApiKey"),
        (PermissionDenied("not for this key"), 403, "AccessDenied"),
        (RateLimited("slow", retry_after=2.5), 429, "Throttling.RateQuota"),
        (ContentRejected("nope"), 400, "DataInspectionFailed"),
        (UpstreamError("boom"), 500, "InternalError"),
        (UnsupportedOperation("only PENDING"), 400, "UnsupportedOperation"),
        (Timeout("waited"), 408, "RequestTimeOut"),
        (InvalidRequest("body too big", http_status=413), 413, "BadRequest.TooLarge"),
        (TaskNotFound("no such task"), 400, "InvalidParameter"),
        (NotConfigured("no credentials"), 500, "InternalError"),
        (TaskFailed("algo", vendor_code="InternalError.Algo"), 500, "InternalError.Algo"),
        (ImagegateError("?"), 500, "InternalError"),
    ],
)
def test_encode_error_follows_the_rulings_table(
    error: ImagegateError, status: int, code: str
) -> None:
    got_status, body = server.encode_error(error, "rid-1")
    assert (got_status, body["code"], body["request_id"]) == (status, code, "rid-1")
    assert list(body) == ["request_id", "code", "message"]
    assert error.message in body["message"]


def test_encode_error_details() -> None:
    _, body = server.encode_error(UnknownModel("model 'x' does not exist"), "r")
    assert body["message"].startswith("Model not exist.")
    assert server.error_headers(RateLimited("x", retry_after=2.5)) == {"Retry-After": "3"}
    assert server.error_headers(RateLimited("x", retry_after=60)) == {"Retry-After": "8"}
    assert server.error_headers(RateLimited("x")) == {"Retry-After": "1"}
    assert server.error_headers(UpstreamError("x")) == {}


def test_task_error_uses_the_vendor_code() -> None:
    task = Task("t", "wan2.6-t2i", seed_request(), status=TaskStatus.FAILED)
    task.error = TaskError("DataInspectionFailed", "inappropriate")
    assert isinstance(server.task_error(task), ContentRejected)
    task.error = TaskError("InternalError.Algo", "algo")
    failed = server.task_error(task)
    assert isinstance(failed, TaskFailed) and server.encode_error(failed, "r")[1]["code"] == (
        "InternalError.Algo"
    )


# --------------------------------------------------------------------------- server decode


def _generation(**parameters: Any) -> dict[str, Any]:
    return {
        "model": "wan2.6-t2i",
        "input": {"messages": [{"role": "user", "content": [{"text": "a cat"}]}]},
        "parameters": parameters,
    }


def _synthesis(model: str = "wan2.2-t2i-flash", **parameters: Any) -> dict[str, Any]:
    return {"model": model, "input": {"prompt": "a cat"}, "parameters": parameters}


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        ([1, 2], InvalidRequest, "body"),
        ("text", InvalidRequest, "body"),
        ({"input": {}}, InvalidRequest, "model"),
        ({"model": "wan2.6-t2i"}, InvalidRequest, "input"),
        ({"model": "wan2.6-t2i", "input": {}}, InvalidRequest, "input.messages"),
        ({"model": "wan2.6-t2i", "input": {"messages": []}}, InvalidRequest, "input.messages"),
        (
            {"model": "wan2.6-t2i", "input": {"messages": [{"role": "user", "content": [{}]}]}},
            InvalidRequest,
            "input.messages[0].content",
        ),
        (
            {"model": "wan2.6-t2i", "input": {"messages": [{"content": [{"text": 5}]}]}},
            InvalidRequest,
            "input.messages[0].content[0].text",
        ),
        (
            {"model": "wan2.6-t2i", "input": {"messages": [{"role": "system", "content": "x"}]}},
            InvalidRequest,
            "input.messages",
        ),
        (_generation(n="2"), InvalidRequest, "parameters.n"),
        (_generation(watermark="yes"), InvalidRequest, "parameters.watermark"),
        ({**_generation(), "parameters": [1]}, InvalidRequest, "parameters"),
        ({**_generation(), "model": "wan9"}, UnknownModel, "model"),
        (_generation(n=5), ValidationError, "parameters.n"),
        (_generation(size="512*512"), ValidationError, "parameters.size"),
        (_generation(seed=-1), ValidationError, "parameters.seed"),
        (_generation(negative_prompt="x" * 501), ValidationError, "parameters.negative_prompt"),
        (_generation(style="<anime>"), ValidationError, "parameters.style"),
    ],
)
def test_generation_body_errors_name_the_field(
    body: Any, error: type[ImagegateError], field: str
) -> None:
    with pytest.raises(error) as caught:
        server.decode_generation_body(body, CATALOG)
    assert type(caught.value) is error
    assert caught.value.field == field
    assert field in caught.value.message


def test_unknown_model_says_model_not_exist() -> None:
    with pytest.raises(UnknownModel, match=r"Model not exist\."):
        server.decode_synthesis_body(_synthesis("nope"), CATALOG)


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        ({"model": "wan2.2-t2i-flash", "input": {}}, InvalidRequest, "input.prompt"),
        ({"model": "wan2.2-t2i-flash", "input": {"prompt": ""}}, ValidationError, "input.prompt"),
        (
            {"model": "wan2.2-t2i-flash", "input": {"prompt": "x" * 501}},
            ValidationError,
            "input.prompt",
        ),
        (
            {"model": "wan2.2-t2i-flash", "input": {"prompt": "x", "negative_prompt": 3}},
            InvalidRequest,
            "input.negative_prompt",
        ),
        (
            {"model": "wan2.2-t2i-flash", "input": {"prompt": "x", "ref_img": "https://r/1.png"}},
            ValidationError,
            "input.ref_img",
        ),
        (_synthesis(size="2000*1000"), ValidationError, "parameters.size"),
        (_synthesis(n=0), ValidationError, "parameters.n"),
        (_synthesis(ref_strength=0.5), ValidationError, "parameters.ref_strength"),
    ],
)
def test_synthesis_body_errors_name_the_field(
    body: Any, error: type[ImagegateError], field: str
) -> None:
    with pytest.raises(error) as caught:
        server.decode_synthesis_body(body, CATALOG)
    assert type(caught.value) is error
    assert caught.value.field == field
    assert caught.value.message.startswith(field)


# Bodies the official dashscope SDK 2.0.2 sent to a loopback server (1.x and 2.x clients).
SDK_BODIES = [
    ("synthesis", {"model": "wan2.2-t2i-flash", "parameters": {}, "input": {"prompt": "a cat"}}),
    (
        "synthesis",
        {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "hi"}},
    ),
    (
        "synthesis",
        {
            "model": "wan2.2-t2i-flash",
            "input": {"prompt": "a cat"},
            "parameters": {"size": "1024*1024", "n": 1, "style": "<auto>"},
        },
    ),
    (
        "generation",
        {
            "model": "wan2.6-t2i",
            "parameters": {"negative_prompt": "x", "is_async": True},
            "input": {"messages": [{"role": "user", "content": [{"text": "a cat"}]}]},
        },
    ),
    (
        "generation",
        {
            "model": "wan2.6-t2i",
            "input": {"messages": [{"role": "user", "content": [{"text": "a cat"}]}]},
            "parameters": {"n": 1, "size": "1280*1280", "seed": None},
        },
    ),
    ("generation", {"model": "wan2.6-t2i", "input": {"messages": [{"content": "a cat"}]}}),
]


@pytest.mark.parametrize(("kind", "body"), SDK_BODIES)
def test_sdk_bodies_are_accepted(kind: str, body: dict[str, Any]) -> None:
    decode = server.decode_generation_body if kind == "generation" else server.decode_synthesis_body
    request = decode(body, CATALOG)
    assert request.prompt in ("a cat", "hi")
    assert server.ignored_fields(body) == []


def test_alias_names_resolve_and_unknown_keys_are_listed() -> None:
    request = server.decode_synthesis_body(_synthesis("wanx2.1-t2i-plus", size="16:9"), CATALOG)
    assert request.model == "wan2.1-t2i-plus"
    assert request.size is not None and request.size.star == "1280*720"
    body = {
        **_generation(foo=1, bar=None),
        "resources": [1],
        "input": {
            "messages": [{"role": "user", "content": [{"text": "a"}, {"text": "b"}]}],
            "x": 2,
        },
    }
    assert server.decode_generation_body(body, CATALOG).prompt == "a\nb"
    assert server.ignored_fields(body) == ["resources", "input.x", "parameters.foo"]


# --------------------------------------------------------------------------- server encode


SUBMITTED = datetime(2025, 1, 8, 8, 3, 59, 840000, tzinfo=UTC)


def _task(front: str, status: TaskStatus = TaskStatus.SUCCEEDED, **changes: Any) -> Task:
    task = Task(
        "task-1",
        "wan2.6-t2i",
        seed_request().with_(n=2),
        status=status,
        submit_time=SUBMITTED,
        front=front,
    )
    if status.is_terminal:
        task.scheduled_time = SUBMITTED.replace(microsecond=863000)
        task.end_time = SUBMITTED.replace(minute=4, second=10, microsecond=660000)
    for key, value in changes.items():
        setattr(task, key, value)
    return task


def test_format_time_in_shanghai() -> None:
    assert server.format_time(SUBMITTED) == "2025-01-08 16:03:59.840"
    assert server.format_time(SUBMITTED, "UTC") == "2025-01-08 08:03:59.840"
    assert server.format_time(datetime(2025, 1, 8, 8, 3, 59)) == "2025-01-08 16:03:59.000"
    assert server.format_time(None) is None


def test_encode_submit_and_unknown() -> None:
    task = _task("dashscope-synthesis", TaskStatus.PENDING)
    assert server.encode_submit(task, "r") == {
        "request_id": "r",
        "output": {"task_id": "task-1", "task_status": "PENDING"},
    }
    assert server.encode_unknown_task("zz", "r") == {
        "request_id": "r",
        "output": {"task_id": "zz", "task_status": "UNKNOWN"},
    }


def test_encode_task_legacy_shape_with_partial_failure() -> None:
    images = [
        ImageResult(url="https://up/1.png", actual_prompt="a lovely shop"),
        ImageResult(error_code="DataInspectionFailed", error_message="inappropriate"),
    ]
    body = server.encode_task(
        _task("dashscope-synthesis", images=images), "r", ["https://gw/1.png"]
    )
    assert list(body) == ["request_id", "output", "usage"]
    output = body["output"]
    assert list(output) == [
        "task_id",
        "task_status",
        "submit_time",
        "scheduled_time",
        "end_time",
        "results",
        "task_metrics",
    ]
    assert (output["submit_time"], output["end_time"]) == (
        "2025-01-08 16:03:59.840",
        "2025-01-08 16:04:10.660",
    )
    assert output["results"] == [
        {"orig_prompt": PROMPT, "actual_prompt": "a lovely shop", "url": "https://gw/1.png"},
        {"code": "DataInspectionFailed", "message": "inappropriate"},
    ]
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1}
    assert body["usage"] == {"image_count": 1}
    decoded = ds.decode_task(body)
    assert [image.url for image in decoded.images if image.ok] == ["https://gw/1.png"]


def test_encode_task_choices_shape_and_sync_match_seed_002() -> None:
    images = [ImageResult(url="u1"), ImageResult(url="u2")]
    urls = ["https://gw/1.png", "https://gw/2.png"]
    body = server.encode_task(_task("dashscope-generation", images=images), "r", urls)
    assert body["output"]["finished"] is True
    assert [c["message"]["content"][0]["image"] for c in body["output"]["choices"]] == urls
    assert body["usage"]["image_count"] == 2 and body["usage"]["size"] == "1280*1280"
    sync = server.encode_sync(_task("dashscope-sync", images=images[:1]), "815505c6", urls[:1])
    seed = json.loads(SEED_002_ANSWER)
    assert _keys(sync) == _keys(seed)
    assert sync["usage"] == seed["usage"]
    assert ds.decode_sync(sync).images[0].url == urls[0]


def test_encode_task_non_terminal_and_failed() -> None:
    running = _task("dashscope-generation", TaskStatus.RUNNING)
    body = server.encode_task(running, "r", [])
    assert body == {
        "request_id": "r",
        "output": {
            "task_id": "task-1",
            "task_status": "RUNNING",
            "submit_time": "2025-01-08 16:03:59.840",
        },
    }
    failed = _task(
        "dashscope-synthesis", TaskStatus.FAILED, error=TaskError("InternalError.Algo", "bad")
    )
    output = server.encode_task(failed, "r", [])["output"]
    assert (output["code"], output["message"]) == ("InternalError.Algo", "bad")
    assert "usage" not in server.encode_task(failed, "r", [])
    canceled = server.encode_task(_task("chanjing", TaskStatus.CANCELED), "r", [])
    assert canceled["output"]["task_status"] == "CANCELED" and "results" not in canceled["output"]


def test_encode_task_list_reads_with_the_v2_sdk() -> None:
    from dashscope.v2.resources._jobs import JobList

    tasks = [
        _task("dashscope-synthesis", images=[ImageResult(url="u")]),
        _task("dashscope-generation", TaskStatus.PENDING),
    ]
    body = server.encode_task_list(tasks, 7, 1, 2, "r", lambda task: ["https://gw/a.png"])
    assert (body["total"], body["page_no"], body["page_size"]) == (7, 1, 2)
    listed = JobList.from_payload(json.loads(json.dumps(body)))
    assert [job.status for job in listed.tasks] == ["SUCCEEDED", "PENDING"]
    assert listed.tasks[0].image_urls == ["https://gw/a.png"]
    assert listed.tasks[0].submitted_at == "2025-01-08 16:03:59.840"
