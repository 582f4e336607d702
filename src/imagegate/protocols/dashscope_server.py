"""The DashScope protocol, gateway side: the DashScope front's whole codec. Pure code, no I/O.

Bodies in: ``decode_generation_body`` / ``decode_synthesis_body`` / ``ignored_fields`` (from
``dashscope_wire``). Answers out: the ``encode_*`` functions here (submit, task, sync choices,
task list) and, from ``dashscope_errors``, ``encode_error`` / ``error_headers`` /
``task_error``. Sources: seeds 001 and 002, ``shared/protocols/dashscope.md`` and the rulings
table in ``shared/protocols/README.md`` (one error, three dialects; time strings in
Asia/Shanghai).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from imagegate.protocols.dashscope import CHOICES_FRONTS, DEFAULT_TZ
from imagegate.protocols.dashscope_errors import encode_error, error_headers, task_error
from imagegate.protocols.dashscope_wire import (
    decode_generation_body,
    decode_synthesis_body,
    ignored_fields,
)
from imagegate.types import ImageResult, Task, TaskError, TaskStatus

__all__ = [
    "decode_generation_body",
    "decode_synthesis_body",
    "encode_error",
    "encode_submit",
    "encode_sync",
    "encode_task",
    "encode_task_list",
    "encode_unknown_task",
    "error_headers",
    "format_time",
    "ignored_fields",
    "task_error",
    "task_output",
]


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
