"""The Chanjing (蝉镜) open-API image protocol: shared names and the client side. No I/O.

The codes, paths, status words and page query both sides share, and what the upstream
adapter (``providers/chanjing.py``) sends and reads: submit bodies, envelopes, tokens, task
items and pages. The gateway's side (client bodies in, answers out) is ``chanjing_server.py``.
Sources: seed pages 000 (wan2.2-t2i) and 004 (kling-v2-1), ``protocols/chanjing.md`` and the
rulings in ``protocols/README.md``.

Every answer is an envelope ``{trace_id, code, msg, data}`` sent with HTTP 200; ``code`` 0 is
success. Bodies keep the key order of the seed pages, so a seed example encodes byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from imagegate.catalog import Catalog, effective, load_catalog, warnings_for
from imagegate.errors import (
    AuthError,
    ContentRejected,
    ImagegateError,
    InvalidRequest,
    RateLimited,
    TaskNotFound,
    UnknownModel,
    UpstreamError,
    ValidationError,
)
from imagegate.types import (
    GenerationRequest,
    ImageResult,
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


@dataclass(frozen=True)
class PageQuery:
    """The body of ``POST /open/v1/ai_creation/task/page``."""

    unique_ids: tuple[str, ...] = ()
    type: int = CREATION_TYPE_IMAGE
    page: int = 1
    page_size: int = 10
    is_success: bool = False


def check_page_query(query: PageQuery) -> PageQuery:
    """``query`` if it keeps the page endpoint's documented bounds; else ``ValidationError``."""
    if query.type != CREATION_TYPE_IMAGE:
        raise ValidationError(
            f"type is {query.type}; imagegate serves image creation only (type 3)", field="type"
        )
    if len(query.unique_ids) > PAGE_MAX:
        raise ValidationError(
            f"unique_ids has {len(query.unique_ids)} ids; at most {PAGE_MAX} are allowed",
            field="unique_ids",
        )
    if query.page < 1:
        raise ValidationError(f"page is {query.page}; pages start at 1", field="page")
    if not 1 <= query.page_size <= PAGE_MAX:
        raise ValidationError(
            f"page_size is {query.page_size}; allowed 1 to {PAGE_MAX}", field="page_size"
        )
    return query


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
        if NO_TASK_TEXT.search(msg):
            return TaskNotFound(text, **{**kwargs, "field": "unique_id"})
        if CONTENT_TEXT.search(msg):
            return ContentRejected(text, **kwargs)
        return ValidationError(text, **kwargs)
    return UpstreamError(text, **kwargs)


#: how a 40000 message says "no such task" / "content rejected" (ours and, as far as
#: known, the vendor's); ``chanjing_server.encode_error`` makes sure our own messages match
NO_TASK_TEXT = re.compile(r"任务不存在|\btask\b.*\b(not exist|not found)", re.IGNORECASE)
CONTENT_TEXT = re.compile(r"content\b.*\breject|reject.*\bcontent\b|审核|违规|敏感", re.IGNORECASE)


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
    """The page endpoint's body, after its documented bounds are checked."""
    check_page_query(query)
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
