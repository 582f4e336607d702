"""The DashScope front: the Wan text-to-image routes of Alibaba Model Studio, under ``/api/v1``.

A thin translator over ``protocols/dashscope_server.py``: decode the body with the codec (which
checks it against the catalog), authenticate and admit with ``server/guard.py``, run the task
through ``ctx.service``, encode the answer with the codec. Three submit routes:

- ``image-generation/generation``: asynchronous, needs ``X-DashScope-Async: enable``;
- ``multimodal-generation/generation``: synchronous; the async header is refused (403);
- ``text2image/image-synthesis``: asynchronous with the header; without it, synchronous for the
  models the official SDK's ``sync_call`` serves (catalog ``sync = true`` on this endpoint),
  403 for the others.

Synchronous routes submit an ordinary durable task and wait for it, so a client that hangs up
loses nothing. Any catalog model may be asked for on any route; the task remembers which route
created it (``task.front``) so every later read answers in that route's shape. The task routes
(``/api/v1/tasks``) live in ``dashscope_tasks.py``. ``X-DashScope-WorkSpace`` is accepted and
ignored: imagegate has no workspaces.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from imagegate.catalog import Model, warnings_for
from imagegate.errors import (
    ImagegateError,
    InvalidRequest,
    PermissionDenied,
    TaskFailed,
    Timeout,
    UpstreamError,
)
from imagegate.protocols import dashscope as wire
from imagegate.protocols import dashscope_server as proto
from imagegate.server.context import ApiKey, GatewayContext
from imagegate.server.fronts import dashscope_tasks
from imagegate.server.fronts.dashscope_tasks import Handler, image_urls, request_id_of, send
from imagegate.server.guard import admit, bearer_key
from imagegate.types import GenerationRequest, Task, TaskStatus

log = logging.getLogger(__name__)

PREFIXES = ("/api/v1",)
BASE = "/api/v1"
#: ``task.front`` of each submit flavour (the codec picks the answer shape from it)
FRONT_GENERATION = "dashscope-generation"
FRONT_SYNTHESIS = "dashscope-synthesis"
FRONT_SYNC = "dashscope-sync"
#: the catalog's endpoint kind of the legacy route
ENDPOINT_SYNTHESIS = "dashscope-synthesis"
#: the vendor's own words for a sync/async mismatch (rulings, "Sync and async")
NO_SYNC = "current user api does not support synchronous calls"
NO_ASYNC = "current user api does not support asynchronous calls"


def error_response(error: ImagegateError, request_id: str) -> Response:
    """``{request_id, code, message}`` with the rulings' HTTP status; a 429 has Retry-After."""
    status, body = proto.encode_error(error, request_id)
    headers = {"x-request-id": request_id, **proto.error_headers(error)}
    return JSONResponse(body, status_code=status, headers=headers)


def answering(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that answers every failure in DashScope's error shape.

    imagegate errors keep their meaning; anything else is logged and answered 500
    ``InternalError`` (the task, if one was stored, stays intact in the store).
    """

    async def endpoint(request: Request) -> Response:
        request_id = request_id_of(request)
        try:
            return await handler(request, request_id)
        except ImagegateError as error:
            return error_response(error, request_id)
        except Exception:
            log.exception("DashScope front: unexpected failure on %s", request.url.path)
            failure = ImagegateError(
                f"Internal error while serving {request.method} {request.url.path}; "
                f"the request id is {request_id}."
            )
            return error_response(failure, request_id)

    return endpoint


def router(ctx: GatewayContext) -> APIRouter:
    """The DashScope routes bound to ``ctx``."""
    api = APIRouter()
    routes: list[tuple[str, str, Handler]] = [
        ("POST", wire.PATH_GENERATION, _generation(ctx)),
        ("POST", wire.PATH_MULTIMODAL, _multimodal(ctx)),
        ("POST", wire.PATH_SYNTHESIS, _synthesis(ctx)),
        *dashscope_tasks.routes(ctx),
    ]
    for method, path, handler in routes:
        api.add_api_route(BASE + path, answering(handler), methods=[method])
    return api


# --------------------------------------------------------------------------- submit routes


def _generation(ctx: GatewayContext) -> Handler:
    """``image-generation/generation``: the wan2.6 asynchronous task (seed 001)."""

    async def handle(request: Request, request_id: str) -> Response:
        key = bearer_key(ctx, request.headers.get("authorization"))
        body = await read_json(request)
        if not wants_async(request):
            raise PermissionDenied(
                f"{NO_SYNC}: image-generation/generation creates asynchronous tasks only; "
                f"send the header '{wire.ASYNC_HEADER}: enable', or call "
                "multimodal-generation/generation for a synchronous answer",
                field=wire.ASYNC_HEADER,
                http_status=403,
            )
        generation = proto.decode_generation_body(body, ctx.catalog)
        task = await _submit(ctx, key, generation, body, request_id, FRONT_GENERATION)
        return send(proto.encode_submit(task, request_id), request_id)

    return handle


def _multimodal(ctx: GatewayContext) -> Handler:
    """``multimodal-generation/generation``: the wan2.6 synchronous call (seed 002)."""

    async def handle(request: Request, request_id: str) -> Response:
        key = bearer_key(ctx, request.headers.get("authorization"))
        body = await read_json(request)
        if wants_async(request):
            raise PermissionDenied(
                f"{NO_ASYNC}: multimodal-generation/generation answers synchronously; drop "
                f"the header '{wire.ASYNC_HEADER}: enable', or create a task with "
                "image-generation/generation",
                field=wire.ASYNC_HEADER,
                http_status=403,
            )
        generation = proto.decode_generation_body(body, ctx.catalog)
        task = await _submit(ctx, key, generation, body, request_id, FRONT_SYNC)
        task = await _finished(ctx, key, task)
        urls = image_urls(ctx, task, str(request.base_url))
        return send(proto.encode_sync(task, request_id, urls), request_id)

    return handle


def _synthesis(ctx: GatewayContext) -> Handler:
    """``text2image/image-synthesis``: legacy tasks, or ``sync_call`` for the models it serves."""

    async def handle(request: Request, request_id: str) -> Response:
        key = bearer_key(ctx, request.headers.get("authorization"))
        body = await read_json(request)
        is_async = wants_async(request)
        if not is_async:
            entry = _peek_model(ctx, body)
            if entry is not None and not serves_sync_synthesis(entry):
                raise PermissionDenied(
                    f"{NO_SYNC}: text2image/image-synthesis answers synchronously only for "
                    f"{', '.join(sync_synthesis_models(ctx))}; send the header "
                    f"'{wire.ASYNC_HEADER}: enable' to create a task for {entry.name}",
                    field=wire.ASYNC_HEADER,
                    http_status=403,
                )
        generation = proto.decode_synthesis_body(body, ctx.catalog)
        task = await _submit(ctx, key, generation, body, request_id, FRONT_SYNTHESIS)
        if is_async:
            return send(proto.encode_submit(task, request_id), request_id)
        task = await _finished(ctx, key, task)
        urls = image_urls(ctx, task, str(request.base_url))
        return send(proto.encode_task(task, request_id, urls, ctx.timezone), request_id)

    return handle


# --------------------------------------------------------------------------- helpers


async def read_json(request: Request) -> Any:
    """The body as JSON; anything unreadable is DashScope's 400 ``InvalidParameter``."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequest("body is required: send a JSON object", field="body")
    try:
        return json.loads(raw)
    except ValueError as error:
        raise InvalidRequest(f"body is not valid JSON: {error}", field="body") from None


def wants_async(request: Request) -> bool:
    """Whether ``X-DashScope-Async: enable`` was sent (any other value means synchronous)."""
    value = request.headers.get(wire.ASYNC_HEADER)
    return value is not None and value.strip().lower() == "enable"


def serves_sync_synthesis(entry: Model) -> bool:
    """The SDK's ``sync_call`` models: ``sync = true`` and served by image-synthesis."""
    return entry.sync and entry.endpoint == ENDPOINT_SYNTHESIS


def sync_synthesis_models(ctx: GatewayContext) -> list[str]:
    return [entry.name for entry in ctx.catalog if serves_sync_synthesis(entry)]


def _peek_model(ctx: GatewayContext, body: Any) -> Model | None:
    """The catalog entry a body names, when it names a known one (the decoder reports the rest)."""
    name = body.get("model") if isinstance(body, dict) else None
    if isinstance(name, str) and name in ctx.catalog:
        return ctx.catalog.get(name)
    return None


async def _submit(
    ctx: GatewayContext,
    key: ApiKey,
    generation: GenerationRequest,
    body: Any,
    request_id: str,
    front: str,
) -> Task:
    """Admit the key for the model, then store the task (PENDING) with its warnings."""
    await admit(ctx, key, generation.model)
    warnings = warnings_for(generation, ctx.catalog)
    warnings += [
        f"{path} is not a DashScope parameter imagegate knows; it was ignored"
        for path in proto.ignored_fields(body)
    ]
    return await ctx.service.submit(
        generation, owner=key, request_id=request_id, front=front, warnings=warnings
    )


async def _finished(ctx: GatewayContext, key: ApiKey, task: Task) -> Task:
    """Wait for a synchronous route's task; a failed one becomes the error it maps to."""
    try:
        done = await ctx.service.wait(task.id, owner=key, timeout=ctx.sync_timeout)
    except Timeout:
        raise Timeout(
            f"task {task.id} did not finish within {ctx.sync_timeout:g} s; it keeps running: "
            f"read it with GET {BASE}{wire.task_path(task.id)}",
            field="task_id",
        ) from None
    if done.status is TaskStatus.SUCCEEDED:
        return done
    if done.status is TaskStatus.FAILED:
        raise dashscope_error(proto.task_error(done))
    raise TaskFailed(
        f"task {done.id} ended {done.status.value} before producing images",
        vendor_code="InternalError",
    )


def dashscope_error(error: ImagegateError) -> ImagegateError:
    """Keep a failed task's code only when it is DashScope's own; otherwise ``InternalError``.

    ``task_error`` passes any upstream code through (a 500 with ``SandboxInjectedFailure`` or a
    Chanjing number); the rulings table answers every upstream failure 500 ``InternalError``,
    and DashScope clients branch on DashScope codes. The original code stays in the message.
    """
    code = error.vendor_code or ""
    if not isinstance(error, TaskFailed) or code.startswith("InternalError"):
        return error
    return UpstreamError(f"{error.message} (upstream code {code})", request_id=error.request_id)
