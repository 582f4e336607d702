"""The Chanjing (蝉镜) open-API image protocol, written down once. Pure code, no I/O.

Both sides use it: the upstream adapter (``providers/chanjing.py``) encodes submits and
decodes answers; the gateway's Chanjing front decodes client bodies and encodes answers.
Sources: seed pages 000 (wan2.2-t2i) and 004 (kling-v2-1), ``protocols/chanjing.md`` and the
rulings in ``protocols/README.md``.

Every answer is an envelope ``{trace_id, code, msg, data}`` sent with HTTP 200; ``code`` 0 is
success. Bodies keep the key order of the seed pages, so a seed example encodes byte for byte.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr
from pydantic import ValidationError as PydanticError

from imagegate.catalog import Catalog, build_request, effective, load_catalog, warnings_for
from imagegate.errors import (
    AuthError,
    ContentRejected,
    ImagegateError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TaskNotFound,
    UnknownModel,
    UnsupportedOperation,
    UpstreamError,
    ValidationError,
)
from imagegate.types import (
    GenerationRequest,
    ImageResult,
    SizeSpec,
    Task,
    TaskError,
    TaskStatus,
    UpstreamState,
    Usage,
)

TOKEN_PATH = "/open/v1/access_token"
SUBMIT_PATH = "/open/v1/ai_creation/task/submit"
TASK_PATH = "/open/v1/ai_creation/task"
PAGE_PATH = "/open/v1/ai_creation/task/page"
TOKEN_HEADER = "access_token"
CREATION_TYPE_IMAGE = 3
PAGE_MAX = 50

CODE_OK = 0
CODE_BAD_FORMAT = 400
CODE_BAD_TOKEN = 10400
CODE_BAD_PARAMETER = 40000
CODE_RATE_LIMIT = 40001
CODE_INTERNAL = 50000

#: imagegate field -> Chanjing body field, so catalog messages name what the caller wrote
FIELD_NAMES = {
    "prompt": "ref_prompt",
    "n": "number_of_images",
    "quality": "quality_mode",
    "reference_images": "ref_img_url",
    "size": "aspect_ratio",
    "model": "model_code",
}
_BODY_FIELDS = (
    "ref_img_url",
    "ref_prompt",
    "creation_type",
    "aspect_ratio",
    "clarity",
    "number_of_images",
    "quality_mode",
    "model_code",
    "unique_id",
    "unique_ids",
    "page",
    "page_size",
    "type",
    "is_success",
    "app_id",
    "secret_key",
)

STATUS_BY_PROGRESS = {
    "Queued": TaskStatus.PENDING,
    "Ready": TaskStatus.PENDING,
    "Generating": TaskStatus.RUNNING,
    "Success": TaskStatus.SUCCEEDED,
    "Error": TaskStatus.FAILED,
    "Fail": TaskStatus.FAILED,
    "Cancelled": TaskStatus.CANCELED,
}
PROGRESS_BY_STATUS = {
    TaskStatus.PENDING: "Queued",
    TaskStatus.RUNNING: "Generating",
    TaskStatus.SUCCEEDED: "Success",
    TaskStatus.FAILED: "Error",
    TaskStatus.CANCELED: "Cancelled",
    TaskStatus.UNKNOWN: "Error",
}
_EMPTY_MOTION_INFO: dict[str, Any] = {
    "photo_path_url": None,
    "ref_prompt": "",
    "clarity": 0,
    "quality_mode": "",
    "style": "",
    "aspect_ratio": "",
    "video_duration": 0,
}


@dataclass(frozen=True)
class PageQuery:
    """The body of ``POST /open/v1/ai_creation/task/page``."""

    unique_ids: tuple[str, ...] = ()
    type: int = CREATION_TYPE_IMAGE
    page: int = 1
    page_size: int = 10
    is_success: bool = False


# --------------------------------------------------------------------------- client side


def encode_submit(
    request: GenerationRequest, *, model_name: str | None = None, catalog: Catalog | None = None
) -> dict[str, Any]:
    """The submit body, keys in the seed pages' order.

    Seed 000 orders ``ref_prompt, creation_type, aspect_ratio, number_of_images, quality_mode,
    model_code``; seed 004 ``ref_img_url, ref_prompt, creation_type, aspect_ratio, clarity,
    number_of_images, model_code``; one order fits both. ``number_of_images`` is required by
    Chanjing, so an unset ``n`` becomes the catalog default. Reference images are sent only to
    models that forward them: kling-v2-1 does not (seed 004's note), so the seed 004 example
    body encodes *without* its ``ref_img_url`` and ``warnings_for`` carries the warning.
    """
    catalog = catalog or load_catalog()
    entry = catalog.get(request.model)
    body: dict[str, Any] = {}
    if request.reference_images:
        rule = entry.reference_images
        if rule is None:
            raise ValidationError(
                f"ref_img_url is not accepted by {entry.name}", field="ref_img_url"
            )
        if rule.forwarded:
            body["ref_img_url"] = list(request.reference_images)
    body["ref_prompt"] = request.prompt
    body["creation_type"] = CREATION_TYPE_IMAGE
    size = request.size
    if size is not None and size.aspect_ratio is not None:
        body["aspect_ratio"] = size.aspect_ratio
    if size is not None and size.clarity is not None:
        body["clarity"] = size.clarity
    body["number_of_images"] = request.n if request.n is not None else effective(request, catalog).n
    if request.quality is not None:
        body["quality_mode"] = request.quality
    body["model_code"] = model_name or request.model
    for key, value in request.extra.items():
        if key in body:
            raise InvalidRequest(f"extra.{key} would overwrite the body field {key}", field=key)
        body[key] = value
    return body


def submit_warnings(request: GenerationRequest, catalog: Catalog | None = None) -> list[str]:
    """What ``encode_submit`` leaves out of the body, said out loud."""
    return warnings_for(request, catalog)


def decode_error(code: int, msg: str, trace_id: str | None = None) -> ImagegateError:
    """A non-zero envelope code as an imagegate error (vendor code and trace id kept)."""
    kwargs: dict[str, Any] = {
        "vendor_code": str(code),
        "request_id": trace_id,
        "http_status": 200,
        "field": _field_named(msg),
    }
    text = f"Chanjing: {msg}" if msg else f"Chanjing answered code {code}"
    if code == CODE_BAD_FORMAT:
        return InvalidRequest(text, **kwargs)
    if code == CODE_BAD_TOKEN:
        return AuthError(text, **kwargs)
    if code == CODE_RATE_LIMIT:
        return RateLimited(text, **kwargs)
    if code == CODE_BAD_PARAMETER:
        lower = msg.lower()
        if "模型不存在" in msg or (lower.startswith("model") and "not exist" in lower):
            return UnknownModel(text, **{**kwargs, "field": "model_code"})
        if _NO_TASK.search(msg):
            return TaskNotFound(text, **{**kwargs, "field": "unique_id"})
        if _CONTENT.search(msg):
            return ContentRejected(text, **kwargs)
        return ValidationError(text, **kwargs)
    return UpstreamError(text, **kwargs)


#: how a 40000 message says "no such task" / "content rejected" (ours and, as far as
#: known, the vendor's); ``encode_error`` makes sure our own messages match
_NO_TASK = re.compile(r"任务不存在|\btask\b.*\b(not exist|not found)", re.IGNORECASE)
_CONTENT = re.compile(r"content\b.*\breject|reject.*\bcontent\b|审核|违规|敏感", re.IGNORECASE)


def _field_named(msg: str) -> str | None:
    """The Chanjing field a message starts with (``"number_of_images is 5; ..."``), if any."""
    match = re.match(r"\s*([a-z_]+)", msg or "")
    return match[1] if match and match[1] in _BODY_FIELDS else None


def decode_envelope(body: Any) -> Any:
    """``data`` of a success envelope; any other code raised as an imagegate error."""
    if not isinstance(body, dict) or "code" not in body:
        raise UpstreamError(f"Chanjing answered something that is not an envelope: {body!r:.200}")
    code = body["code"]
    if isinstance(code, bool) or not isinstance(code, int):
        raise UpstreamError(f"Chanjing envelope has a non-integer code: {code!r:.50}")
    if code == CODE_OK:
        return body.get("data")
    trace_id = body.get("trace_id")
    raise decode_error(code, str(body.get("msg") or ""), trace_id if trace_id else None)


def decode_token(data: Any) -> tuple[str, int]:
    """``(access_token, expire_in)``; ``expire_in`` is the Unix time of expiry, not a TTL."""
    if not isinstance(data, dict):
        raise UpstreamError(f"Chanjing token answer has no data object: {data!r:.200}")
    token, expire_in = data.get("access_token"), data.get("expire_in")
    if not isinstance(token, str) or not token:
        raise UpstreamError("Chanjing token answer has no access_token string")
    if isinstance(expire_in, bool) or not isinstance(expire_in, int):
        raise UpstreamError(f"Chanjing token answer has a non-integer expire_in: {expire_in!r}")
    return token, expire_in


def decode_task(
    data: Any, *, requested: int | None = None, request_id: str | None = None
) -> UpstreamState:
    """One task item (detail or list) as an ``UpstreamState``.

    A ``Success`` with fewer ``output_url`` entries than images requested (from
    ``photo_info.number_of_images``, else ``requested``) is a partially failed batch: the
    missing images are ``ImageResult`` entries with ``error_code="image_missing"`` (``ok`` is
    false) and the state carries a warning; ``usage.image_count`` counts real images only.
    """
    if not isinstance(data, dict) or not isinstance(data.get("unique_id"), str):
        raise UpstreamError(f"Chanjing task answer has no unique_id: {data!r:.200}")
    task_id = data["unique_id"]
    progress = data.get("progress_desc")
    status = (
        STATUS_BY_PROGRESS.get(progress, TaskStatus.RUNNING) if progress else TaskStatus.RUNNING
    )
    warnings: list[str] = []
    if progress not in STATUS_BY_PROGRESS:
        warnings.append(f"Chanjing progress_desc {progress!r} is not documented; read as running")
    base = {"task_id": task_id, "status": status, "request_id": request_id, "raw": data}
    if status is TaskStatus.FAILED:
        message = str(data.get("err_msg") or f"Chanjing task ended with {progress}")
        return UpstreamState(**base, error=TaskError(str(progress), message))
    if status is not TaskStatus.SUCCEEDED:
        return UpstreamState(**base, warnings=tuple(warnings))
    urls = [url for url in data.get("output_url") or [] if isinstance(url, str) and url]
    images = [ImageResult(url=url) for url in urls]
    info = data.get("photo_info")
    asked = info.get("number_of_images") if isinstance(info, dict) else None
    asked = asked if isinstance(asked, int) and asked > 0 else requested
    if asked is not None and len(urls) < asked:
        missing = asked - len(urls)
        note = f"Chanjing returned {len(urls)} of {asked} requested images"
        warnings.append(note)
        images += [ImageResult(error_code="image_missing", error_message=note)] * missing
    if not urls:
        error = TaskError("NoOutput", "Chanjing reported Success without any output_url")
        return UpstreamState(**{**base, "status": TaskStatus.FAILED}, error=error)
    return UpstreamState(
        **base, images=tuple(images), usage=Usage(image_count=len(urls)), warnings=tuple(warnings)
    )


def encode_page_query(query: PageQuery) -> dict[str, Any]:
    return {
        "unique_ids": list(query.unique_ids),
        "type": query.type,
        "page": query.page,
        "page_size": query.page_size,
        "is_success": query.is_success,
    }


def decode_page(data: Any) -> tuple[list[UpstreamState], int]:
    """The page endpoint's ``data``: the decoded items and the total count."""
    if not isinstance(data, dict) or not isinstance(data.get("list", []), list):
        raise UpstreamError(f"Chanjing page answer has no list: {data!r:.200}")
    items = [decode_task(item) for item in data.get("list") or []]
    total = data.get("total")
    return items, total if isinstance(total, int) else len(items)


# --------------------------------------------------------------------------- server side


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TokenBody(_Strict):
    app_id: StrictStr
    secret_key: StrictStr


class SubmitBody(_Strict):
    ref_prompt: StrictStr
    creation_type: StrictInt
    model_code: StrictStr
    number_of_images: StrictInt
    aspect_ratio: StrictStr | None = None
    clarity: StrictInt | None = None
    quality_mode: StrictStr | None = None
    ref_img_url: list[StrictStr] | None = None
    callback: StrictStr | None = None


class PageBody(_Strict):
    type: StrictInt
    unique_ids: list[StrictStr] = []
    page: StrictInt = 1
    page_size: StrictInt = 10
    is_success: StrictBool = False


_TYPE_WORDS = {
    "int_type": "an integer",
    "string_type": "a string",
    "list_type": "an array",
    "bool_type": "true or false",
}


def _parse(model: type[_Strict], body: Any) -> Any:
    """Read a raw JSON value into ``model``; the first problem as ``InvalidRequest`` (code 400)."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body)
    except PydanticError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"]) or "body"
        kind = problem["type"]
        if kind == "missing":
            message = f"{field} is required"
        elif kind == "extra_forbidden":
            message = f"{field} is not a field of this endpoint"
        elif kind in _TYPE_WORDS:
            message = f"{field} must be {_TYPE_WORDS[kind]}, got {problem.get('input')!r:.80}"
        else:
            message = f"{field}: {problem['msg']}"
        raise InvalidRequest(message, field=str(problem["loc"][0])) from None


def decode_token_body(body: Any) -> tuple[str, str]:
    """``(app_id, secret_key)`` of ``POST /open/v1/access_token``."""
    parsed = _parse(TokenBody, body)
    return parsed.app_id, parsed.secret_key


def decode_submit_body(body: Any, catalog: Catalog) -> tuple[GenerationRequest, list[str]]:
    """A client's submit body as a checked request plus the warnings to carry with the task.

    Format problems raise ``InvalidRequest`` (400), an unknown ``model_code`` ``UnknownModel``,
    a broken model rule ``ValidationError`` (40000); every message names the Chanjing field.
    Empty strings (the vendor's own "unset", as in its task records) count as absent.
    """
    parsed: SubmitBody = _parse(SubmitBody, body)
    if parsed.creation_type != CREATION_TYPE_IMAGE:
        raise InvalidRequest(
            f"creation_type must be {CREATION_TYPE_IMAGE} (image creation), "
            f"got {parsed.creation_type}",
            field="creation_type",
        )
    if parsed.model_code not in catalog:
        raise UnknownModel(
            f"model_code {parsed.model_code!r} does not exist; known model codes: "
            f"{', '.join(catalog.names())}",
            field="model_code",
        )
    request = build_request(
        parsed.model_code,
        parsed.ref_prompt,
        aspect_ratio=parsed.aspect_ratio or None,
        clarity=parsed.clarity or None,
        n=parsed.number_of_images,
        quality=parsed.quality_mode or None,
        reference_images=parsed.ref_img_url or (),
        catalog=catalog,
        names=FIELD_NAMES,
    )
    warnings = warnings_for(request, catalog)
    if parsed.callback:
        warnings.append("callback is not supported by imagegate and was ignored; poll the task")
    return request, warnings


def decode_task_query(params: Mapping[str, str]) -> str:
    """The ``unique_id`` of ``GET /open/v1/ai_creation/task?unique_id=…``."""
    unique_id = (params.get("unique_id") or "").strip()
    if not unique_id:
        raise InvalidRequest("unique_id is required as a query parameter", field="unique_id")
    return unique_id


def decode_page_body(body: Any) -> PageQuery:
    """The body of the page endpoint, checked against the documented bounds."""
    parsed: PageBody = _parse(PageBody, body)
    if parsed.type != CREATION_TYPE_IMAGE:
        raise ValidationError(
            f"type is {parsed.type}; imagegate serves image creation only (type 3)", field="type"
        )
    if len(parsed.unique_ids) > PAGE_MAX:
        raise ValidationError(
            f"unique_ids has {len(parsed.unique_ids)} ids; at most {PAGE_MAX} are allowed",
            field="unique_ids",
        )
    if parsed.page < 1:
        raise ValidationError(f"page is {parsed.page}; pages start at 1", field="page")
    if not 1 <= parsed.page_size <= PAGE_MAX:
        raise ValidationError(
            f"page_size is {parsed.page_size}; allowed 1 to {PAGE_MAX}", field="page_size"
        )
    return PageQuery(
        tuple(parsed.unique_ids), parsed.type, parsed.page, parsed.page_size, parsed.is_success
    )


def encode_envelope(data: Any, trace_id: str, *, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """A success envelope. ``warnings`` (an imagegate addition) appear only when there are any."""
    envelope: dict[str, Any] = {"trace_id": trace_id, "code": CODE_OK, "msg": "success"}
    envelope["data"] = data
    if warnings:
        envelope["warnings"] = list(warnings)
    return envelope


#: errors Chanjing reports as "parameter error": a broken rule, an unknown model or task...
_PARAMETER_ERRORS = (
    ValidationError,
    UnknownModel,
    PermissionDenied,
    ContentRejected,
    TaskNotFound,
    UnsupportedOperation,
)


def error_code(error: ImagegateError) -> int:
    """The Chanjing code of an imagegate error (rulings table; the HTTP status is always 200)."""
    if isinstance(error, _PARAMETER_ERRORS):
        return CODE_BAD_PARAMETER
    if isinstance(error, InvalidRequest):
        return CODE_BAD_FORMAT
    if isinstance(error, AuthError):
        return CODE_BAD_TOKEN
    if isinstance(error, RateLimited):
        return CODE_RATE_LIMIT
    return CODE_INTERNAL


def encode_error(error: ImagegateError, trace_id: str) -> dict[str, Any]:
    message = error.message
    if isinstance(error, TaskNotFound) and not _NO_TASK.search(message):
        message = f"{message}: task does not exist"
    if isinstance(error, ContentRejected) and not _CONTENT.search(message):
        message = f"{message}: content rejected"
    return {"trace_id": trace_id, "code": error_code(error), "msg": message, "data": None}


def encode_token(token: str, expire_in: int) -> dict[str, Any]:
    return {"access_token": token, "expire_in": expire_in}


def encode_task(
    task: Task, image_urls: list[str], *, catalog: Catalog | None = None
) -> dict[str, Any]:
    """One task in the item shape of the detail and page endpoints (protocols/chanjing.md §5).

    ``id`` is a stable number derived from the task id (imagegate has no row numbers);
    ``number_ai_creation`` is the number of images asked for (the vendor's meaning is
    undocumented; its one example has 1 for 1). Defaults are the model's effective values.
    Task warnings appear under ``warnings``, an imagegate addition, only when there are any.
    """
    request = _effective_or_same(task.request, catalog)
    ratio = _ratio_text(request.size)
    refs = list(task.request.reference_images)
    count = request.n or 1
    error = task.error.message if task.error else ""
    if task.status in (TaskStatus.FAILED, TaskStatus.UNKNOWN) and not error:
        error = "task failed"
    item: dict[str, Any] = {
        "id": zlib.crc32(task.id.encode()),
        "unique_id": task.id,
        "create_time": int(task.submit_time.timestamp()),
        "number_ai_creation": count,
        "type": CREATION_TYPE_IMAGE,
        "progress_desc": PROGRESS_BY_STATUS[task.status],
        "err_msg": error,
        "aspect_ratio": ratio,
        "output_url": list(image_urls),
        "photo_info": {
            "ref_img_url": refs,
            "ref_prompt": task.request.prompt,
            "clarity": _clarity(request, catalog),
            "aspect_ratio": ratio,
            "quality_mode": request.quality or "",
            "number_of_images": count,
        },
        "motion_info": dict(_EMPTY_MOTION_INFO),
        "ref_img_url": refs,
        "model_code": task.model,
        "model_name": "",
    }
    if task.warnings:
        item["warnings"] = list(task.warnings)
    return item


def encode_page(
    tasks: Sequence[Task],
    total: int,
    page: int,
    page_size: int,
    urls_for: Callable[[Task], list[str]],
) -> dict[str, Any]:
    return {
        "list": [encode_task(task, urls_for(task)) for task in tasks],
        "total": total,
        "page_info": {
            "page": page,
            "size": page_size,
            "total_count": total,
            "total_page": -(-total // page_size) if page_size > 0 else 0,
        },
    }


def _effective_or_same(request: GenerationRequest, catalog: Catalog | None) -> GenerationRequest:
    try:
        return effective(request, catalog)
    except UnknownModel:
        return request


def _ratio_text(size: SizeSpec | None) -> str:
    if size is None:
        return ""
    if size.aspect_ratio:
        return size.aspect_ratio
    ratio = Fraction(size.width, size.height) if size.width > 0 and size.height > 0 else None
    return f"{ratio.numerator}:{ratio.denominator}" if ratio else ""


def _clarity(request: GenerationRequest, catalog: Catalog | None) -> int:
    if request.size is not None and request.size.clarity is not None:
        return request.size.clarity
    try:
        rule = (catalog or load_catalog()).get(request.model).size
    except UnknownModel:
        return 0
    return (rule.default_clarity or 0) if rule.clarities else 0
