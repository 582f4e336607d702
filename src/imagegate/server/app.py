"""The gateway's ASGI app: the three protocol fronts around one task service.

``create_app`` mounts every front (``imagegate.server.fronts.<name>``: ``PREFIXES``,
``router(ctx)``, ``error_response(error, request_id)``) and gives them what they share:

- a request id (uuid4 hex) on ``request.state.request_id``, echoed as ``x-request-id`` on
  every response, errors included;
- a body-size limit counted on the bytes actually received (a lying or absent
  ``Content-Length`` does not get past it);
- errors in the owning protocol's shape for unknown routes, wrong methods, framework-level
  validation and any uncaught exception (never a bare 500 page: a crash in a handler leaves the
  stored task intact, the client gets the protocol's internal-error answer);
- ``GET /files/...`` (signed image links, ``files.py``) and ``GET /healthz``.

The app's lifespan starts and stops the engine (``GatewayState.start/stop``) when given a
state from ``open_gateway``; given a bare ``GatewayContext`` it serves only what the context can.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from imagegate.config import Credentials
from imagegate.errors import ImagegateError, InvalidRequest, UpstreamError
from imagegate.providers.base import PollPolicy
from imagegate.server.context import GatewayContext, Limiter
from imagegate.server.files import files_router
from imagegate.server.limits import make_limiter
from imagegate.server.settings import GatewaySettings

log = logging.getLogger("imagegate.server")

FRONT_MODULES = ("dashscope", "chanjing", "openai")
REQUEST_ID_HEADER = "x-request-id"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Front:
    """One protocol front: the path prefixes it owns and how it shapes an error."""

    name: str
    prefixes: tuple[str, ...]
    module: ModuleType

    def owns(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.prefixes)

    def error_response(self, error: ImagegateError, request_id: str) -> Response:
        response: Response = self.module.error_response(error, request_id)
        # Errors raised by the app itself (404 route, 405, 413) carry the HTTP status they
        # mean; a front whose dialect has HTTP statuses answers with it, one that always
        # answers 200 (Chanjing) keeps its 200 and says it in its own code.
        if error.http_status and response.status_code != 200:
            response.status_code = error.http_status
        return response


def load_fronts(names: Iterable[str] = FRONT_MODULES) -> list[Front]:
    """Import each front module; a front not written yet is skipped with a warning."""
    fronts: list[Front] = []
    for name in names:
        module_name = f"imagegate.server.fronts.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            log.warning("front %s is not available; its routes are not served", name)
            continue
        fronts.append(Front(name, tuple(module.PREFIXES), module))
    # The longest prefix wins: "/open/v1" and "/api/v1" before "/v1".
    return sorted(fronts, key=lambda f: -max((len(p) for p in f.prefixes), default=0))


def neutral_error(error: ImagegateError, request_id: str, status: int) -> Response:
    """An error outside every front's prefix (``/``, ``/files``...): plain JSON."""
    body = {"request_id": request_id, "code": error.code, "message": error.message}
    return JSONResponse(body, status_code=status, headers={REQUEST_ID_HEADER: request_id})


class BodyTooLarge(InvalidRequest):
    code = "body_too_large"


class ErrorShaper:
    """Answers an error in the dialect of whichever front owns the request path."""

    def __init__(self, fronts: list[Front]) -> None:
        self.fronts = fronts

    def front_for(self, path: str) -> Front | None:
        return next((front for front in self.fronts if front.owns(path)), None)

    def response(self, path: str, error: ImagegateError, request_id: str) -> Response:
        front = self.front_for(path)
        if front is not None:
            return front.error_response(error, request_id)
        return neutral_error(error, request_id, error.http_status or 500)


class GatewayMiddleware:
    """Request id, body-size limit and the last-resort error boundary, in one ASGI layer.

    The body is read (at most ``max_body_bytes``) before the app runs and replayed to it, so
    the limit holds for chunked uploads too, and a front reading ``await request.body()`` never
    sees a partial body.
    """

    def __init__(self, app: ASGIApp, *, shaper: ErrorShaper, max_body_bytes: int) -> None:
        self.app = app
        self.shaper = shaper
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = list(message.get("headers") or [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        path: str = scope.get("path", "")
        body = await self._read_body(scope, receive)
        if body is None:
            error = BodyTooLarge(
                f"body: the request body is larger than the limit of {self.max_body_bytes} bytes.",
                field="body",
                http_status=413,
            )
            await self.shaper.response(path, error, request_id)(scope, receive, send_with_id)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send_with_id)
        except Exception:
            if started:
                raise
            log.exception("unhandled error answering %s %s", scope.get("method"), path)
            error = UpstreamError(
                "Internal error in the gateway while answering this request; any task it "
                f"created is kept (request id {request_id}).",
                http_status=500,
            )
            await self.shaper.response(path, error, request_id)(scope, receive, send_with_id)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                with contextlib.suppress(ValueError):
                    if int(value) > self.max_body_bytes:
                        return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _request_id(request: Request) -> str:
    found = getattr(request.state, "request_id", None)
    return found if isinstance(found, str) and found else uuid.uuid4().hex


def _install_error_handlers(app: FastAPI, shaper: ErrorShaper) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            message = f"Invalid URL ({where}): no such route on this gateway."
            error: ImagegateError = InvalidRequest(message, field="path", http_status=404)
        elif exc.status_code == 405:
            message = f"Method not allowed ({where}): this route does not take {request.method}."
            error = InvalidRequest(message, field="method", http_status=405)
        else:
            error = InvalidRequest(f"{where}: {exc.detail}", http_status=exc.status_code)
        response = shaper.response(request.url.path, error, _request_id(request))
        if exc.status_code == 405 and exc.headers and "allow" in {k.lower() for k in exc.headers}:
            response.headers["Allow"] = next(
                v for k, v in exc.headers.items() if k.lower() == "allow"
            )
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        error = InvalidRequest(f"Invalid request: {problems}")
        return shaper.response(request.url.path, error, _request_id(request))

    @app.exception_handler(ImagegateError)
    async def imagegate_error(request: Request, exc: ImagegateError) -> Response:
        return shaper.response(request.url.path, exc, _request_id(request))


def context_from_state(
    state: Any, settings: GatewaySettings, limiter: Limiter | None = None
) -> GatewayContext:
    """The fronts' view of a ``GatewayState`` (``engine.service.open_gateway``)."""
    return GatewayContext(
        service=state.service,
        keys=state.keys,
        limiter=limiter or make_limiter(settings.redis_url),
        signer=state.signer,
        catalog=state.service.catalog,
        sync_timeout=settings.sync_timeout,
        max_body_bytes=settings.max_body_bytes,
        timezone=settings.timezone,
        extras={"state": state, "blobs": state.blobs, "settings": settings},
    )


def open_state(settings: GatewaySettings, *, credentials: Credentials | None = None) -> Any:
    """Open the gateway's durable state under ``settings.data_dir`` with its upstreams.

    Every model whose vendor has credentials (``credentials`` or the environment) goes to that
    vendor; every other model is served by the sandbox, whose jobs are kept under
    ``<data_dir>/sandbox`` so they, too, survive a restart.
    """
    from imagegate.engine.service import open_gateway
    from imagegate.engine.worker import EngineConfig
    from imagegate.routing import Router

    poll = None
    if settings.poll_interval is not None:
        every = settings.poll_interval
        poll = PollPolicy(initial=every, factor=1.0, maximum=every)
    router = Router(
        credentials if credentials is not None else Credentials.from_env(),
        fallback_to_sandbox=True,
        sandbox_options={
            "latency": settings.sandbox.latency,
            "failure_rate": settings.sandbox.failure_rate,
            "blocked_words": tuple(settings.sandbox.blocked_words),
            "state_dir": Path(settings.data_dir) / "sandbox",
        },
        poll_policy=poll,
    )
    config = EngineConfig(
        max_concurrent=settings.max_concurrent,
        lease_seconds=settings.lease_seconds,
        idle_interval=min(1.0, settings.lease_seconds / 3),
        poll_policy=poll,
    )
    return open_gateway(
        settings.data_dir,
        settings.database_url,
        providers=router,
        catalog=router.catalog,
        engine_config=config,
        retention_days=settings.retention_days,
        url_expires_in=settings.link_ttl,
    )


def _ping(database: Any) -> None:
    from sqlalchemy import text

    with database.connect() as conn:
        conn.execute(text("SELECT 1"))


def create_app(
    state_or_ctx: Any,
    *,
    settings: GatewaySettings | None = None,
    limiter: Limiter | None = None,
    fronts: Iterable[str] = FRONT_MODULES,
    resolve_blob: Callable[[str], Path | None] | None = None,
    manage_state: bool = True,
) -> FastAPI:
    """The gateway app over a ``GatewayState`` (lifespan runs its engine) or a ``GatewayContext``.

    ``manage_state=False`` leaves starting and stopping the state to the caller.
    """
    settings = settings or GatewaySettings()
    if isinstance(state_or_ctx, GatewayContext):
        ctx, state = state_or_ctx, state_or_ctx.extras.get("state")
    else:
        ctx, state = context_from_state(state_or_ctx, settings, limiter), state_or_ctx
    if resolve_blob is None:
        blobs = ctx.extras.get("blobs")
        resolve_blob = blobs.resolve if blobs is not None else (lambda _path: None)  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        running = manage_state and state is not None and getattr(state, "engine", None)
        if running:
            await state.start()
        try:
            yield
        finally:
            if running:
                await state.stop()
                aclose = getattr(state.engine.providers, "aclose", None)
                if aclose is not None:
                    await aclose()
            close = getattr(ctx.limiter, "close", None)
            if close is not None:
                await close()

    app = FastAPI(
        title="imagegate",
        summary="DashScope, Chanjing and OpenAI-style image APIs over one task engine",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    loaded = load_fronts(fronts)
    shaper = ErrorShaper(loaded)
    for front in loaded:
        app.include_router(front.module.router(ctx))
    app.include_router(files_router(ctx.signer, resolve_blob))

    @app.get("/healthz")
    async def healthz() -> Response:
        """Liveness plus a database round trip: a node that cannot reach its store is not ok."""
        engine = getattr(state, "engine", None)
        body: dict[str, Any] = {
            "status": "ok",
            "fronts": [front.name for front in loaded],
            "engine": "running" if engine is not None and engine.running else "stopped",
        }
        database = getattr(state, "database", None)
        if database is not None:
            try:
                await asyncio.to_thread(_ping, database)
            except Exception as error:
                log.warning("health check: the database is unreachable: %s", error)
                body.update(status="unavailable", database=f"unreachable: {type(error).__name__}")
                return JSONResponse(body, status_code=503)
            body["database"] = "ok"
        return JSONResponse(body)

    _install_error_handlers(app, shaper)
    app.add_middleware(GatewayMiddleware, shaper=shaper, max_body_bytes=ctx.max_body_bytes)
    return app
