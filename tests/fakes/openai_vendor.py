"""A wire-level fake of an OpenAI-compatible aggregator (seed 003, yunwu-api / new-api style).

``POST /v1/images/generations`` checks the body like the page's JSON schema (required
``model`` + ``prompt``, ``additionalProperties: false``, size tiers or pixels within
768*768..4096*4096 and ratio 1:8..8:1, ``n`` 1-4, ``seed`` 0..2^31-1), renders real PNGs of
the asked size and answers ``{created, data: [{url | b64_json, revised_prompt}]}``. Errors use
``{error: {message, type, param, code}}``; with ``strict_response_format`` (the seed's
deployment) a string ``response_format`` gets the seed's own ``new_api_error`` answer.

Scripting: ``push()`` queues canned answers (429 + Retry-After, 500, 401...) served before
normal handling; ``missing_images`` makes a batch come back short (the images that failed are
simply absent, as new-api returns only what the upstream produced); ``cut_downloads`` makes
``GET /files/...`` send half its declared ``Content-Length`` and drop the connection.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image, ImageDraw

SCHEMA_FIELDS = ("model", "prompt", "size", "n", "watermark", "seed")
TIERS = {"1K": 1024, "2K": 2048, "4K": 4096}
SEED_ERROR = (
    "invalid request body: json: cannot unmarshal string into Go struct field "
    "GeneralOpenAIRequest.response_format of type dto.ResponseFormat"
)
BLOCKED_WORD = "forbidden-content"


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeOpenAIVendor:
    """One fake aggregator; ``app`` is the ASGI app to ``serve()``."""

    def __init__(
        self,
        *,
        api_key: str = "sk-fake-openai",
        models: tuple[str, ...] = ("wan2.7-image-pro",),
        strict_response_format: bool = True,
    ) -> None:
        self.api_key = api_key
        self.models = models
        self.strict_response_format = strict_response_format
        self.missing_images = 0
        self.cut_downloads = False
        self.requests: list[Received] = []
        self.script: deque[Scripted] = deque()
        self.files: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.app = self._build()

    # -- scripting ------------------------------------------------------------------------
    def push(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.script.append(Scripted(status, body, dict(headers or {})))

    def push_rate_limit(self, retry_after: str = "1") -> None:
        self.push(
            429,
            _error(
                "Rate limit reached for requests", "rate_limit_error", None, "rate_limit_exceeded"
            ),
            {"Retry-After": retry_after},
        )

    def push_server_error(self) -> None:
        self.push(500, _error("The server had an error processing your request", "server_error"))

    def count(self, path: str = "/v1/images/generations") -> int:
        return sum(1 for received in self.requests if received.path == path)

    # -- the app --------------------------------------------------------------------------
    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/images/generations")
        async def generations(request: Request) -> Response:
            raw = await request.body()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with self._lock:
                self.requests.append(
                    Received("POST", request.url.path, dict(request.headers), body)
                )
                scripted = self.script.popleft() if self.script else None
            rid = _request_id()
            if scripted is not None:
                return JSONResponse(
                    scripted.body,
                    scripted.status,
                    headers={"x-request-id": rid, **scripted.headers},
                )
            return self._generate(request, body, rid)

        @app.get("/files/{name}")
        async def files(name: str) -> Response:
            with self._lock:
                self.requests.append(Received("GET", f"/files/{name}", {}, None))
            data = self.files.get(name)
            if data is None:
                return JSONResponse({"error": "not found"}, 404)
            if not self.cut_downloads:
                return Response(data, media_type="image/png")

            async def half() -> Any:
                yield data[: len(data) // 2]
                raise ConnectionResetError("fake vendor: connection dropped mid-body")

            return StreamingResponse(
                half(), media_type="image/png", headers={"Content-Length": str(len(data))}
            )

        return app

    def _generate(self, request: Request, body: Any, rid: str) -> Response:
        def fail(status: int, error: dict[str, Any]) -> Response:
            return JSONResponse(error, status, headers={"x-request-id": rid})

        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            return fail(
                401,
                _error(
                    f"Incorrect API key provided (request id: {rid})",
                    "invalid_request_error",
                    None,
                    "invalid_api_key",
                ),
            )
        if isinstance(body, dict) and isinstance(body.get("response_format"), str):
            if self.strict_response_format:
                return fail(
                    500,
                    _error(
                        f"{SEED_ERROR} (request id: {rid})", "new_api_error", "", "invalid_request"
                    ),
                )
            body = dict(body)
            response_format = body.pop("response_format")
        else:
            response_format = "url"
        problem = _check(body, self.models)
        if problem is not None:
            status, error = problem
            return fail(status, error)
        if BLOCKED_WORD in body["prompt"]:
            return fail(
                400,
                _error(
                    "Your request was rejected as a result of our safety system.",
                    "invalid_request_error",
                    None,
                    "content_policy_violation",
                ),
            )
        width, height = _size(body.get("size", "2K"))
        n = body.get("n", 1)
        data = []
        base = str(request.base_url).rstrip("/")
        for index in range(max(0, n - self.missing_images)):
            png = render(width, height, f"{body['prompt']}|{body.get('seed')}|{index}")
            if response_format == "b64_json":
                data.append({"b64_json": base64.b64encode(png).decode(), "revised_prompt": ""})
            else:
                name = f"{rid}-{index}.png"
                self.files[name] = png
                data.append(
                    {"url": f"{base}/files/{name}?Expires=9999999999", "revised_prompt": ""}
                )
        return JSONResponse(
            {"created": int(time.time()), "data": data}, headers={"x-request-id": rid}
        )


def _check(body: Any, models: tuple[str, ...]) -> tuple[int, dict[str, Any]] | None:
    """The page's JSON schema, as a 400 ``invalid_request_error`` naming ``param``."""

    def bad(param: str | None, message: str, code: str = "invalid_value") -> tuple[int, dict]:
        return 400, _error(message, "invalid_request_error", param, code)

    if not isinstance(body, dict):
        return bad(None, "request body must be a JSON object", "invalid_json")
    for key in body:
        if key not in SCHEMA_FIELDS:
            return bad(key, f"Unrecognized request argument supplied: {key}", "unknown_parameter")
    for key in ("model", "prompt"):
        if not isinstance(body.get(key), str):
            return bad(key, f"'{key}' is a required property and must be a string", "missing")
    if body["model"] not in models:
        return 503, {
            "error": {
                "message": f"当前分组 default 下对于模型 {body['model']} 无可用渠道",
                "type": "new_api_error",
                "code": "model_not_found",
            }
        }
    if not body["prompt"]:
        return bad("prompt", "prompt should be non-empty")
    if "size" in body:
        if not isinstance(body["size"], str) or _size(body["size"]) is None:
            return bad("size", f"Invalid size {body['size']!r}: use 1K, 2K, 4K or W*H / WxH")
        width, height = _size(body["size"])  # type: ignore[misc]
        if not 768 * 768 <= width * height <= 4096 * 4096:
            return bad("size", f"size {body['size']}: total pixels must be in [768*768, 4096*4096]")
        if not 1 / 8 <= width / height <= 8:
            return bad("size", f"size {body['size']}: aspect ratio must be in [1:8, 8:1]")
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 4:
        return bad("n", f"n must be an integer from 1 to 4, got {n!r}")
    if "watermark" in body and not isinstance(body["watermark"], bool):
        return bad("watermark", "watermark must be a boolean")
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2147483647:
        return bad("seed", f"seed must be an integer from 0 to 2147483647, got {seed!r}")
    return None


def _size(text: str) -> tuple[int, int] | None:
    if text in TIERS:
        return TIERS[text], TIERS[text]
    for sep in ("*", "x"):
        left, found, right = text.partition(sep)
        if found and left.isdigit() and right.isdigit() and int(left) and int(right):
            return int(left), int(right)
    return None


def render(width: int, height: int, key: str) -> bytes:
    """A real PNG of exactly ``width`` x ``height``, its colours derived from ``key``."""
    digest = hashlib.sha256(key.encode()).digest()
    image = Image.new("RGB", (width, height), tuple(digest[:3]))
    ImageDraw.Draw(image).rectangle((0, 0, width // 3, height // 3), fill=tuple(digest[3:6]))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _error(
    message: str, kind: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _request_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(8)
