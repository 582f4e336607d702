"""DashScope's error dialect, both ways: vendor codes to imagegate errors and back.

Client side, ``decode_error`` reads a non-2xx answer (``{"request_id", "code", "message"}``,
protocols/dashscope.md 4.4; or any non-JSON text) into the error class of its code (4.5).
Server side, ``encode_error`` answers an imagegate error with the status and code of the
rulings table in ``shared/protocols/README.md``. Pure code, no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

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
from imagegate.protocols.headers import parse_retry_after
from imagegate.types import Task, TaskError

MODEL_NOT_EXIST = "Model not exist."


def decode_error(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> ImagegateError:
    """A non-2xx answer (or a 200 carrying a top-level ``code``) as a typed error.

    ``body`` may be a dict, JSON text, bytes, any other text or None. The vendor's ``code``,
    ``message`` and ``request_id`` are kept; unknown codes fall back to the HTTP status.
    """
    data = json_object(body)
    code = str(data.get("code") or "") or None
    message = str(data.get("message") or data.get("msg") or "") or _text(body, status)
    request_id = request_id_of(data) or _header(headers, "x-request-id")
    kwargs: dict[str, Any] = {
        "vendor_code": code,
        "request_id": request_id,
        "http_status": status,
    }
    text = f"DashScope: {message}"
    cls = error_class(code, status, message)
    if cls is RateLimited:
        retry_after = parse_retry_after(_header(headers, "retry-after"))
        return RateLimited(text, retry_after=retry_after, **kwargs)
    if code == "InvalidApiKey" or cls is AuthError:
        text += " (check DASHSCOPE_API_KEY and that the key belongs to this region)"
    return cls(text, **kwargs)


def error_class(code: str | None, status: int, message: str = "") -> type[ImagegateError]:
    """The imagegate error class for a DashScope code (protocols/dashscope.md 4.5)."""
    if code:
        if code == "InvalidParameter" and MODEL_NOT_EXIST.rstrip(".") in message:
            return UnknownModel
        for prefix, cls in _CODE_CLASSES:
            if code == prefix or code.startswith(prefix + "."):
                return cls
    if status == 429:
        return RateLimited
    if status == 401:
        return AuthError
    if status == 403:
        return PermissionDenied
    if status == 408:
        return Timeout
    if 400 <= status < 500:
        return InvalidRequest
    return UpstreamError


_CODE_CLASSES: tuple[tuple[str, type[ImagegateError]], ...] = (
    ("InvalidApiKey", AuthError),
    ("AccessDenied", PermissionDenied),
    ("Arrearage", PermissionDenied),
    ("Throttling", RateLimited),
    ("DataInspectionFailed", ContentRejected),
    ("UnsupportedOperation", UnsupportedOperation),
    ("RequestTimeOut", Timeout),
    ("BadRequest.TooLarge", InvalidRequest),
    ("BadRequest", ValidationError),
    ("InvalidParameter", ValidationError),
    ("InvalidURL", ValidationError),
    ("InternalError", UpstreamError),
)


def task_error(task: Task) -> ImagegateError:
    """A FAILED task as the error a synchronous endpoint answers with (by its vendor code)."""
    error = task.error or TaskError("InternalError", "the task failed")
    cls = error_class(error.code, 500, error.message)
    if cls in (InvalidRequest, UpstreamError):
        cls = TaskFailed
    return cls(error.message, vendor_code=error.code, request_id=task.request_id)


def encode_error(error: ImagegateError, request_id: str) -> tuple[int, dict[str, Any]]:
    """HTTP status and ``{request_id, code, message}`` per the rulings table.

    A body too large is an ``InvalidRequest`` with ``http_status=413`` (413
    ``BadRequest.TooLarge``); ``error_headers`` gives the ``Retry-After`` of a 429.
    """
    status, code = _status_code(error)
    message = error.message
    if isinstance(error, UnknownModel) and MODEL_NOT_EXIST not in message:
        message = f"{MODEL_NOT_EXIST} {message}"
    return status, {"request_id": request_id, "code": code, "message": message}


def error_headers(error: ImagegateError) -> dict[str, str]:
    """``Retry-After`` in whole seconds (1 to 8) for a rate limit; nothing otherwise."""
    if not isinstance(error, RateLimited):
        return {}
    seconds = error.retry_after if error.retry_after is not None else 1
    return {"Retry-After": str(max(1, min(8, math.ceil(seconds))))}


def _status_code(error: ImagegateError) -> tuple[int, str]:
    if isinstance(error, UnknownModel):
        return 400, "InvalidParameter"
    if isinstance(error, InvalidRequest):
        if error.http_status == 413:
            return 413, "BadRequest.TooLarge"
        return 400, "InvalidParameter"
    for cls, answer in _ERROR_ANSWERS:
        if isinstance(error, cls):
            return answer
    if isinstance(error, TaskFailed) and error.vendor_code:
        return 500, error.vendor_code
    return 500, "InternalError"


_ERROR_ANSWERS: tuple[tuple[type[ImagegateError], tuple[int, str]], ...] = (
    (AuthError, (401, "InvalidApiKey")),
    (PermissionDenied, (403, "AccessDenied")),
    (RateLimited, (429, "Throttling.RateQuota")),
    (ContentRejected, (400, "DataInspectionFailed")),
    (UnsupportedOperation, (400, "UnsupportedOperation")),
    (Timeout, (408, "RequestTimeOut")),
    (TaskNotFound, (400, "InvalidParameter")),
    (NotConfigured, (500, "InternalError")),
)


def json_object(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _text(body: Any, status: int) -> str:
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str) and body.strip() and not body.lstrip().startswith("{"):
        return f"HTTP {status}: {body.strip()[:200]}"
    return f"HTTP {status} without an error message"


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def request_id_of(data: Mapping[str, Any]) -> str | None:
    value = data.get("request_id")
    return str(value) if value else None
