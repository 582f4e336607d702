"""The DashScope (Alibaba Model Studio) Wan text-to-image protocol: paths and the client side.

The endpoints and headers both sides share, and what the upstream adapter
(``providers/dashscope.py``) sends and reads: ``encode_request``, ``decode_submit`` /
``decode_task`` / ``decode_sync`` and, from ``dashscope_errors``, ``decode_error``. The
gateway's side is ``dashscope_server.py``. Pure code, no I/O.

Sources: seeds 001 (async ``image-generation``, key order of the body) and 002 (sync
``multimodal-generation``, answer shape), ``shared/protocols/dashscope.md`` (task, error and
legacy shapes).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from imagegate.errors import UpstreamError
from imagegate.protocols.dashscope_errors import decode_error, json_object, request_id_of
from imagegate.types import (
    GenerationRequest,
    ImageResult,
    TaskError,
    TaskStatus,
    UpstreamState,
    Usage,
)

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
