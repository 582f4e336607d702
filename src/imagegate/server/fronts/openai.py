"""The OpenAI-compatible front: ``/v1/images/generations`` and ``/v1/models``.

A thin translator over ``protocols/openai_server.py``. The images route is synchronous, as OpenAI's
is: it submits an ordinary durable task and waits for it (``ctx.sync_timeout``), so a client
that disconnects or times out loses nothing and the task still finishes in the store. Errors
are ``{error: {message, type, param, code}}`` with the status the official SDK maps to its
exception classes (rulings table); every answer carries ``x-request-id``.

One imagegate addition: ``GET /v1/images/generations/{task_id}`` reads a task the sync route
gave up waiting for (its id is in the 504 message); an unknown id, or another key's, is 404.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import anyio
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from imagegate.errors import (
    ContentRejected,
    ImagegateError,
    InvalidRequest,
    TaskNotFound,
    Timeout,
    UpstreamError,
    ValidationError,
)
from imagegate.protocols import openai as wire
from imagegate.protocols import openai_server as proto
from imagegate.server.context import ApiKey, GatewayContext
from imagegate.server.guard import admit, bearer_key
from imagegate.types import ImageResult, Task, TaskStatus

PREFIXES = ("/v1",)
FRONT = "openai"
MODELS_PATH = "/v1/models"
#: task error codes that mean the upstream refused the content (answered 400, not 500)
_CONTENT_CODES = wire.CONTENT_CODES | {ContentRejected.code}
#: task error codes that mean the upstream found a parameter it would not take
_PARAMETER_CODES = frozenset({"InvalidParameter", ValidationError.code, "invalid_request_error"})


def error_response(error: ImagegateError, request_id: str) -> Response:
    """``{error: {...}}`` with the rulings' status; 429 carries ``Retry-After`` (<= 8 s).

    A sync wait that ran out (504) says ``x-should-retry: false``: the task is still running,
    and the official SDK would otherwise resubmit it (it retries every 5xx), paying twice.
    """
    status, body = proto.encode_error(error, request_id)
    headers = proto.error_headers(error, request_id)
    if isinstance(error, Timeout):
        headers["x-should-retry"] = "false"
    return JSONResponse(body, status_code=status, headers=headers)


def router(ctx: GatewayContext) -> APIRouter:
    """The OpenAI-style routes, bound to ``ctx``."""
    api = APIRouter()

    @api.post(wire.PATH)
    async def generate(request: Request) -> Response:
        request_id = _request_id(request)
        try:
            key = bearer_key(ctx, request.headers.get("authorization"))
            generation, response_format = proto.decode_body(await request.body(), ctx.catalog)
            await admit(ctx, key, generation.model)
            task = await ctx.service.submit(
                generation, owner=key, request_id=request_id, front=FRONT
            )
            task = await _wait(ctx, task, key)
            body = await _answer(ctx, task, response_format, str(request.base_url))
        except ImagegateError as error:
            return error_response(error, request_id)
        return JSONResponse(body, headers=_headers(request_id, task))

    @api.get(wire.PATH + "/{task_id}")
    async def read_task(task_id: str, request: Request) -> Response:
        request_id = _request_id(request)
        try:
            key = bearer_key(ctx, request.headers.get("authorization"))
            response_format = request.query_params.get("response_format") or "url"
            if response_format not in wire.RESPONSE_FORMATS:
                raise ValidationError(
                    f"response_format must be url or b64_json, got {response_format!r}",
                    field="response_format",
                )
            task = await ctx.service.get(task_id, owner=key)
            if task is None:
                raise TaskNotFound(f"no task {task_id!r} exists for this API key", field="task_id")
            if not task.status.is_terminal:
                raise Timeout(
                    f"task {task.id} is still {task.status.value}; read it again later",
                    field="task_id",
                )
            body = await _answer(ctx, task, response_format, str(request.base_url))
        except ImagegateError as error:
            return error_response(error, request_id)
        return JSONResponse(body, headers=_headers(request_id, task))

    @api.get(MODELS_PATH)
    async def models(request: Request) -> Response:
        request_id = _request_id(request)
        try:
            bearer_key(ctx, request.headers.get("authorization"))
        except ImagegateError as error:
            return error_response(error, request_id)
        body = proto.encode_models(ctx.catalog, created=_CATALOG_CREATED)
        return JSONResponse(body, headers={"x-request-id": request_id})

    return api


#: ``created`` of every model in ``/v1/models``: fixed, so the listing is stable across restarts
_CATALOG_CREATED = 1_735_689_600  # 2025-01-01T00:00:00Z


async def _wait(ctx: GatewayContext, task: Task, key: ApiKey) -> Task:
    """The task once terminal; a wait that runs out says where to read the task later."""
    try:
        return await ctx.service.wait(task.id, owner=key, timeout=ctx.sync_timeout)
    except Timeout:
        raise Timeout(
            f"task {task.id} did not finish within {ctx.sync_timeout:g} s; it keeps running: "
            f"read it with GET {wire.PATH}/{task.id}",
            field=None,
        ) from None


async def _answer(
    ctx: GatewayContext, task: Task, response_format: str, base_url: str
) -> dict[str, Any]:
    """The success body for a terminal task, or the error its failure maps to."""
    if task.status is not TaskStatus.SUCCEEDED:
        raise task_error(task)
    pairs: list[tuple[str | None, str | None]]
    if response_format == "b64_json":
        pairs = [(None, await _b64(image)) if image.ok else (None, None) for image in task.images]
    else:
        pairs = [
            (ctx.service.image_url(task, image, base_url), None) if image.ok else (None, None)
            for image in task.images
        ]
    if not any(url or b64 for url, b64 in pairs):
        raise UpstreamError(f"task {task.id} succeeded without any stored image")
    return proto.encode_response(task, pairs)


async def _b64(image: ImageResult) -> str:
    """The stored file, base64-encoded (read off the event loop: images reach 4096*4096)."""
    if image.data is not None:
        return base64.b64encode(image.data).decode("ascii")
    if image.path is None:
        raise UpstreamError("a result image has no stored file to encode as b64_json")
    try:
        data = await anyio.Path(image.path).read_bytes()
    except OSError as error:
        raise UpstreamError(f"the stored image could not be read: {error}") from None
    return base64.b64encode(data).decode("ascii")


def task_error(task: Task) -> ImagegateError:
    """Why a terminal task has no images, as the error class the rulings table maps.

    Content refusals are 400 ``content_policy_violation``; a parameter the upstream refused is
    400; anything else (an upstream failure, a canceled task) is a 500 ``server_error``.
    """
    if task.status is TaskStatus.CANCELED:
        return UpstreamError(f"task {task.id} was canceled before it produced images")
    code = task.error.code if task.error else ""
    message = task.error.message if task.error else f"task {task.id} ended {task.status.value}"
    vendor = code or None
    if code in _CONTENT_CODES:
        return ContentRejected(message, vendor_code=vendor)
    if code in _PARAMETER_CODES:
        return ValidationError(message, vendor_code=vendor)
    if code == InvalidRequest.code:
        return InvalidRequest(message, vendor_code=vendor)
    return UpstreamError(f"task {task.id} failed upstream: {message}", vendor_code=vendor)


def _headers(request_id: str, task: Task) -> dict[str, str]:
    """``x-request-id`` plus the task id, so a caller can find the task in the gateway later."""
    return {"x-request-id": request_id, "x-imagegate-task-id": task.id}


def _request_id(request: Request) -> str:
    found = getattr(request.state, "request_id", None)
    return found if isinstance(found, str) and found else uuid.uuid4().hex
