"""The OpenAI-compatible images protocol (``POST /v1/images/generations``), written down once.

Client side (``encode_request`` / ``decode_response`` / ``decode_error``) is used by
``providers/openai_compat.py``; server side (``decode_body`` / ``encode_response`` /
``encode_error`` / ``encode_models``) by the gateway's OpenAI front. Pure code, no I/O.

Sources: seed 003 (the yunwu-api page for ``wan2.7-image-pro``: strict schema, key order
``model, prompt, size, n, watermark, seed``), the ``openai`` SDK's ``image_generate_params``
and ``images_response`` types, and ``shared/protocols/openai_compatible.md``.

``response_format`` is never sent upstream unless the caller asks: seed 003's error example
shows that deployment parsing the field into an object type and rejecting the plain string
(``new_api_error`` / ``invalid_request``).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticError

from imagegate.catalog import Catalog, build_request
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
from imagegate.protocols.headers import parse_retry_after
from imagegate.sizes import parse_pixels
from imagegate.types import (
    GenerationRequest,
    ImageResult,
    Task,
    TaskError,
    TaskStatus,
    UpstreamState,
    Usage,
)

PATH = "/v1/images/generations"
RESPONSE_FORMATS = ("url", "b64_json")
#: error codes / messages that mean "the content was refused", whatever the status
CONTENT_CODES = frozenset(
    {"content_policy_violation", "moderation_blocked", "DataInspectionFailed"}
)
_SAFETY = re.compile(
    r"safety system|content polic|content_policy|inappropriate|data ?inspection",
    re.IGNORECASE,
)
_REQUEST_ID = re.compile(r"\s*\(request id: ([^)]+)\)\s*$")
_GO_FIELD = re.compile(r"Go struct field [\w.]*?\.(\w+) of type")
_PIXEL_TEXT = re.compile(r"^\d+[*x]\d+$")


# --------------------------------------------------------------------------- client side


def encode_request(
    request: GenerationRequest,
    *,
    model_name: str | None = None,
    response_format: str | None = None,
) -> dict[str, Any]:
    """The JSON body for ``POST /v1/images/generations``, in seed 003's key order.

    Only fields the caller set are sent, so the upstream's defaults apply. Fields seed 003
    does not list (``negative_prompt``, ``prompt_extend``, ``quality``, ``extra``) are sent
    after them when set, never dropped: a strict upstream then rejects them visibly.
    """
    if request.reference_images:
        raise ValidationError(
            "reference_images are not part of POST /v1/images/generations; "
            "remove them or use a model whose upstream takes reference images",
            field="reference_images",
        )
    body: dict[str, Any] = {"model": model_name or request.model, "prompt": request.prompt}
    if request.size is not None:
        body["size"] = size_text(request)
    for key in ("n", "watermark", "seed", "negative_prompt", "prompt_extend", "quality"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    if response_format is not None:
        if response_format not in RESPONSE_FORMATS:
            raise ValidationError(
                f"response_format must be url or b64_json, got {response_format!r}",
                field="response_format",
            )
        body["response_format"] = response_format
    for key, value in request.extra.items():
        body.setdefault(key, value)
    return body


def size_text(request: GenerationRequest) -> str:
    """A tier stays a tier, pixels keep the caller's ``*``/``x``, anything else is ``W*H``."""
    size = request.size
    assert size is not None
    if size.tier:
        return size.tier
    text = size.text.strip()
    if _PIXEL_TEXT.match(text) and parse_pixels(text) == (size.width, size.height):
        return text
    return size.star


class _WireImage(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class _WireResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    created: int | None = None
    data: list[_WireImage]


def decode_response(
    body: Any, *, request_id: str | None = None, expected_n: int | None = None
) -> UpstreamState:
    """A 200 answer as a terminal ``UpstreamState``.

    The upstream is synchronous, so there is no task id: it is the ``x-request-id`` when the
    upstream gave one, else ``oai-<uuid>``. A 200 whose body is an ``error`` object (new-api
    relaying a failed DashScope task) is FAILED. Fewer images than ``expected_n`` is a
    partial success: the missing ones appear as failed images (``IMAGE_MISSING``), like
    DashScope's per-image failures, plus a visible warning.
    """
    task_id = request_id or f"oai-{uuid.uuid4().hex}"
    if isinstance(body, Mapping) and "error" in body and "data" not in body:
        error = decode_error(200, body)
        return UpstreamState(
            task_id=task_id,
            status=TaskStatus.FAILED,
            error=TaskError(error.vendor_code or error.code, error.message),
            request_id=error.request_id or request_id,
            raw=dict(body),
        )
    try:
        wire = _WireResponse.model_validate(body)
    except PydanticError as exc:
        raise UpstreamError(
            f"the images answer is not {{created, data: [...]}}: {_first_problem(exc)}",
            request_id=request_id,
        ) from None
    images = [_image(item, index, request_id) for index, item in enumerate(wire.data)]
    if not images:
        return UpstreamState(
            task_id=task_id,
            status=TaskStatus.FAILED,
            error=TaskError("NO_IMAGES", "the upstream answered 200 with no images"),
            request_id=request_id,
            raw=_redacted(body),
        )
    warnings: list[str] = []
    returned = len(images)
    if expected_n is not None and returned < expected_n:
        warnings.append(f"the upstream returned {returned} of {expected_n} requested images")
        images += [
            ImageResult(
                error_code="IMAGE_MISSING",
                error_message=f"image {index + 1} of {expected_n} was not returned upstream",
            )
            for index in range(returned, expected_n)
        ]
    return UpstreamState(
        task_id=task_id,
        status=TaskStatus.SUCCEEDED,
        images=tuple(images),
        usage=Usage(image_count=returned),
        request_id=request_id,
        warnings=tuple(warnings),
        raw=_redacted(body),
    )


def _image(item: _WireImage, index: int, request_id: str | None) -> ImageResult:
    prompt = item.revised_prompt or None
    if item.b64_json:
        text = (
            item.b64_json.split(",", 1)[1] if item.b64_json.startswith("data:") else item.b64_json
        )
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise UpstreamError(
                f"data[{index}].b64_json is not valid base64", request_id=request_id
            ) from None
        return ImageResult(url=item.url, data=data, actual_prompt=prompt, content_type=_sniff(data))
    if item.url:
        return ImageResult(url=item.url, actual_prompt=prompt, content_type=_type_of(item.url))
    return ImageResult(
        error_code="IMAGE_MISSING", error_message=f"data[{index}] has neither url nor b64_json"
    )


def _sniff(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def _type_of(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    if path.endswith((".jpg", ".jpeg")):
        return "image/jpeg"
    return "image/webp" if path.endswith(".webp") else "image/png"


def _redacted(body: Any) -> dict[str, Any] | None:
    """The raw answer for the record, with base64 payloads replaced by their length."""
    if not isinstance(body, Mapping):
        return None
    raw = dict(body)
    if isinstance(raw.get("data"), list):
        raw["data"] = [
            {
                k: (f"<{len(v)} base64 chars>" if k == "b64_json" and v else v)
                for k, v in item.items()
            }
            if isinstance(item, Mapping)
            else item
            for item in raw["data"]
        ]
    return raw


def decode_error(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> ImagegateError:
    """A non-200 answer (``{error: {message, type, param, code}}`` or anything else) as an error.

    Keeps ``vendor_code`` (``error.code``, else ``error.type``), ``request_id`` (the
    ``x-request-id`` header, else the ``(request id: …)`` suffix new-api appends) and
    ``http_status``. A body saying "invalid request" wins over a 5xx status (seed 003 labels
    its unmarshal error "server error"): retrying a request the upstream cannot read would
    only fail again.
    """
    lower = {k.lower(): v for k, v in (headers or {}).items()}
    message, kind, param, code, body_id = _error_fields(body)
    match = _REQUEST_ID.search(message)
    if match:
        message = message[: match.start()]
    request_id = lower.get("x-request-id") or body_id or (match[1] if match else None)
    vendor = code or kind
    message = message or f"the upstream answered HTTP {status} with no error message"
    meta: dict[str, Any] = {
        "vendor_code": vendor,
        "request_id": request_id,
        "http_status": status,
    }
    if code in CONTENT_CODES or (status < 500 and _SAFETY.search(message)):
        return ContentRejected(f"content rejected upstream: {message}", **meta)
    if code == "model_not_found":
        return UnknownModel(message, field="model", **meta)
    if status == 401:
        return AuthError(f"the upstream rejected the API key: {message}", **meta)
    if status in (402, 403) or code in ("insufficient_quota", "insufficient_user_quota"):
        return PermissionDenied(message, **meta)
    if status == 429:
        seconds = parse_retry_after(lower.get("retry-after"))
        if seconds is None and lower.get("retry-after-ms"):
            seconds = (parse_retry_after(lower["retry-after-ms"]) or 0) / 1000
        return RateLimited(message, retry_after=seconds, **meta)
    if status == 404:
        return NotConfigured(
            f"the upstream has no {PATH} (HTTP 404: {message}); check the base URL", **meta
        )
    unreadable = code in ("invalid_request", "invalid_request_error") or message.startswith(
        "invalid request body"
    )
    if unreadable or kind == "invalid_request_error" or status in (400, 413, 422):
        go_field = _GO_FIELD.search(message)
        field = param or (go_field[1] if go_field else None)
        error_class = InvalidRequest if unreadable else ValidationError
        return error_class(message, field=field, **meta)
    if status >= 500 or status in (408, 409) or status < 400:
        return UpstreamError(f"upstream HTTP {status}: {message}", **meta)
    return InvalidRequest(message, field=param, **meta)


def _error_fields(body: Any) -> tuple[str, str | None, str | None, str | None, str | None]:
    """(message, type, param, code, request_id) from any error body a gateway sends."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        return body.strip()[:500], None, None, None, None
    if not isinstance(body, Mapping):
        return "", None, None, None, None
    error = body.get("error")
    body_id = _text(body.get("request_id"))
    if isinstance(error, str):
        return error, None, None, _text(body.get("code")), body_id
    source = error if isinstance(error, Mapping) else body
    message = _text(source.get("message")) or _text(source.get("description")) or ""
    return (
        message,
        _text(source.get("type")),
        _text(source.get("param")),
        _text(source.get("code")),
        body_id,
    )


def _text(value: Any) -> str | None:
    """Strings and ints as text; ``""`` and ``None`` as absent."""
    if value is None or value == "" or isinstance(value, bool | dict | list):
        return None
    return str(value)


# --------------------------------------------------------------------------- server side


class _Body(BaseModel):
    """What the gateway accepts on ``POST /v1/images/generations``.

    Everything the ``openai`` SDK's ``images.generate`` can send, plus the Wan parameters a
    client passes with ``extra_body``. ``null`` means "not given", as the SDK intends.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    prompt: str
    size: str | None = None
    n: int | None = None
    response_format: str | None = None
    seed: int | None = None
    watermark: bool | None = None
    negative_prompt: str | None = None
    prompt_extend: bool | None = None
    quality: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    style: str | None = None
    background: str | None = None
    moderation: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    stream: bool | None = None
    partial_images: int | None = None
    complexity: str | None = None
    frame_count: int | None = None
    frame_duration_ms: int | None = None
    svg: dict[str, Any] | None = None


#: OpenAI fields that do not apply to these models: the values that change nothing (accepted
#: and ignored); any other value would silently change the result, so it is rejected.
#: ``user`` and ``safety_identifier`` only identify the end user and are always ignored.
_INERT: dict[str, tuple[Any, ...]] = {
    "style": (),
    "background": ("auto", "opaque"),
    "moderation": ("auto",),
    "output_format": (),
    "output_compression": (100,),
    "stream": (False,),
    "partial_images": (),
    "complexity": (),
    "frame_count": (),
    "frame_duration_ms": (),
    "svg": (),
}
#: catalog field -> OpenAI param, for error messages (Chanjing-style size rules say "size")
_NAMES = {"aspect_ratio": "size", "clarity": "size"}


def decode_body(body: Any, catalog: Catalog) -> tuple[GenerationRequest, str]:
    """A client's body as a checked ``GenerationRequest`` and its ``response_format``.

    ``body`` is the parsed JSON value (``bytes`` are parsed first). ``n`` defaults to 1 and
    ``size: "auto"`` means the model's default size. Raises ``InvalidRequest`` (malformed,
    unknown field), ``UnknownModel`` or ``ValidationError``, each naming the OpenAI param.
    """
    if isinstance(body, bytes | bytearray):
        try:
            wire = _Body.model_validate_json(body)
        except PydanticError as exc:
            raise _invalid(exc) from None
    else:
        if not isinstance(body, Mapping):
            raise InvalidRequest(f"the request body must be a JSON object, got {_json_type(body)}")
        try:
            wire = _Body.model_validate(dict(body))
        except PydanticError as exc:
            raise _invalid(exc) from None
    if not wire.model:
        raise InvalidRequest(
            f"model is required; known models: {', '.join(catalog.names())}", field="model"
        )
    entry = catalog.get(wire.model)
    response_format = wire.response_format or "url"
    if response_format not in RESPONSE_FORMATS:
        raise ValidationError(
            f"response_format must be url or b64_json, got {wire.response_format!r}",
            field="response_format",
        )
    for name, inert in _INERT.items():
        value = getattr(wire, name)
        if value is not None and value not in inert:
            kept = f" (accepted: {', '.join(map(str, inert))})" if inert else ""
            raise ValidationError(
                f"{name} {value!r} is not supported by {entry.name}: imagegate cannot honour "
                f"it and will not ignore it silently; omit it{kept}",
                field=name,
            )
    quality = None if wire.quality == "auto" else wire.quality
    if quality is not None and not entry.takes("quality"):
        raise ValidationError(
            f"quality {quality!r} is not supported by {entry.name}; omit it or send auto",
            field="quality",
        )
    request = build_request(
        entry.name,
        wire.prompt,
        size=None if wire.size in (None, "auto") else wire.size,
        n=1 if wire.n is None else wire.n,
        seed=wire.seed,
        negative_prompt=wire.negative_prompt,
        prompt_extend=wire.prompt_extend,
        watermark=wire.watermark,
        quality=quality,
        catalog=catalog,
        names=_NAMES,
    )
    return request, response_format


def _invalid(exc: PydanticError) -> InvalidRequest:
    errors = exc.errors()
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    if unknown:
        known = ", ".join(_Body.model_fields)
        return InvalidRequest(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"{PATH} takes {known}",
            field=unknown[0],
        )
    first = errors[0]
    if first["type"] == "json_invalid":
        return InvalidRequest(f"the request body is not valid JSON: {first['msg']}")
    if first["type"] == "model_type" or not first["loc"]:
        return InvalidRequest(
            f"the request body must be a JSON object, got {_json_type(first.get('input'))}"
        )
    param = str(first["loc"][0])
    return InvalidRequest(f"{param} {_problem(first)}", field=param)


_EXPECTED = {
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "an object",
}


def _problem(error: Mapping[str, Any]) -> str:
    kind = str(error["type"])
    if kind == "missing":
        return "is required"
    if kind in _EXPECTED:
        got = error.get("input")
        return f"must be {_EXPECTED[kind]}, got {_json_type(got)} {got!r}"
    return f"is invalid: {error['msg']}"


def _first_problem(exc: PydanticError) -> str:
    first = exc.errors()[0]
    where = ".".join(map(str, first["loc"])) or "body"
    return f"{where}: {first['msg']}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object" if isinstance(value, Mapping) else type(value).__name__


def encode_response(task: Task, images: list[tuple[str | None, str | None]]) -> dict[str, Any]:
    """``{created, data: [{url | b64_json, revised_prompt}]}`` for a finished task.

    ``images`` holds one ``(url, b64_json)`` per result image, in the task's order; entries
    with neither (a failed image) are left out. ``created`` is the task's submit time.
    """
    data = []
    for index, (url, b64) in enumerate(images):
        if url is None and b64 is None:
            continue
        item: dict[str, Any] = {}
        if url is not None:
            item["url"] = url
        if b64 is not None:
            item["b64_json"] = b64
        stored = task.images[index] if index < len(task.images) else None
        item["revised_prompt"] = (stored.actual_prompt if stored else None) or ""
        data.append(item)
    return {"created": int(task.submit_time.timestamp()), "data": data}


def encode_error(error: ImagegateError, request_id: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and ``{error: {message, type, param, code}}`` body (rulings table).

    The message ends with ``(request id: …)`` like new-api, so the id survives in SDK
    exceptions and logs. A sync wait that runs out is 504 ``server_error`` / ``timeout``
    (the gateway timed out waiting on its upstream; the task keeps running).
    """
    status, kind, code = _status_of(error)
    param = error.field
    if isinstance(error, UnknownModel):
        param = param or "model"
    message = f"{error.message} (request id: {request_id})"
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _status_of(error: ImagegateError) -> tuple[int, str, str | None]:
    if isinstance(error, UnknownModel):
        return 404, "invalid_request_error", "model_not_found"
    if isinstance(error, InvalidRequest):
        return 400, "invalid_request_error", error.code
    if isinstance(error, ContentRejected):
        return 400, "invalid_request_error", "content_policy_violation"
    if isinstance(error, AuthError):
        return 401, "invalid_request_error", "invalid_api_key"
    if isinstance(error, PermissionDenied):
        return 403, "permission_error", error.code
    if isinstance(error, RateLimited):
        return 429, "rate_limit_error", "rate_limit_exceeded"
    if isinstance(error, TaskNotFound):
        return 404, "invalid_request_error", error.code
    if isinstance(error, Timeout):
        return 504, "server_error", error.code
    if error.code == "unsupported_operation":
        return 400, "invalid_request_error", error.code
    return 500, "server_error", error.code


def error_headers(error: ImagegateError, request_id: str) -> dict[str, str]:
    """Headers an error answer carries: ``x-request-id`` and, on 429, ``Retry-After`` (<= 8 s)."""
    headers = {"x-request-id": request_id}
    if isinstance(error, RateLimited):
        seconds = error.retry_after if error.retry_after is not None else 1
        headers["Retry-After"] = str(min(8, max(1, int(-(-seconds // 1)))))
    return headers


_OWNERS = {"dashscope": "alibaba", "chanjing": "chanjing", "openai": "openai-compatible"}


def encode_models(catalog: Catalog, created: int) -> dict[str, Any]:
    """``GET /v1/models``: every catalog model by canonical name (aliases are accepted too)."""
    return {
        "object": "list",
        "data": [
            {
                "id": model.name,
                "object": "model",
                "created": created,
                "owned_by": _OWNERS.get(model.vendor, model.vendor),
            }
            for model in catalog
        ],
    }
