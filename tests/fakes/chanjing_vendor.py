"""A wire-level fake of the Chanjing open-API cloud (image creation), for adapter tests.

It speaks the documented envelope ``{trace_id, code, msg, data}`` over HTTP 200 and the codes
of seed pages 000/004 (400, 10400, 40000, 40001, 50000). It is written independently of
``imagegate.protocols.chanjing`` so that a bug there cannot hide itself here.

What a test can steer:

* tokens: ``token_ttl`` (seconds; ``expire_in`` is a Unix timestamp), ``invalidate_tokens()``
  (the next business call answers 10400), ``reject_tokens = True`` (every call answers 10400);
  issuing a token invalidates the previous one (the third-party note in protocols/chanjing.md);
* ``script(endpoint, *answers)``: the next calls to ``"token"``, ``"submit"``, ``"task"`` or
  ``"page"`` get these answers first: ``Answer(code=40001)``, ``Answer(http=429,
  retry_after="1")``, ``Answer(code=50000)``;
* ``plan(Outcome(...))``: how the next submitted task goes: its ``progress_desc`` steps (one
  per poll), how many ``output_url`` it ends with, its ``err_msg``, a cut-off download.

Counters: ``token_requests``, ``submit_requests`` (every attempt), ``submits`` (tasks created);
``submitted`` keeps each accepted body as received (key order preserved).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

MODELS = {"wan2.2-t2i", "kling-v2-1", "doubao-seedream-3.0-t2i", "doubao-seedream-4.0"}
SUCCESS_STEPS = ("Queued", "Generating", "Success")


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a business ``code`` in an HTTP 200 envelope, or a bare HTTP status."""

    code: int | None = None
    http: int | None = None
    retry_after: str | None = None
    msg: str = "scripted"


@dataclass(frozen=True)
class Outcome:
    steps: tuple[str, ...] = SUCCESS_STEPS
    images: int | None = None  # None: as many as number_of_images
    err_msg: str = "任务失败,本次生成不消耗蝉豆"
    cut_download: bool = False


@dataclass
class FakeTask:
    unique_id: str
    body: dict[str, Any]
    outcome: Outcome
    create_time: int
    row: int
    polls: int = 0

    @property
    def progress(self) -> str:
        """The step of the latest poll (the first step before any poll)."""
        return self.outcome.steps[min(max(self.polls - 1, 0), len(self.outcome.steps) - 1)]


def png_bytes(index: int) -> bytes:
    """A small real PNG, different for each index."""
    out = io.BytesIO()
    Image.new("RGB", (16, 8), (40 * index % 256, 120, 200)).save(out, format="PNG")
    return out.getvalue()


class ChanjingVendor:
    def __init__(
        self,
        app_id: str = "ak_test",
        secret_key: str = "sk_test",
        *,
        token_ttl: int = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id, self.secret_key = app_id, secret_key
        self.token_ttl = token_ttl
        self.clock = clock
        self.tokens: dict[str, int] = {}
        self.reject_tokens = False
        self.token_requests = 0
        self.submit_requests = 0
        self.submits = 0
        self.task_requests = 0
        self.submitted: list[dict[str, Any]] = []
        self.tasks: dict[str, FakeTask] = {}
        self._scripts: dict[str, deque[Answer]] = defaultdict(deque)
        self._outcomes: deque[Outcome] = deque()
        self.app = self._build()

    # ------------------------------------------------------------------ steering

    def script(self, endpoint: str, *answers: Answer) -> None:
        self._scripts[endpoint].extend(answers)

    def plan(self, *outcomes: Outcome) -> None:
        self._outcomes.extend(outcomes)

    def invalidate_tokens(self) -> None:
        self.tokens.clear()

    # ------------------------------------------------------------------ wire

    def _envelope(self, code: int, msg: str, data: Any = None) -> JSONResponse:
        body = {"trace_id": uuid.uuid4().hex, "code": code, "msg": msg, "data": data}
        return JSONResponse(body)

    def _scripted(self, endpoint: str) -> Response | None:
        queue = self._scripts[endpoint]
        if not queue:
            return None
        answer = queue.popleft()
        if answer.http is not None:
            headers = {"Retry-After": answer.retry_after} if answer.retry_after else {}
            return JSONResponse({"error": answer.msg}, status_code=answer.http, headers=headers)
        return self._envelope(answer.code or 50000, answer.msg)

    def _auth(self, request: Request) -> Response | None:
        token = request.headers.get("access_token")
        expiry = self.tokens.get(token or "")
        if self.reject_tokens or expiry is None or self.clock() >= expiry:
            return self._envelope(10400, "AccessToken 验证失败")
        return None

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/open/v1/access_token")
        async def access_token(request: Request) -> Response:
            self.token_requests += 1
            if (scripted := self._scripted("token")) is not None:
                return scripted
            body = await _json(request)
            if not isinstance(body, dict) or not {"app_id", "secret_key"} <= body.keys():
                return self._envelope(400, "参数格式错误")
            if (body["app_id"], body["secret_key"]) != (self.app_id, self.secret_key):
                return self._envelope(40000, "app_id 或 secret_key 错误")
            token = uuid.uuid4().hex
            self.tokens = {token: int(self.clock()) + self.token_ttl}  # the old one dies
            return self._envelope(
                0, "success", {"access_token": token, "expire_in": self.tokens[token]}
            )

        @app.post("/open/v1/ai_creation/task/submit")
        async def submit(request: Request) -> Response:
            self.submit_requests += 1
            if (denied := self._auth(request)) is not None:
                return denied
            if (scripted := self._scripted("submit")) is not None:
                return scripted
            body = await _json(request)
            problem = _check_submit(body)
            if problem is not None:
                return self._envelope(*problem)
            outcome = self._outcomes.popleft() if self._outcomes else Outcome()
            unique_id = str(uuid.uuid4())
            self.submits += 1
            self.submitted.append(body)
            self.tasks[unique_id] = FakeTask(
                unique_id, body, outcome, int(self.clock()), row=len(self.tasks) + 1
            )
            return self._envelope(0, "success", unique_id)

        @app.get("/open/v1/ai_creation/task")
        async def task(request: Request, unique_id: str = "") -> Response:
            self.task_requests += 1
            if (denied := self._auth(request)) is not None:
                return denied
            if (scripted := self._scripted("task")) is not None:
                return scripted
            found = self.tasks.get(unique_id)
            if found is None:
                return self._envelope(40000, "任务不存在")
            found.polls += 1
            return self._envelope(0, "success", self._item(found, str(request.base_url)))

        @app.post("/open/v1/ai_creation/task/page")
        async def page(request: Request) -> Response:
            if (denied := self._auth(request)) is not None:
                return denied
            if (scripted := self._scripted("page")) is not None:
                return scripted
            body = await _json(request)
            if not isinstance(body, dict) or body.get("type") not in (3, 4):
                return self._envelope(400, "type 参数错误")
            ids = body.get("unique_ids") or []
            number, size = int(body.get("page", 1)), int(body.get("page_size", 10))
            chosen = [
                task
                for task in reversed(self.tasks.values())
                if (not ids or task.unique_id in ids)
                and (not body.get("is_success") or task.progress == "Success")
            ]
            items = [
                self._item(task, str(request.base_url))
                for task in chosen[(number - 1) * size : number * size]
            ]
            info = {"page": number, "size": size, "total_count": len(chosen)}
            info["total_page"] = -(-len(chosen) // size)
            return self._envelope(
                0, "success", {"list": items, "total": len(chosen), "page_info": info}
            )

        @app.get("/files/{unique_id}/{index}.png")
        async def file(unique_id: str, index: int) -> Response:
            found = self.tasks.get(unique_id)
            if found is None:
                return Response(status_code=404)
            data = png_bytes(index)
            if found.outcome.cut_download:
                # Content-Length promises the whole file; half of it is sent, then the end.
                return Response(
                    data[: len(data) // 2],
                    media_type="image/png",
                    headers={"content-length": str(len(data))},
                )
            return Response(data, media_type="image/png")

        return app

    def _item(self, task: FakeTask, base_url: str) -> dict[str, Any]:
        body, progress = task.body, task.progress
        count = body["number_of_images"]
        made = count if task.outcome.images is None else task.outcome.images
        urls = (
            [f"{base_url}files/{task.unique_id}/{i}.png" for i in range(made)]
            if progress == "Success"
            else []
        )
        photo_info = {
            "ref_img_url": body.get("ref_img_url", []),
            "ref_prompt": body["ref_prompt"],
            "clarity": body.get("clarity", 0),
            "aspect_ratio": body.get("aspect_ratio", "1:1"),
            "quality_mode": body.get("quality_mode", ""),
            "number_of_images": count,
        }
        return {
            "id": task.row,
            "unique_id": task.unique_id,
            "create_time": task.create_time,
            "number_ai_creation": count,
            "type": 3,
            "progress_desc": progress,
            "err_msg": task.outcome.err_msg if progress in ("Error", "Fail") else "",
            "aspect_ratio": photo_info["aspect_ratio"],
            "output_url": urls,
            "photo_info": photo_info,
            "motion_info": {"photo_path_url": None, "ref_prompt": "", "clarity": 0},
            "ref_img_url": photo_info["ref_img_url"],
            "model_code": body["model_code"],
            "model_name": "",
        }


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def _check_submit(body: Any) -> tuple[int, str] | None:
    """The vendor's own checks, as the seed pages describe them."""
    if not isinstance(body, dict):
        return 400, "传入参数格式错误"
    for name, kind in (
        ("ref_prompt", str),
        ("creation_type", int),
        ("number_of_images", int),
        ("model_code", str),
    ):
        if not isinstance(body.get(name), kind):
            return 400, f"{name} 参数格式错误"
    if body["creation_type"] != 3:
        return 40000, "creation_type 参数错误"
    if body["model_code"] not in MODELS:
        return 40000, "模型不存在"
    if not 1 <= body["number_of_images"] <= 4:
        return 40000, "number_of_images 参数错误"
    return None


__all__ = ["Answer", "ChanjingVendor", "FakeTask", "Outcome", "png_bytes"]
