"""The DashScope (Alibaba Model Studio) Wan text-to-image protocol, written down once.

Client side (``encode_request``, the paths, ``decode_submit`` / ``decode_task`` /
``decode_sync`` / ``decode_error``) is used by ``providers/dashscope.py``; server side
(``decode_generation_body`` / ``decode_synthesis_body`` from ``dashscope_wire``, and the
``encode_*`` functions below) by the gateway's DashScope front. Pure code, no I/O.

Sources: seeds 001 (async ``image-generation``, key order of the body) and 002 (sync
``multimodal-generation``, answer shape), ``shared/protocols/dashscope.md`` (task, error and
legacy shapes) and the rulings table in ``shared/protocols/README.md`` (one error, three
dialects; time strings in Asia/Shanghai).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from imagegate.errors import UpstreamError
from imagegate.protocols.dashscope_errors import (
    MODEL_NOT_EXIST,
    decode_error,
    encode_error,
    error_class,
    error_headers,
    json_object,
    request_id_of,
    task_error,
)
from imagegate.protocols.dashscope_wire import (
    decode_generation_body,
    decode_synthesis_body,
    ignored_fields,
)
from imagegate.types import (
    GenerationRequest,
    ImageResult,
    Task,
    TaskError,
    TaskStatus,
    UpstreamState,
    Usage,
)

__all__ = [
    "MODEL_NOT_EXIST",
    "decode_error",
    "decode_generation_body",
    "decode_synthesis_body",
    "encode_error",
    "error_class",
    "error_headers",
    "ignored_fields",
    "task_error",
]

PATH_GENERATION = "/services/aigc/image-generation/generation"
PATH_MULTIMODAL = "/services/aigc/multimodal-generation/generation"
PATH_SYNTHESIS = "/services/aigc/text2image/image-synthesis"
PATH_TASKS = "/tasks"
ASYNC_HEADER = "X-DashScope-Async"
WORKSPACE_HEADER = "X-DashScope-WorkSpace"
DEFAULT_TZ = "Asia/Shanghai"
#: the ``task.front`` values whose answers use the wan2.6 ``choices`` shape
CHOICES_FRONTS = frozenset({"dashscope-generation", "dashscope-sync"})
_ENDPOINTS = {
    "generation": "generation",
    "dashscope-generation": "generation",
    "synthesis": "synthesis",
    "dashscope-synthesis": "synthesis",
}


def task_path(task_id: str) -> str:
    return f"{PATH_TASKS}/{quote(task_id, safe='')}"


def cancel_path(task_id: str) -> str:
    return f"{task_path(task_id)}/cancel"


def endpoint_kind(endpoint: str) -> str:
    """``generation`` or ``synthesis``; accepts the catalog's ``dashscope-*`` names too."""
    try:
        return _ENDPOINTS[endpoint]
    except KeyError:
        raise ValueError(f"not a DashScope endpoint: {endpoint!r}") from None


def submit_path(endpoint: str, *, sync: bool = False) -> str:
    """The submit path: wan2.6 sync calls go to ``multimodal-generation``."""
    if endpoint_kind(endpoint) == "generation":
        return PATH_MULTIMODAL if sync else PATH_GENERATION
    return PATH_SYNTHESIS


# --------------------------------------------------------------------------- client side


def encode_request(
    request: GenerationRequest, endpoint: str, *, model_name: str | None = None
) -> dict[str, Any]:
    """The JSON body for a submit, in the seed pages' key order, with only the set fields.

    ``generation`` (wan2.6, seeds 001/002): ``input.messages``, ``negative_prompt`` under
    ``parameters``. ``synthesis`` (legacy): ``input.prompt`` and ``input.negative_prompt``.
    Reference images become ``image`` content parts / ``input.ref_img``. Extra keys go upstream
    only when asked explicitly: ``request.extra["dashscope"] = {"input": {...},
    "parameters": {...}}``.
    """
    kind = endpoint_kind(endpoint)
    body_input: dict[str, Any]
    if kind == "generation":
        content: list[dict[str, Any]] = [{"text": request.prompt}]
        content += [{"image": url} for url in request.reference_images]
        body_input = {"messages": [{"role": "user", "content": content}]}
    else:
        body_input = {"prompt": request.prompt}
        if request.negative_prompt is not None:
            body_input["negative_prompt"] = request.negative_prompt
        if request.reference_images:
            body_input["ref_img"] = request.reference_images[0]
    parameters: dict[str, Any] = {}
    for key, value in (
        ("prompt_extend", request.prompt_extend),
        ("watermark", request.watermark),
        ("n", request.n),
        ("negative_prompt", request.negative_prompt if kind == "generation" else None),
        ("size", request.size.star if request.size is not None else None),
        ("seed", request.seed),
    ):
        if value is not None:
            parameters[key] = value
    passthrough = request.extra.get("dashscope")
    if isinstance(passthrough, Mapping):
        body_input.update(passthrough.get("input") or {})
        parameters.update(passthrough.get("parameters") or {})
    return {"model": model_name or request.model, "input": body_input, "parameters": parameters}


def decode_submit(body: Any) -> UpstreamState:
    """``{"request_id", "output": {"task_id", "task_status": "PENDING"}}`` (seed 001)."""
    data, output = _envelope(body, "submit")
    task_id = output.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise UpstreamError("DashScope submit answer has no output.task_id", http_status=200)
    status = _status(output.get("task_status") or "PENDING")
    return UpstreamState(task_id, status, request_id=request_id_of(data), raw=data)


def decode_task(body: Any) -> UpstreamState:
    """A ``GET /tasks/{id}`` answer: status, images (both shapes), usage, error."""
    data, output = _envelope(body, "task")
    status = _status(output.get("task_status"))
    task_id = str(output.get("task_id") or "")
    images = _images(output)
    error: TaskError | None = None
    if status is TaskStatus.FAILED:
        error = TaskError(
            str(output.get("code") or "InternalError"),
            str(output.get("message") or "the task failed upstream without a message"),
        )
    elif status is TaskStatus.UNKNOWN:
        error = TaskError(
            "UNKNOWN",
            f"DashScope does not know task {task_id or '?'}: the id is wrong, older than "
            "24 hours, or belongs to another key",
        )
    failed = [image for image in images if not image.ok]
    warnings = tuple(
        f"image {index + 1} of {len(images)} failed upstream: "
        f"{image.error_code}: {image.error_message}"
        for index, image in enumerate(images)
        if not image.ok
    )
    usage = _usage(data.get("usage"), len(images) - len(failed))
    return UpstreamState(
        task_id,
        status,
        images=tuple(images),
        usage=usage if status is TaskStatus.SUCCEEDED else None,
        error=error,
        request_id=request_id_of(data),
        warnings=warnings,
        raw=data,
    )


def decode_sync(body: Any) -> UpstreamState:
    """A synchronous answer (seed 002 ``choices``, or a sync ``image-synthesis`` task shape).

    It has no task id of its own, so the request id stands in for one.
    """
    data, output = _envelope(body, "sync")
    if "task_status" in output:
        state = decode_task(data)
    else:
        images = _images(output)
        state = UpstreamState(
            "",
            TaskStatus.SUCCEEDED,
            images=tuple(images),
            usage=_usage(data.get("usage"), sum(1 for image in images if image.ok)),
            request_id=request_id_of(data),
            raw=data,
        )
    if not state.task_id:
        state = replace(state, task_id=state.request_id or "sync")
    return state


# --------------------------------------------------------------------------- server side


def format_time(dt: datetime | None, tz: str = DEFAULT_TZ) -> str | None:
    """``2025-01-08 16:03:59.840`` in ``tz`` (naive datetimes are taken as UTC)."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    local = dt.astimezone(ZoneInfo(tz))
    return local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def encode_submit(task: Task, request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "output": {"task_id": task.id, "task_status": str(task.status)},
    }


def encode_unknown_task(task_id: str, request_id: str) -> dict[str, Any]:
    """HTTP 200 ``UNKNOWN``: what the vendor says for a wrong, expired or foreign id."""
    return {"request_id": request_id, "output": {"task_id": task_id, "task_status": "UNKNOWN"}}


def encode_task(
    task: Task, request_id: str, image_urls: list[str], tz: str = DEFAULT_TZ
) -> dict[str, Any]:
    """A ``GET /tasks/{id}`` answer in the shape of the front that created the task.

    ``image_urls`` holds one link per successful image of ``task.images``, in order (when
    ``task.images`` is empty, one per URL). wan2.6 fronts get ``choices`` + ``finished``;
    others legacy ``results`` + ``task_metrics``. ``usage`` only once SUCCEEDED.
    """
    output = task_output(task, image_urls, tz)
    body: dict[str, Any] = {"request_id": request_id, "output": output}
    if task.status is TaskStatus.SUCCEEDED:
        body["usage"] = _encode_usage(task, _ok_count(task, image_urls))
    return body


def task_output(task: Task, image_urls: list[str], tz: str = DEFAULT_TZ) -> dict[str, Any]:
    """The ``output`` object of a task answer (shared by ``encode_task`` and the task list)."""
    output: dict[str, Any] = {"task_id": task.id, "task_status": str(task.status)}
    for key, value in (
        ("submit_time", task.submit_time),
        ("scheduled_time", task.scheduled_time),
        ("end_time", task.end_time),
    ):
        if value is not None:
            output[key] = format_time(value, tz)
    if task.status is TaskStatus.FAILED:
        error = task.error or TaskError("InternalError", "the task failed")
        output["code"] = error.code
        output["message"] = error.message
        return output
    if task.status is not TaskStatus.SUCCEEDED:
        return output
    pairs = _pair_images(task, image_urls)
    if task.front in CHOICES_FRONTS:
        output["finished"] = True
        output["choices"] = [_choice(url) for image, url in pairs if image.ok and url]
        return output
    results: list[dict[str, Any]] = []
    for image, url in pairs:
        if not image.ok:
            results.append({"code": image.error_code, "message": image.error_message or ""})
            continue
        item: dict[str, Any] = {"orig_prompt": task.request.prompt}
        if image.actual_prompt:
            item["actual_prompt"] = image.actual_prompt
        item["url"] = url
        results.append(item)
    ok = sum(1 for image, _ in pairs if image.ok)
    output["results"] = results
    output["task_metrics"] = {"TOTAL": len(pairs), "SUCCEEDED": ok, "FAILED": len(pairs) - ok}
    return output


def encode_sync(task: Task, request_id: str, image_urls: list[str]) -> dict[str, Any]:
    """The seed 002 answer of ``multimodal-generation`` for a SUCCEEDED task.

    A FAILED task is answered with ``encode_error(task_error(task), request_id)`` instead.
    """
    pairs = _pair_images(task, image_urls)
    choices = [_choice(url) for image, url in pairs if image.ok and url]
    return {
        "output": {"choices": choices, "finished": True},
        "usage": _encode_usage(task, len(choices), choices_shape=True),
        "request_id": request_id,
    }


def encode_task_list(
    tasks: Iterable[Task],
    total: int,
    page_no: int,
    page_size: int,
    request_id: str,
    urls_for: Callable[[Task], list[str]],
    tz: str = DEFAULT_TZ,
) -> dict[str, Any]:
    """``GET /tasks`` (shape UNCONFIRMED by any page; this is imagegate's pick).

    Flat, like the 2.x SDK's ``JobList`` parser expects and 1.x returns whole as ``.output``:
    ``{request_id, page_no, page_size, total, tasks: [...]}``. Each item carries the task
    fields at its top level (``task_id``, ``task_status``, ``model``, times) so the SDK's
    ``Job`` reads them, plus the full ``output`` (results or choices) and ``usage``.
    """
    items = []
    for task in tasks:
        urls = urls_for(task) if task.status is TaskStatus.SUCCEEDED else []
        output = task_output(task, urls, tz)
        item: dict[str, Any] = {
            "task_id": task.id,
            "task_status": str(task.status),
            "model": task.model,
        }
        item.update({k: v for k, v in output.items() if k.endswith("_time")})
        item["output"] = output
        if task.status is TaskStatus.SUCCEEDED:
            item["usage"] = _encode_usage(task, _ok_count(task, urls))
        items.append(item)
    return {
        "request_id": request_id,
        "page_no": page_no,
        "page_size": page_size,
        "total": total,
        "tasks": items,
    }


# --------------------------------------------------------------------------- helpers


def _envelope(body: Any, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    data = json_object(body)
    output = data.get("output")
    if not isinstance(output, dict):
        if data.get("code"):
            raise decode_error(200, data)
        raise UpstreamError(f"DashScope {what} answer has no output object", http_status=200)
    return data, output


_STATUS_ALIASES = {"SUSPENDED": TaskStatus.PENDING}


def _status(value: Any) -> TaskStatus:
    text = str(value or "").upper()
    if text in _STATUS_ALIASES:
        return _STATUS_ALIASES[text]
    try:
        return TaskStatus(text)
    except ValueError:
        raise UpstreamError(f"DashScope answered an unknown task_status {value!r}") from None


def _images(output: Mapping[str, Any]) -> list[ImageResult]:
    images: list[ImageResult] = []
    for item in output.get("results") or []:
        if not isinstance(item, dict):
            continue
        meta = {"orig_prompt": item["orig_prompt"]} if item.get("orig_prompt") else {}
        if item.get("url") or item.get("b64_image"):
            images.append(
                ImageResult(
                    url=item.get("url") or None,
                    data=_b64(item.get("b64_image")),
                    actual_prompt=item.get("actual_prompt"),
                    metadata=meta,
                )
            )
        elif item.get("code") or item.get("message"):
            images.append(
                ImageResult(
                    error_code=str(item.get("code") or "InternalError"),
                    error_message=str(item.get("message") or ""),
                    metadata=meta,
                )
            )
    for choice in output.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        for part in (message or {}).get("content") or []:
            if isinstance(part, dict) and part.get("image"):
                images.append(ImageResult(url=str(part["image"])))
    return images


def _b64(value: Any) -> bytes | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return None


def _usage(value: Any, ok_images: int) -> Usage:
    usage = value if isinstance(value, dict) else {}
    count = usage.get("image_count")
    return Usage(
        image_count=count if isinstance(count, int) else ok_images,
        size=usage.get("size") if isinstance(usage.get("size"), str) else None,
    )


def _pair_images(task: Task, image_urls: list[str]) -> list[tuple[ImageResult, str | None]]:
    if not task.images:
        return [(ImageResult(url=url), url) for url in image_urls]
    urls = iter(image_urls)
    return [(image, next(urls, image.url) if image.ok else None) for image in task.images]


def _ok_count(task: Task, image_urls: list[str]) -> int:
    return sum(1 for image, url in _pair_images(task, image_urls) if image.ok and url)


def _choice(url: str | None) -> dict[str, Any]:
    return {
        "finish_reason": "stop",
        "message": {"content": [{"image": url, "type": "image"}], "role": "assistant"},
    }


def _encode_usage(task: Task, count: int, *, choices_shape: bool | None = None) -> dict[str, Any]:
    if choices_shape is None:
        choices_shape = task.front in CHOICES_FRONTS
    if not choices_shape:
        return {"image_count": count}
    usage: dict[str, Any] = {"image_count": count, "input_tokens": 0, "output_tokens": 0}
    size = (task.usage.size if task.usage else None) or (
        task.request.size.star if task.request.size else None
    )
    if size:
        usage["size"] = size
    usage["total_tokens"] = 0
    return usage
