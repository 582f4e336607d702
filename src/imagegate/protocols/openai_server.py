"""The OpenAI-compatible images protocol, gateway side: what the OpenAI front accepts and answers.

``decode_body`` reads a client's ``POST /v1/images/generations`` body into a checked
``GenerationRequest``; ``encode_response`` / ``encode_error`` / ``error_headers`` /
``encode_models`` write the answers, as the ``openai`` SDK expects them (its
``image_generate_params`` and ``images_response`` types, seed 003, the rulings table in
``shared/protocols/README.md``). Pure code, no I/O; the client side is ``openai.py``.
"""

from __future__ import annotations

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
    PermissionDenied,
    RateLimited,
    TaskNotFound,
    Timeout,
    UnknownModel,
    ValidationError,
)
from imagegate.protocols.openai import PATH, RESPONSE_FORMATS
from imagegate.types import GenerationRequest, Task


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
