"""The Chanjing (蝉镜) open-API front: ``/open/v1/...`` as the vendor's clients expect it.

A thin translator (decode -> service -> encode) over ``protocols/chanjing_server.py``. Chanjing
answers every request with HTTP 200 and the envelope ``{trace_id, code, msg, data}``; errors
differ only by ``code`` (rulings table: 400 format, 10400 token, 40000 parameter, 40001 rate,
50000 internal). Business routes authenticate with the ``access_token`` header, a token this
front issues from an imagegate key pair (``app_id`` + the key as ``secret_key``).

Warnings (kling-v2-1's ``ref_img_url`` is accepted but not forwarded, ``callback`` ignored) are
stored on the task and shown in the task item under ``warnings`` (an imagegate addition,
present only when there are any) on the detail and page routes, and in the submit envelope
next to ``data``, so the caller hears about it as soon as it submits.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from imagegate.errors import AuthError, ImagegateError, InvalidRequest, RateLimited, TaskNotFound
from imagegate.protocols import chanjing as wire
from imagegate.protocols import chanjing_server as proto
from imagegate.server.context import ApiKey, GatewayContext
from imagegate.server.guard import admit
from imagegate.types import Task, TaskStatus

PREFIXES = ("/open/v1",)
FRONT = "chanjing"


def error_response(error: ImagegateError, request_id: str) -> Response:
    """The Chanjing error envelope, always HTTP 200; a rate limit also says ``Retry-After``."""
    headers = {"x-request-id": request_id}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(_retry_after(error))
    return JSONResponse(proto.encode_error(error, request_id), status_code=200, headers=headers)


def router(ctx: GatewayContext) -> APIRouter:
    """The four Chanjing routes, bound to ``ctx``."""
    api = APIRouter()

    @api.post(wire.TOKEN_PATH)
    async def access_token(request: Request) -> Response:
        trace_id = _request_id(request)
        try:
            app_id, secret = proto.decode_token_body(await _json(request))
            key = ctx.keys.authenticate_pair(app_id, secret)
            if key is None or key.revoked:
                raise AuthError(
                    "app_id and secret_key do not name a valid imagegate key pair",
                    field="secret_key",
                )
            token, expire_at = ctx.keys.issue_token(key)
        except ImagegateError as error:
            return error_response(error, trace_id)
        return _ok(proto.encode_token(token, expire_at), trace_id)

    @api.post(wire.SUBMIT_PATH)
    async def submit(request: Request) -> Response:
        trace_id = _request_id(request)
        try:
            key = _token_key(ctx, request)
            generation, warnings = proto.decode_submit_body(await _json(request), ctx.catalog)
            await admit(ctx, key, generation.model)
            task = await ctx.service.submit(
                generation, owner=key, request_id=trace_id, front=FRONT, warnings=warnings
            )
        except ImagegateError as error:
            return error_response(error, trace_id)
        return _ok(task.id, trace_id, warnings=task.warnings or warnings)

    @api.get(wire.TASK_PATH)
    async def task_detail(request: Request) -> Response:
        trace_id = _request_id(request)
        try:
            key = _token_key(ctx, request)
            unique_id = proto.decode_task_query(request.query_params)
            task = await ctx.service.get(unique_id, owner=key)
            if task is None:
                raise TaskNotFound(
                    f"unique_id {unique_id!r}: task does not exist", field="unique_id"
                )
        except ImagegateError as error:
            return error_response(error, trace_id)
        return _ok(
            proto.encode_task(task, _urls(ctx, task, request), catalog=ctx.catalog), trace_id
        )

    @api.post(wire.PAGE_PATH)
    async def task_page(request: Request) -> Response:
        trace_id = _request_id(request)
        try:
            key = _token_key(ctx, request)
            query = proto.decode_page_body(await _json(request))
            tasks, total = await ctx.service.list(
                owner=key,
                page=query.page,
                page_size=query.page_size,
                status=TaskStatus.SUCCEEDED if query.is_success else None,
                ids=list(query.unique_ids) or None,
            )
        except ImagegateError as error:
            return error_response(error, trace_id)
        page = proto.encode_page(
            tasks, total, query.page, query.page_size, lambda task: _urls(ctx, task, request)
        )
        return _ok(page, trace_id)

    return api


def _token_key(ctx: GatewayContext, request: Request) -> ApiKey:
    """The key behind the ``access_token`` header, or ``AuthError`` (code 10400)."""
    token = (request.headers.get(wire.TOKEN_HEADER) or "").strip()
    if not token:
        raise AuthError(
            f"{wire.TOKEN_HEADER} header is missing: get one from POST {wire.TOKEN_PATH}",
            field=wire.TOKEN_HEADER,
        )
    key = ctx.keys.check_token(token)
    if key is None or key.revoked:
        raise AuthError(
            f"{wire.TOKEN_HEADER} is invalid or expired: get a new one from POST {wire.TOKEN_PATH}",
            field=wire.TOKEN_HEADER,
        )
    return key


async def _json(request: Request) -> Any:
    """The body as JSON; anything unreadable is a format error (code 400), never a 500."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(f"the request body is not valid JSON: {error}") from None


def _urls(ctx: GatewayContext, task: Task, request: Request) -> list[str]:
    """Signed gateway links for the task's stored images (none until it succeeded)."""
    if task.status is not TaskStatus.SUCCEEDED:
        return []
    base = str(request.base_url)
    return [ctx.service.image_url(task, image, base) for image in task.images if image.ok]


def _ok(data: Any, trace_id: str, *, warnings: list[str] | None = None) -> Response:
    body = proto.encode_envelope(data, trace_id, warnings=warnings or ())
    return JSONResponse(body, headers={"x-request-id": trace_id})


def _request_id(request: Request) -> str:
    """The app middleware's id (the envelope's ``trace_id``), or a fresh one."""
    found = getattr(request.state, "request_id", None)
    return found if isinstance(found, str) and found else uuid.uuid4().hex


def _retry_after(error: RateLimited) -> int:
    seconds = error.retry_after if error.retry_after is not None else 1
    return max(1, min(8, int(-(-seconds // 1))))
