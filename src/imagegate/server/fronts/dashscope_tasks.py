"""The DashScope task routes: read, cancel and list tasks under ``/api/v1/tasks``.

Every read is scoped to the calling key. A task id that is unknown, past retention or owned by
another key reads as HTTP 200 ``task_status: UNKNOWN``, exactly as the vendor answers a wrong
id, so nothing about other keys' tasks leaks. Cancel works only while a task is ``PENDING``
(else 400 ``UnsupportedOperation``). The list takes the official SDK's query parameters
(``page_no``, ``page_size``, ``status``, ``model_name``, ``start_time``/``end_time`` written
``20230420000000`` in the gateway's time zone, like the vendor's Asia/Shanghai).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from starlette.responses import JSONResponse, Response

from imagegate.errors import TaskNotFound, ValidationError
from imagegate.protocols import dashscope as wire
from imagegate.protocols import dashscope_server as proto
from imagegate.server.context import GatewayContext
from imagegate.server.guard import bearer_key
from imagegate.types import Task, TaskStatus

#: a route body: (request, request id) -> response; errors are answered by the caller
Handler = Callable[[Request, str], Awaitable[Response]]

PAGE_SIZE_MAX = 100
TIME_FORMAT = "%Y%m%d%H%M%S"
LISTABLE = tuple(status.value for status in TaskStatus if status is not TaskStatus.UNKNOWN)


def routes(ctx: GatewayContext) -> list[tuple[str, str, Handler]]:
    """``(method, path under /api/v1, handler)`` for the task routes."""
    return [
        ("GET", wire.PATH_TASKS, _list(ctx)),
        ("GET", wire.PATH_TASKS + "/{task_id}", _read(ctx)),
        ("POST", wire.PATH_TASKS + "/{task_id}/cancel", _cancel(ctx)),
    ]


def request_id_of(request: Request) -> str:
    """The id the app's middleware gave this request (a fresh one when run without it)."""
    value = getattr(request.state, "request_id", None)
    return str(value) if value else uuid.uuid4().hex


def send(body: dict[str, Any], request_id: str) -> Response:
    return JSONResponse(body, headers={"x-request-id": request_id})


def image_urls(ctx: GatewayContext, task: Task, base_url: str) -> list[str]:
    """One signed gateway link per successful image of a SUCCEEDED task, in order."""
    if task.status is not TaskStatus.SUCCEEDED:
        return []
    return [ctx.service.image_url(task, image, base_url) for image in task.images if image.ok]


# --------------------------------------------------------------------------- handlers


def _read(ctx: GatewayContext) -> Handler:
    async def handle(request: Request, request_id: str) -> Response:
        key = bearer_key(ctx, request.headers.get("authorization"))
        task_id = request.path_params["task_id"]
        task = await ctx.service.get(task_id, owner=key)
        if task is None:
            return send(proto.encode_unknown_task(task_id, request_id), request_id)
        urls = image_urls(ctx, task, str(request.base_url))
        return send(proto.encode_task(task, request_id, urls, ctx.timezone), request_id)

    return handle


def _cancel(ctx: GatewayContext) -> Handler:
    async def handle(request: Request, request_id: str) -> Response:
        key = bearer_key(ctx, request.headers.get("authorization"))
        task_id = request.path_params["task_id"]
        try:
            task = await ctx.service.cancel(task_id, owner=key)
        except TaskNotFound:
            # One message whether the id is wrong, expired or another key's.
            raise TaskNotFound(
                f"task_id {task_id!r} does not exist for this API key (unknown, expired, or "
                "created with another key); nothing was canceled",
                field="task_id",
            ) from None
        return send(proto.encode_task(task, request_id, [], ctx.timezone), request_id)

    return handle


def _list(ctx: GatewayContext) -> Handler:
    async def handle(request: Request, request_id: str) -> Response:
        key = bearer_key(ctx, request.headers.get("authorization"))
        query = ListQuery.parse(request.query_params, ctx)
        if query.api_key_id is not None and query.api_key_id != key.id:
            tasks: list[Task] = []
            total = 0
        else:
            tasks, total = await ctx.service.list(
                owner=key,
                page=query.page_no,
                page_size=query.page_size,
                status=query.status,
                model=query.model,
                start=query.start,
                end=query.end,
            )
        base_url = str(request.base_url)
        body = proto.encode_task_list(
            tasks,
            total,
            query.page_no,
            query.page_size,
            request_id,
            lambda task: image_urls(ctx, task, base_url),
            ctx.timezone,
        )
        return send(body, request_id)

    return handle


# --------------------------------------------------------------------------- list query


class ListQuery:
    """The checked query of ``GET /tasks``; each bad value names its parameter and rule."""

    def __init__(
        self,
        *,
        page_no: int = 1,
        page_size: int = 10,
        status: TaskStatus | None = None,
        model: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        api_key_id: str | None = None,
    ) -> None:
        self.page_no = page_no
        self.page_size = page_size
        self.status = status
        self.model = model
        self.start = start
        self.end = end
        self.api_key_id = api_key_id

    @classmethod
    def parse(cls, params: Any, ctx: GatewayContext) -> ListQuery:
        def text(name: str) -> str | None:
            value = params.get(name)
            return value.strip() if isinstance(value, str) and value.strip() else None

        status = text("status")
        if status is not None and status.upper() not in LISTABLE:
            raise ValidationError(
                f"status is {status!r}; it must be one of {', '.join(LISTABLE)}", field="status"
            )
        model = text("model_name")
        if model is not None and model in ctx.catalog:
            model = ctx.catalog.get(model).name
        start = _time(text("start_time"), "start_time", ctx.timezone)
        end = _time(text("end_time"), "end_time", ctx.timezone)
        if start is not None and end is not None and start > end:
            raise ValidationError("start_time is after end_time", field="start_time")
        return cls(
            page_no=_number(text("page_no"), "page_no", 1, 1, None),
            page_size=_number(text("page_size"), "page_size", 10, 1, PAGE_SIZE_MAX),
            status=TaskStatus(status.upper()) if status else None,
            model=model,
            start=start,
            end=end,
            api_key_id=text("api_key_id"),
        )


def _number(value: str | None, name: str, default: int, low: int, high: int | None) -> int:
    if value is None:
        return default
    rule = f"an integer from {low} to {high}" if high else f"an integer of at least {low}"
    try:
        number = int(value)
    except ValueError:
        raise ValidationError(f"{name} must be {rule}, got {value!r}", field=name) from None
    if number < low or (high is not None and number > high):
        raise ValidationError(f"{name} is {number}; it must be {rule}", field=name)
    return number


def _time(value: str | None, name: str, tz: str) -> datetime | None:
    """``20230420000000`` in ``tz`` as an aware UTC datetime."""
    if value is None:
        return None
    try:
        local = datetime.strptime(value, TIME_FORMAT)
    except ValueError:
        raise ValidationError(
            f"{name} must be written YYYYMMDDHHMMSS (like 20230420000000), got {value!r}",
            field=name,
        ) from None
    return local.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
