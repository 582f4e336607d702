"""The Chanjing codec against the seed pages (000 wan2.2-t2i, 004 kling-v2-1) and the rulings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

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
    TaskNotFound,
    UnknownModel,
    UnsupportedOperation,
    UpstreamError,
    ValidationError,
)
from imagegate.protocols import chanjing as wire
from imagegate.protocols import chanjing_server as server
from imagegate.types import GenerationRequest, Task, TaskError, TaskStatus

CATALOG = load_catalog()
KLING_WARNING = (
    "kling-v2-1 does not accept reference images (seed 004): ref_img_url was not forwarded"
)

# The prompt of both curl examples (split only to fit the line length).
CURL_PROMPT = (
    "生成一张微缩模型风格的创意场景图。"
    "画面中央是一个古典青花瓷碗,碗里盛着雪白的汤圆,最上面一颗破皮流出黑芝麻馅。"
)
# Seed 000, "请求参数 Body", verbatim.
SEED_000_BODY = """{
  "ref_prompt": "高级感室内设计渲染图,现代极简风,真实材质表现",
  "creation_type": 3,
  "aspect_ratio": "9:16",
  "number_of_images": 1,
  "quality_mode": "std",
  "model_code": "wan2.2-t2i"
}"""
# Seed 000, the curl example's --data-raw, verbatim.
SEED_000_CURL = """{
    "ref_prompt": "{CURL_PROMPT}",
    "creation_type": 3,
    "aspect_ratio": "9:16",
    "number_of_images": 1,
    "quality_mode": "std",
    "model_code": "wan2.2-t2i"
}""".replace("{CURL_PROMPT}", CURL_PROMPT)
# Seed 004, "请求参数 Body", verbatim (with the ref_img_url its own note says is unsupported).
SEED_004_BODY = """{
  "ref_img_url": [
    "https://res.chanjing.cc/chanjing/res/aigc_creation/photo/xxx.jpg"
  ],
  "ref_prompt": "少女风时尚海报,柔光,杂志封面质感",
  "creation_type": 3,
  "aspect_ratio": "3:4",
  "clarity": 2048,
  "number_of_images": 1,
  "model_code": "kling-v2-1"
}"""
# Seed 004, the curl example's --data-raw, verbatim.
SEED_004_CURL = """{
    "ref_prompt": "{CURL_PROMPT}",
    "creation_type": 3,
    "aspect_ratio": "9:16",
    "clarity": 2048,
    "number_of_images": 1,
    "model_code": "kling-v2-1"
}""".replace("{CURL_PROMPT}", CURL_PROMPT)
SEED_RESPONSE = {
    "trace_id": "96afa792520b0e6a86d72e89435bc0a7",
    "code": 0,
    "msg": "success",
    "data": "a60747d7-dc05-4afc-b2ef-ee4370ed53c6",
}
# protocols/chanjing.md §5 (DOC-LIST item example).
LIST_ITEM = {
    "id": 7,
    "unique_id": "58b1c892-6e40-48f9-b06f-50bdd800d3d0",
    "create_time": 1772510584,
    "number_ai_creation": 1,
    "type": 3,
    "progress_desc": "Error",
    "err_msg": "任务失败,本次生成不消耗蝉豆",
    "aspect_ratio": "9:16",
    "output_url": [],
    "photo_info": {
        "ref_img_url": ["https://example.com/r.jpg"],
        "ref_prompt": "p",
        "clarity": 4096,
        "aspect_ratio": "9:16",
        "quality_mode": "",
        "number_of_images": 1,
    },
    "motion_info": {
        "photo_path_url": None,
        "ref_prompt": "",
        "clarity": 0,
        "quality_mode": "",
        "style": "",
        "aspect_ratio": "",
        "video_duration": 0,
    },
    "ref_img_url": ["https://example.com/r.jpg"],
    "model_code": "doubao-seedream-4.5",
    "model_name": "",
}


def dumped(body: dict, indent: int) -> str:
    return json.dumps(body, ensure_ascii=False, indent=indent)


# --------------------------------------------------------------------------- encode_submit


@pytest.mark.parametrize(("text", "indent"), [(SEED_000_BODY, 2), (SEED_000_CURL, 4)])
def test_seed_000_bodies_encode_byte_for_byte(text: str, indent: int) -> None:
    seed = json.loads(text)
    request = build_request(
        "wan2.2-t2i", seed["ref_prompt"], aspect_ratio="9:16", n=1, quality="std"
    )
    assert dumped(wire.encode_submit(request), indent) == text


@pytest.mark.parametrize(("text", "indent"), [(SEED_000_BODY, 2), (SEED_000_CURL, 4)])
def test_seed_000_bodies_round_trip_through_the_server_decoder(text: str, indent: int) -> None:
    request, warnings = server.decode_submit_body(json.loads(text), CATALOG)
    assert warnings == []
    assert request.model == "wan2.2-t2i" and request.n == 1 and request.quality == "std"
    assert request.size is not None and (request.size.width, request.size.height) == (720, 1280)
    assert dumped(wire.encode_submit(request), indent) == text


def test_seed_004_curl_body_encodes_byte_for_byte() -> None:
    request, warnings = server.decode_submit_body(json.loads(SEED_004_CURL), CATALOG)
    assert warnings == []
    assert request.size is not None and request.size.clarity == 2048
    assert (request.size.width, request.size.height) == (1440, 2560)
    assert dumped(wire.encode_submit(request), 4) == SEED_004_CURL


def test_seed_004_page_body_succeeds_without_ref_img_url_and_with_a_warning() -> None:
    """The ruling: the example must succeed, the reference is not forwarded, a warning says so."""
    request, warnings = server.decode_submit_body(json.loads(SEED_004_BODY), CATALOG)
    assert warnings == [KLING_WARNING]
    assert request.reference_images == (
        "https://res.chanjing.cc/chanjing/res/aigc_creation/photo/xxx.jpg",
    )
    body = wire.encode_submit(request)
    expected = json.loads(SEED_004_BODY)
    del expected["ref_img_url"]
    assert list(body.items()) == list(expected.items())
    assert list(body) == [
        "ref_prompt",
        "creation_type",
        "aspect_ratio",
        "clarity",
        "number_of_images",
        "model_code",
    ]
    assert wire.submit_warnings(request, CATALOG) == [KLING_WARNING]


def test_forwarded_references_come_first_as_on_seed_004() -> None:
    request = build_request(
        "doubao-seedream-4.0", "a cat", n=2, clarity=4096, reference_images=["https://x/r.png"]
    )
    body = wire.encode_submit(request, model_name="doubao-seedream-4.0-upstream")
    assert list(body) == [
        "ref_img_url",
        "ref_prompt",
        "creation_type",
        "clarity",
        "number_of_images",
        "model_code",
    ]
    assert body["ref_img_url"] == ["https://x/r.png"]
    assert body["model_code"] == "doubao-seedream-4.0-upstream"
    assert wire.submit_warnings(request, CATALOG) == []


def test_unset_fields_are_omitted_and_number_of_images_is_always_sent() -> None:
    request = GenerationRequest(model="wan2.2-t2i", prompt="a cat")
    assert wire.encode_submit(request) == {
        "ref_prompt": "a cat",
        "creation_type": 3,
        "number_of_images": 1,
        "model_code": "wan2.2-t2i",
    }


def test_references_for_a_model_without_them_are_refused_not_dropped() -> None:
    request = GenerationRequest(model="wan2.2-t2i", prompt="a", reference_images=("https://x",))
    with pytest.raises(ValidationError, match=r"ref_img_url is not accepted by wan2\.2-t2i"):
        wire.encode_submit(request)


def test_extra_fields_pass_through_but_never_overwrite() -> None:
    request = GenerationRequest(model="wan2.2-t2i", prompt="a", n=1, extra={"style": "x"})
    assert list(wire.encode_submit(request))[-1] == "style"
    clash = GenerationRequest(model="wan2.2-t2i", prompt="a", n=1, extra={"model_code": "y"})
    with pytest.raises(InvalidRequest, match="model_code"):
        wire.encode_submit(clash)


# --------------------------------------------------------------------------- client decoding


def test_seed_response_decodes_to_the_creation_id() -> None:
    assert wire.decode_envelope(SEED_RESPONSE) == "a60747d7-dc05-4afc-b2ef-ee4370ed53c6"


@pytest.mark.parametrize(
    ("code", "msg", "kind"),
    [
        (400, "传入参数格式错误", InvalidRequest),
        (10400, "AccessToken 验证失败", AuthError),
        (40000, "参数错误", ValidationError),
        (40000, "number_of_images is 5; wan2.2-t2i allows 1 to 4", ValidationError),
        (40000, "任务不存在", TaskNotFound),
        (40000, "unique_id abc: task does not exist", TaskNotFound),
        (40000, "模型不存在", UnknownModel),
        (40000, "model_code 'x' does not exist; known model codes: a", UnknownModel),
        (40000, "content rejected by the safety review", ContentRejected),
        (40001, "超出 QPS 限制", RateLimited),
        (50000, "系统内部错误", UpstreamError),
        (12345, "", UpstreamError),
    ],
)
def test_every_code_maps_to_one_error(code: int, msg: str, kind: type) -> None:
    body = {"trace_id": "t-1", "code": code, "msg": msg, "data": None}
    with pytest.raises(ImagegateError) as caught:
        wire.decode_envelope(body)
    error = caught.value
    assert type(error) is kind
    assert error.vendor_code == str(code) and error.request_id == "t-1"
    assert f"[{code}]" in str(error) and "t-1" in str(error)


def test_decoded_errors_name_the_chanjing_field_when_the_message_does() -> None:
    error = wire.decode_error(40000, "number_of_images is 5; wan2.2-t2i allows 1 to 4")
    assert error.field == "number_of_images"
    assert wire.decode_error(40000, "任务不存在").field == "unique_id"


@pytest.mark.parametrize(
    "body", [None, [], "oops", {"msg": "no code"}, {"code": "0"}, {"code": True}]
)
def test_bodies_that_are_not_envelopes_are_upstream_errors(body: object) -> None:
    with pytest.raises(UpstreamError):
        wire.decode_envelope(body)


def test_decode_token_reads_expire_in_as_a_timestamp() -> None:
    assert wire.decode_token({"access_token": "tok", "expire_in": 1772510584}) == (
        "tok",
        1772510584,
    )
    for bad in (None, {"access_token": "", "expire_in": 1}, {"access_token": "t"}):
        with pytest.raises(UpstreamError):
            wire.decode_token(bad)


@pytest.mark.parametrize(
    ("progress", "status"),
    [
        ("Queued", TaskStatus.PENDING),
        ("Ready", TaskStatus.PENDING),
        ("Generating", TaskStatus.RUNNING),
        ("Cancelled", TaskStatus.CANCELED),
        ("Thinking", TaskStatus.RUNNING),
    ],
)
def test_progress_desc_maps_to_status(progress: str, status: TaskStatus) -> None:
    item = {**LIST_ITEM, "progress_desc": progress, "err_msg": ""}
    state = wire.decode_task(item, request_id="t-9")
    assert state.status is status and state.task_id == LIST_ITEM["unique_id"]
    assert state.raw == item and state.request_id == "t-9"
    assert bool(state.warnings) is (progress == "Thinking")


@pytest.mark.parametrize("progress", ["Error", "Fail"])
def test_failed_tasks_carry_err_msg(progress: str) -> None:
    state = wire.decode_task({**LIST_ITEM, "progress_desc": progress})
    assert state.status is TaskStatus.FAILED
    assert state.error == TaskError(progress, "任务失败,本次生成不消耗蝉豆")


def test_success_lists_output_urls_as_images() -> None:
    urls = ["https://cdn.example/a.png", "https://cdn.example/b.png"]
    info = {**LIST_ITEM["photo_info"], "number_of_images": 2}
    item = {**LIST_ITEM, "progress_desc": "Success", "output_url": urls, "photo_info": info}
    state = wire.decode_task(item)
    assert state.status is TaskStatus.SUCCEEDED
    assert [image.url for image in state.images] == urls
    assert all(image.ok for image in state.images)
    assert state.usage is not None and state.usage.image_count == 2 and state.warnings == ()


def test_success_with_fewer_images_than_asked_is_a_partial_batch() -> None:
    info = {**LIST_ITEM["photo_info"], "number_of_images": 3}
    item = {**LIST_ITEM, "progress_desc": "Success", "output_url": ["u1"], "photo_info": info}
    state = wire.decode_task(item)
    assert state.status is TaskStatus.SUCCEEDED
    assert [image.ok for image in state.images] == [True, False, False]
    assert state.images[1].error_code == "image_missing"
    assert state.warnings == ("Chanjing returned 1 of 3 requested images",)
    assert state.usage is not None and state.usage.image_count == 1


def test_success_without_any_output_is_a_failure() -> None:
    state = wire.decode_task({**LIST_ITEM, "progress_desc": "Success", "output_url": []})
    assert state.status is TaskStatus.FAILED and state.error is not None
    assert state.error.code == "NoOutput"


def test_decode_page_reads_items_and_total() -> None:
    data = {"list": [LIST_ITEM], "total": 7, "page_info": {"page": 1, "size": 50}}
    states, total = wire.decode_page(data)
    assert total == 7 and [s.task_id for s in states] == [LIST_ITEM["unique_id"]]
    with pytest.raises(UpstreamError):
        wire.decode_page({"list": "nope"})


# --------------------------------------------------------------------------- server decoding


def test_decode_token_body() -> None:
    assert server.decode_token_body({"app_id": "a", "secret_key": "s"}) == ("a", "s")
    with pytest.raises(InvalidRequest, match="secret_key is required") as caught:
        server.decode_token_body({"app_id": "a"})
    assert caught.value.field == "secret_key"
    with pytest.raises(InvalidRequest, match="app_id must be a string"):
        server.decode_token_body({"app_id": 7, "secret_key": "s"})


GOOD = json.loads(SEED_000_BODY)


@pytest.mark.parametrize(
    ("change", "kind", "field", "text"),
    [
        ({"number_of_images": None}, InvalidRequest, "number_of_images", "is required"),
        ({"number_of_images": "1"}, InvalidRequest, "number_of_images", "must be an integer"),
        ({"number_of_images": True}, InvalidRequest, "number_of_images", "must be an integer"),
        ({"creation_type": 4}, InvalidRequest, "creation_type", "must be 3"),
        ({"creation_type": None}, InvalidRequest, "creation_type", "is required"),
        ({"ref_prompt": 12}, InvalidRequest, "ref_prompt", "must be a string"),
        ({"ref_img_url": "https://x"}, InvalidRequest, "ref_img_url", "must be an array"),
        ({"style": "anime"}, InvalidRequest, "style", "is not a field"),
        ({"model_code": "dall-e-9"}, UnknownModel, "model_code", "does not exist"),
        ({"number_of_images": 5}, ValidationError, "number_of_images", "allows 1 to 4"),
        ({"number_of_images": 0}, ValidationError, "number_of_images", "allows 1 to 4"),
        ({"aspect_ratio": "2:1"}, ValidationError, "aspect_ratio", "not supported"),
        ({"quality_mode": "ultra"}, ValidationError, "quality_mode", "allows std, pro"),
        ({"clarity": 2048}, ValidationError, "clarity", "not a parameter of wan2.2-t2i"),
        ({"ref_prompt": "x" * 501}, ValidationError, "ref_prompt", "at most 500"),
        ({"ref_prompt": "  "}, ValidationError, "ref_prompt", "must not be empty"),
        ({"ref_img_url": ["https://x/r.png"]}, ValidationError, "ref_img_url", "not accepted"),
    ],
)
def test_submit_body_errors_name_chanjing_fields(
    change: dict, kind: type, field: str, text: str
) -> None:
    body = {**GOOD, **change}
    body = {key: value for key, value in body.items() if value is not None}
    with pytest.raises(InvalidRequest) as caught:
        server.decode_submit_body(body, CATALOG)
    error = caught.value
    assert type(error) is kind
    assert error.field == field and error.message.startswith(field) and text in error.message
    expected = 400 if kind is InvalidRequest else 40000
    assert server.encode_error(error, "t")["code"] == expected


@pytest.mark.parametrize("body", [None, [], "x", 3])
def test_submit_body_must_be_an_object(body: object) -> None:
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        server.decode_submit_body(body, CATALOG)


def test_kling_rules_name_kling_fields() -> None:
    kling = json.loads(SEED_004_CURL)
    with pytest.raises(ValidationError, match=r"^clarity 4096 .* allowed: 1024, 2048"):
        server.decode_submit_body({**kling, "clarity": 4096}, CATALOG)
    two = {**kling, "ref_img_url": ["https://a/1.png", "https://a/2.png"]}
    with pytest.raises(ValidationError, match=r"^ref_img_url has 2 images"):
        server.decode_submit_body(two, CATALOG)


def test_empty_strings_are_absent_and_callback_is_refused_out_loud() -> None:
    body = {**GOOD, "aspect_ratio": "", "quality_mode": "", "callback": "https://me/cb"}
    request, warnings = server.decode_submit_body(body, CATALOG)
    assert request.size is not None and request.size.aspect_ratio is None
    assert request.quality is None
    assert len(warnings) == 1 and warnings[0].startswith("callback is not supported")


def test_a_dashscope_model_through_chanjing_keeps_chanjing_field_names() -> None:
    body = {**GOOD, "model_code": "wan2.6-t2i", "quality_mode": None}
    body = {key: value for key, value in body.items() if value is not None}
    request, _ = server.decode_submit_body(body, CATALOG)
    assert request.size is not None and request.size.star == "960*1696"
    with pytest.raises(ValidationError, match=r"^aspect_ratio 2:1"):
        server.decode_submit_body({**body, "aspect_ratio": "2:1"}, CATALOG)


def test_decode_task_query() -> None:
    assert server.decode_task_query({"unique_id": " abc "}) == "abc"
    with pytest.raises(InvalidRequest, match="unique_id is required"):
        server.decode_task_query({})


def test_decode_page_body_bounds() -> None:
    query = server.decode_page_body({"unique_ids": [], "type": 3, "page": 1, "page_size": 50})
    assert query == wire.PageQuery((), 3, 1, 50, False)
    assert wire.encode_page_query(query) == {
        "unique_ids": [],
        "type": 3,
        "page": 1,
        "page_size": 50,
        "is_success": False,
    }
    cases = [
        ({"page": 1}, InvalidRequest, "type is required"),
        ({"type": "3"}, InvalidRequest, "type must be an integer"),
        ({"type": 4}, ValidationError, "type is 4"),
        ({"type": 3, "unique_ids": ["x"] * 51}, ValidationError, "unique_ids has 51"),
        ({"type": 3, "page": 0}, ValidationError, "page is 0"),
        ({"type": 3, "page_size": 51}, ValidationError, "page_size is 51"),
        ({"type": 3, "is_success": "yes"}, InvalidRequest, "is_success must be true or false"),
    ]
    for body, kind, text in cases:
        with pytest.raises(InvalidRequest) as caught:
            server.decode_page_body(body)
        assert type(caught.value) is kind and caught.value.message.startswith(text)


# --------------------------------------------------------------------------- server encoding


def test_envelopes_follow_the_seed_shape() -> None:
    assert server.encode_envelope(SEED_RESPONSE["data"], SEED_RESPONSE["trace_id"]) == SEED_RESPONSE
    assert list(server.encode_envelope("x", "t")) == ["trace_id", "code", "msg", "data"]
    warned = server.encode_envelope("x", "t", warnings=[KLING_WARNING])
    assert warned["warnings"] == [KLING_WARNING] and warned["msg"] == "success"
    assert server.encode_token("tok", 1772510584) == {
        "access_token": "tok",
        "expire_in": 1772510584,
    }


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequest("body is not JSON"), 400),
        (ValidationError("number_of_images is 5", field="number_of_images"), 40000),
        (UnknownModel("model_code 'x' does not exist", field="model_code"), 40000),
        (PermissionDenied("model_code wan2.2-t2i is not allowed for this key"), 40000),
        (ContentRejected("ref_prompt was rejected by the content review"), 40000),
        (TaskNotFound("unique_id abc: task does not exist"), 40000),
        (UnsupportedOperation("cancel is not supported"), 40000),
        (AuthError("access_token is invalid or expired"), 10400),
        (RateLimited("too many requests", retry_after=2), 40001),
        (UpstreamError("upstream failed"), 50000),
        (NotConfigured("no credentials"), 50000),
    ],
)
def test_encode_error_follows_the_rulings_table(error: ImagegateError, code: int) -> None:
    body = server.encode_error(error, "trace-1")
    assert body == {"trace_id": "trace-1", "code": code, "msg": error.message, "data": None}
    # and the client side reads it back as the same kind of error
    with pytest.raises(ImagegateError) as caught:
        wire.decode_envelope(body)
    if code == 40000 and not isinstance(error, PermissionDenied | UnsupportedOperation):
        assert type(caught.value) is type(error)


def test_unknown_task_message_always_says_the_task_does_not_exist() -> None:
    body = server.encode_error(TaskNotFound("unique_id abc"), "t")
    assert body["code"] == 40000 and body["msg"] == "unique_id abc: task does not exist"


def _task(status: TaskStatus, **changes: object) -> Task:
    request, warnings = server.decode_submit_body(json.loads(SEED_004_BODY), CATALOG)
    task = Task(
        id="task-1",
        model=request.model,
        request=request,
        status=status,
        submit_time=datetime(2026, 3, 3, 4, 3, 4, tzinfo=UTC),
        warnings=warnings,
    )
    for key, value in changes.items():
        setattr(task, key, value)
    return task


def test_encode_task_has_the_item_shape_of_the_list_endpoint() -> None:
    task = _task(TaskStatus.SUCCEEDED)
    item = server.encode_task(task, ["https://gw/files/a.png"])
    assert list(item)[: len(LIST_ITEM)] == list(LIST_ITEM)
    assert list(item["photo_info"]) == list(LIST_ITEM["photo_info"])
    assert item["motion_info"] == LIST_ITEM["motion_info"]
    assert item["unique_id"] == "task-1" and item["type"] == 3
    assert item["create_time"] == 1772510584 and isinstance(item["id"], int)
    assert item["progress_desc"] == "Success" and item["err_msg"] == ""
    assert item["output_url"] == ["https://gw/files/a.png"]
    assert item["photo_info"] == {
        "ref_img_url": ["https://res.chanjing.cc/chanjing/res/aigc_creation/photo/xxx.jpg"],
        "ref_prompt": "少女风时尚海报,柔光,杂志封面质感",
        "clarity": 2048,
        "aspect_ratio": "3:4",
        "quality_mode": "",
        "number_of_images": 1,
    }
    assert item["model_code"] == "kling-v2-1" and item["warnings"] == [KLING_WARNING]
    state = wire.decode_task(item)
    assert state.status is TaskStatus.SUCCEEDED
    assert [image.url for image in state.images] == item["output_url"]


@pytest.mark.parametrize(
    ("status", "progress"),
    [
        (TaskStatus.PENDING, "Queued"),
        (TaskStatus.RUNNING, "Generating"),
        (TaskStatus.FAILED, "Error"),
        (TaskStatus.CANCELED, "Cancelled"),
    ],
)
def test_encode_task_status_words_round_trip(status: TaskStatus, progress: str) -> None:
    error = TaskError("InternalError", "renderer crashed") if status is TaskStatus.FAILED else None
    item = server.encode_task(_task(status, error=error), [])
    assert item["progress_desc"] == progress
    assert wire.decode_task(item).status is status
    if error:
        assert item["err_msg"] == "renderer crashed"


def test_encode_task_fills_vendor_defaults() -> None:
    request = build_request("wan2.2-t2i", "a cat")
    task = Task(id="t2", model="wan2.2-t2i", request=request)
    item = server.encode_task(task, [])
    assert item["aspect_ratio"] == "1:1" and item["number_ai_creation"] == 1
    assert item["photo_info"]["quality_mode"] == "std" and item["photo_info"]["clarity"] == 0
    assert "warnings" not in item


def test_encode_page_shape() -> None:
    tasks = [_task(TaskStatus.SUCCEEDED), _task(TaskStatus.PENDING, id="task-2")]
    data = server.encode_page(tasks, 7, 2, 2, lambda task: [f"https://gw/{task.id}.png"])
    assert list(data) == ["list", "total", "page_info"]
    assert data["total"] == 7
    assert data["page_info"] == {"page": 2, "size": 2, "total_count": 7, "total_page": 4}
    assert [item["unique_id"] for item in data["list"]] == ["task-1", "task-2"]
    assert data["list"][1]["output_url"] == ["https://gw/task-2.png"]


SEEDS = Path("/work/shared/seeds")


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the shared seed pages are not on this machine")
def test_the_seed_literals_above_are_verbatim() -> None:
    wan = (SEEDS / "000_bc990d740ad1bf17.txt").read_text("utf-8")
    kling = (SEEDS / "004_6eed9e3523cde386.txt").read_text("utf-8")
    assert SEED_000_BODY in wan and SEED_000_CURL in wan
    assert SEED_004_BODY in kling and SEED_004_CURL in kling
