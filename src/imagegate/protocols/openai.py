"""The OpenAI-compatible images protocol (``POST /v1/images/generations``): client side.

The request imagegate sends an OpenAI-compatible upstream (``encode_request``) and how its
answers and errors read (``decode_response`` / ``decode_error``), used by
``providers/openai_compat.py``; the gateway's side of the same protocol is in
``openai_server.py``. Pure code, no I/O.

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

from imagegate.errors import (
    AuthError,
    ContentRejected,
    ImagegateError,
    InvalidRequest,
    NotConfigured,
    PermissionDenied,
    RateLimited,
    UnknownModel,
    UpstreamError,
    ValidationError,
)
from imagegate.protocols.headers import parse_retry_after
from imagegate.sizes import parse_pixels
from imagegate.types import (
    GenerationRequest,
    ImageResult,
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


def _first_problem(exc: PydanticError) -> str:
    first = exc.errors()[0]
    where = ".".join(map(str, first["loc"])) or "body"
    return f"{where}: {first['msg']}"
