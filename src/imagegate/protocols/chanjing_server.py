"""The Chanjing (蝉镜) open-API image protocol, gateway side. Pure code, no I/O.

What the gateway's Chanjing front reads (token, submit and page bodies, the task query) and
writes (envelopes, errors by code, task items and pages in the vendor's shapes). Shared codes
and names live in ``chanjing.py``. Sources: seed pages 000 and 004, ``protocols/chanjing.md``
(§5 for the item shape) and the rulings table in ``protocols/README.md``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
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
    ValidationError,
)
from imagegate.protocols.chanjing import (
    CODE_BAD_FORMAT,
    CODE_BAD_PARAMETER,
    CODE_BAD_TOKEN,
    CODE_INTERNAL,
    CODE_OK,
    CODE_RATE_LIMIT,
    CONTENT_TEXT,
    CREATION_TYPE_IMAGE,
    FIELD_NAMES,
    NO_TASK_TEXT,
    PROGRESS_BY_STATUS,
    PageQuery,
    check_page_query,
)
from imagegate.types import GenerationRequest, SizeSpec, Task, TaskStatus

_EMPTY_MOTION_INFO: dict[str, Any] = {
    "photo_path_url": None,
    "ref_prompt": "",
    "clarity": 0,
    "quality_mode": "",
    "style": "",
    "aspect_ratio": "",
    "video_duration": 0,
}


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
    return check_page_query(
        PageQuery(
            tuple(parsed.unique_ids), parsed.type, parsed.page, parsed.page_size, parsed.is_success
        )
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
    if isinstance(error, TaskNotFound) and not NO_TASK_TEXT.search(message):
        message = f"{message}: task does not exist"
    if isinstance(error, ContentRejected) and not CONTENT_TEXT.search(message):
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
