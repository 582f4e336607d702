"""A wire-level fake of DashScope's cloud (``/api/v1``), for tests of anything that calls it.

It speaks the shapes of the seed pages and ``shared/protocols/dashscope.md`` and nothing from
``imagegate``: it is the vendor, not a mirror of our code. Tasks go PENDING (submit) ->
RUNNING -> SUCCEEDED after ``polls_to_finish`` polls; results are real PNG files served by the
fake itself at ``/files/{task_id}/{index}.png``.

Scripting (in process, or over HTTP at ``/_fake/*`` when run as a separate process):

- ``fail_next(route, status, code, message, headers=..., times=...)``: the next answers of a
  route (``submit``, ``task``, ``cancel``, ``list``, ``download``) are this error (or ``raw``
  text); ``throttle_next`` is a 429 ``Throttling.RateQuota`` with ``Retry-After``.
- ``plan_next("fail" | "partial", code, message)``: what the next submitted task becomes.
- ``cut_next_download()``: the next file answers with a ``Content-Length`` larger than the
  bytes it sends, then drops the connection.
- ``hold = True``: tasks stay RUNNING until ``release()``.

Observation: ``submits`` (every created task's body), ``submit_count(prompt)``, ``hits``
(requests per route). ``python -m tests.fakes.dashscope_vendor --port N --state FILE`` runs it
alone and keeps tasks and counts in FILE, so they survive a restart of the process under test
(and of the fake).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import threading
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import serve

API = "/api/v1"
BEIJING = timezone(timedelta(hours=8))
GENERATION_MODELS = frozenset({"wan2.6-t2i", "wan2.6-image"})
SYNTHESIS_MODELS = frozenset(
    {
        "wan2.5-t2i-preview",
        "wan2.2-t2i-plus",
        "wan2.2-t2i-flash",
        "wan2.1-t2i-plus",
        "wan2.1-t2i-turbo",
        "wanx2.1-t2i-plus",
        "wanx2.1-t2i-turbo",
        "wanx2.0-t2i-turbo",
        "wanx-v1",
    }
)
SYNC_SYNTHESIS = frozenset({"wan2.2-t2i-flash", "wan2.2-t2i-plus"})
ROUTES = ("submit", "task", "cancel", "list", "download")


@dataclass
class Fault:
    status: int
    code: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None  # a non-JSON body instead of {request_id, code, message}


@dataclass
class Plan:
    outcome: str = "succeed"  # succeed | fail | partial
    code: str | None = None
    message: str | None = None


@dataclass
class FakeTask:
    task_id: str
    kind: str  # generation | synthesis
    model: str
    prompt: str
    n: int
    size: str
    status: str = "PENDING"
    polls: int = 0
    plan: dict[str, Any] = field(default_factory=dict)
    submit_time: str = ""
    scheduled_time: str | None = None
    end_time: str | None = None


def _now() -> str:
    now = datetime.now(UTC).astimezone(BEIJING)
    return now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}"


def _png(width: int, height: int, seed: str) -> bytes:
    color = tuple(int(seed[i : i + 2], 16) for i in (0, 2, 4))
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeDashScope:
    """The fake cloud: ``app`` is an ASGI app; serve it with ``tests.fakes.server.serve``."""

    def __init__(
        self,
        api_key: str = "sk-fake",
        *,
        polls_to_finish: int = 2,
        state_file: Path | None = None,
    ) -> None:
        self.api_key = api_key
        self.polls_to_finish = polls_to_finish
        self.state_file = state_file
        #: where the fake is served (set by whoever serves it; see ``serve_fake``)
        self.base_url = ""
        self.hold = False
        self.tasks: dict[str, FakeTask] = {}
        self.submits: list[dict[str, Any]] = []
        self.hits: Counter[str] = Counter()
        self.faults: dict[str, deque[Fault]] = {route: deque() for route in ROUTES}
        self.plans: deque[Plan] = deque()
        self.cuts = 0
        self._lock = threading.RLock()
        self._pngs: dict[tuple[str, int], bytes] = {}
        self._load()
        self.app = Starlette(routes=self._routes())

    # ------------------------------------------------------------------ scripting

    def fail_next(
        self,
        route: str,
        status: int,
        code: str | None = None,
        message: str = "",
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        raw: str | None = None,
    ) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        with self._lock:
            for _ in range(times):
                self.faults[route].append(Fault(status, code, message, dict(headers or {}), raw))

    def throttle_next(self, route: str = "submit", retry_after: int = 1, times: int = 1) -> None:
        self.fail_next(
            route,
            429,
            "Throttling.RateQuota",
            "Requests rate limit exceeded, please try again later.",
            headers={"Retry-After": str(retry_after)},
            times=times,
        )

    def plan_next(
        self, outcome: str = "succeed", code: str | None = None, message: str | None = None
    ) -> None:
        with self._lock:
            self.plans.append(Plan(outcome, code, message))

    def cut_next_download(self, times: int = 1) -> None:
        with self._lock:
            self.cuts += times

    def release(self) -> None:
        with self._lock:
            self.hold = False

    @property
    def api_base(self) -> str:
        return self.base_url + API

    def submit_count(self, prompt: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self.submits if prompt is None or s["prompt"] == prompt)

    # ------------------------------------------------------------------ persistence

    def _load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        data = json.loads(self.state_file.read_text("utf-8"))
        self.tasks = {key: FakeTask(**value) for key, value in data["tasks"].items()}
        self.submits = list(data["submits"])
        self.hits = Counter(data["hits"])

    def _save(self) -> None:
        if self.state_file is None:
            return
        data = {
            "tasks": {key: asdict(task) for key, task in self.tasks.items()},
            "submits": self.submits,
            "hits": dict(self.hits),
        }
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".fake-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(tmp, self.state_file)

    # ------------------------------------------------------------------ routes

    def _routes(self) -> list[Route]:
        return [
            Route(
                f"{API}/services/aigc/image-generation/generation", self._submit, methods=["POST"]
            ),
            Route(
                f"{API}/services/aigc/multimodal-generation/generation",
                self._submit,
                methods=["POST"],
            ),
            Route(
                f"{API}/services/aigc/text2image/image-synthesis", self._submit, methods=["POST"]
            ),
            Route(f"{API}/tasks", self._list, methods=["GET"]),
            Route(f"{API}/tasks/{{task_id}}", self._task, methods=["GET"]),
            Route(f"{API}/tasks/{{task_id}}/cancel", self._cancel, methods=["POST"]),
            Route("/files/{task_id}/{index:int}.png", self._file, methods=["GET"]),
            Route("/_fake/state", self._state, methods=["GET"]),
            Route("/_fake/script", self._script, methods=["POST"]),
        ]

    def _fault(self, route: str) -> Response | None:
        with self._lock:
            self.hits[route] += 1
            self._save()
            if not self.faults[route]:
                return None
            fault = self.faults[route].popleft()
        if fault.raw is not None:
            return Response(fault.raw, fault.status, fault.headers, media_type="text/html")
        return _error(fault.status, fault.code or "InternalError", fault.message, fault.headers)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    async def _submit(self, request: Request) -> Response:
        if (fault := self._fault("submit")) is not None:
            return fault
        if not self._authorized(request):
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        path = request.url.path
        is_async = request.headers.get("x-dashscope-async") == "enable"
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "InvalidParameter", "The request body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return _error(400, "BadRequest.EmptyInput", "Required parameter(s) missing: input.")
        model = body.get("model")
        kind = "synthesis" if path.endswith("image-synthesis") else "generation"
        if not model:
            return _error(400, "BadRequest.EmptyModel", "Required parameter(s) missing: model.")
        if model not in (GENERATION_MODELS if kind == "generation" else SYNTHESIS_MODELS):
            return _error(400, "InvalidParameter", "Model not exist.")
        sync_only = path.endswith("multimodal-generation/generation")
        if sync_only and is_async:
            return _error(
                403, "AccessDenied", "current user api does not support asynchronous calls"
            )
        if not is_async and not sync_only and model not in SYNC_SYNTHESIS:
            return _error(
                403, "AccessDenied", "current user api does not support synchronous calls"
            )
        prompt = _prompt(body["input"], kind)
        if not prompt:
            return _error(400, "InvalidParameter", "The prompt must not be empty.")
        params = body.get("parameters") or {}
        n = params.get("n", 4)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 4:
            return _error(400, "InvalidParameter", "The parameter n must be an integer in [1, 4].")
        default = "1280*1280" if model.startswith(("wan2.6", "wan2.5")) else "1024*1024"
        task = FakeTask(
            uuid.uuid4().hex,
            kind,
            model,
            prompt,
            n,
            str(params.get("size", default)),
            submit_time=_now(),
        )
        with self._lock:
            plan = self.plans.popleft() if self.plans else Plan()
            task.plan = asdict(plan)
            self.tasks[task.task_id] = task
            self.submits.append({"path": path, "async": is_async, "prompt": prompt, "body": body})
            if not is_async:
                self._finish(task)
            self._save()
        if is_async:
            return _json(
                {
                    "request_id": _rid(),
                    "output": {"task_id": task.task_id, "task_status": "PENDING"},
                }
            )
        if task.status == "FAILED":
            return _error(400, task.plan.get("code") or "InternalError", task.plan["message"])
        answer = self._task_body(task, str(request.base_url))
        if sync_only:  # seed 002: no task fields, output then usage then request_id
            output = answer["output"]
            return _json(
                {
                    "output": {"choices": output["choices"], "finished": True},
                    "usage": answer["usage"],
                    "request_id": answer["request_id"],
                }
            )
        return _json(answer)

    async def _task(self, request: Request) -> Response:
        if (fault := self._fault("task")) is not None:
            return fault
        if not self._authorized(request):
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        task_id = request.path_params["task_id"]
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                return _json(
                    {"request_id": _rid(), "output": {"task_id": task_id, "task_status": "UNKNOWN"}}
                )
            if task.status in ("PENDING", "RUNNING"):
                task.polls += 1
                if not self.hold and task.polls >= self.polls_to_finish:
                    self._finish(task)
                else:
                    task.status = "RUNNING"
                    task.scheduled_time = task.scheduled_time or _now()
            self._save()
            return _json(self._task_body(task, str(request.base_url)))

    async def _cancel(self, request: Request) -> Response:
        if (fault := self._fault("cancel")) is not None:
            return fault
        if not self._authorized(request):
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        with self._lock:
            task = self.tasks.get(request.path_params["task_id"])
            if task is None or task.status != "PENDING":
                return _error(
                    400, "UnsupportedOperation", "Only tasks in PENDING status can be canceled."
                )
            task.status, task.end_time = "CANCELED", _now()
            self._save()
            return _json(
                {
                    "request_id": _rid(),
                    "output": {"task_id": task.task_id, "task_status": "CANCELED"},
                }
            )

    async def _list(self, request: Request) -> Response:
        if (fault := self._fault("list")) is not None:
            return fault
        with self._lock:
            items = [
                self._task_body(t, str(request.base_url))["output"] for t in self.tasks.values()
            ]
        return _json(
            {
                "request_id": _rid(),
                "page_no": 1,
                "page_size": len(items),
                "total": len(items),
                "tasks": items,
            }
        )

    async def _file(self, request: Request) -> Response:
        if (fault := self._fault("download")) is not None:
            return fault
        task = self.tasks.get(request.path_params["task_id"])
        index = request.path_params["index"]
        if task is None or task.status != "SUCCEEDED" or index >= task.n:
            return Response("not found", 404)
        data = self._image(task, index)
        with self._lock:
            cut = self.cuts > 0
            self.cuts -= 1 if cut else 0
        if cut:
            return _CutResponse(data)
        return Response(data, 200, media_type="image/png")

    async def _state(self, request: Request) -> Response:
        with self._lock:
            return _json(
                {
                    "submits": len(self.submits),
                    "hits": dict(self.hits),
                    "by_prompt": Counter(s["prompt"] for s in self.submits),
                    "tasks": {k: t.status for k, t in self.tasks.items()},
                }
            )

    async def _script(self, request: Request) -> Response:
        """``{"fail": {route, status, code, message, headers, times, raw}}``, ``{"plan": {..}}``,
        ``{"cut": n}``, ``{"hold": bool}``: the in-process hooks, over HTTP."""
        body = await request.json()
        if "fail" in body:
            fail = dict(body["fail"])
            self.fail_next(fail.pop("route"), fail.pop("status"), **fail)
        if "plan" in body:
            self.plan_next(**body["plan"])
        if "cut" in body:
            self.cut_next_download(int(body["cut"]))
        if "hold" in body:
            with self._lock:
                self.hold = bool(body["hold"])
        return _json({"ok": True})

    # ------------------------------------------------------------------ task shapes

    def _finish(self, task: FakeTask) -> None:
        task.scheduled_time = task.scheduled_time or _now()
        task.end_time = _now()
        task.status = "FAILED" if task.plan.get("outcome") == "fail" else "SUCCEEDED"
        if task.status == "FAILED":
            task.plan["code"] = task.plan.get("code") or "InternalError.Algo"
            task.plan["message"] = task.plan.get("message") or "Algorithm process error."

    def _task_body(self, task: FakeTask, base: str) -> dict[str, Any]:
        output: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": task.status,
            "submit_time": task.submit_time,
        }
        if task.scheduled_time:
            output["scheduled_time"] = task.scheduled_time
        if task.end_time:
            output["end_time"] = task.end_time
        body: dict[str, Any] = {"request_id": _rid(), "output": output}
        if task.status == "FAILED":
            output["code"], output["message"] = task.plan["code"], task.plan["message"]
        if task.status != "SUCCEEDED":
            return body
        urls = [f"{base.rstrip('/')}/files/{task.task_id}/{i}.png" for i in range(task.n)]
        partial = task.plan.get("outcome") == "partial"
        ok = task.n - 1 if partial else task.n
        if task.kind == "generation":
            output["finished"] = True
            output["choices"] = [
                {
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": [{"image": url, "type": "image"}]},
                }
                for url in urls[:ok]
            ]
            body["usage"] = {
                "image_count": ok,
                "input_tokens": 0,
                "output_tokens": 0,
                "size": task.size,
                "total_tokens": 0,
            }
            return body
        results: list[dict[str, Any]] = [
            {"orig_prompt": task.prompt, "actual_prompt": f"{task.prompt}, detailed", "url": u}
            for u in urls[:ok]
        ]
        if partial:
            results.append(
                {
                    "code": task.plan.get("code") or "DataInspectionFailed",
                    "message": task.plan.get("message")
                    or "Output data may contain inappropriate content.",
                }
            )
        output["results"] = results
        output["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": ok, "FAILED": task.n - ok}
        body["usage"] = {"image_count": ok}
        return body

    def _image(self, task: FakeTask, index: int) -> bytes:
        key = (task.task_id, index)
        if key not in self._pngs:
            width, height = (int(side) for side in task.size.split("*"))
            seed = uuid.uuid5(uuid.NAMESPACE_URL, f"{task.task_id}/{index}").hex
            self._pngs[key] = _png(width, height, seed)
        return self._pngs[key]


class _CutResponse(Response):
    """Announces the whole file, sends half of it, then ends the response early."""

    def __init__(self, data: bytes) -> None:
        super().__init__(b"", 200, media_type="image/png")
        self.data = data

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (b"content-type", b"image/png"),
            (b"content-length", str(len(self.data)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {
                "type": "http.response.body",
                "body": self.data[: len(self.data) // 2],
                "more_body": True,
            }
        )
        # returning without the final body message makes the server drop the connection


def _prompt(body_input: dict[str, Any], kind: str) -> str:
    if kind == "synthesis":
        prompt = body_input.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    for message in body_input.get("messages") or []:
        for part in message.get("content") or [] if isinstance(message, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return str(part["text"])
    return ""


def _rid() -> str:
    return str(uuid.uuid4())


def _json(data: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(data, status)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"request_id": _rid(), "code": code, "message": message}, status, headers=headers
    )


@contextmanager
def serve_fake(**options: Any) -> Iterator[FakeDashScope]:
    """A ``FakeDashScope`` on a real server on 127.0.0.1; ``fake.api_base`` is its ``/api/v1``."""
    fake = FakeDashScope(**options)
    with serve(fake.app) as server:
        fake.base_url = server.base_url
        yield fake


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.dashscope_vendor --port N [--state FILE]``."""
    import uvicorn

    parser = argparse.ArgumentParser(description="A fake DashScope cloud on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, default=None)
    parser.add_argument("--api-key", default="sk-fake")
    parser.add_argument("--polls", type=int, default=2, help="polls until a task finishes")
    args = parser.parse_args(argv)
    fake = FakeDashScope(args.api_key, polls_to_finish=args.polls, state_file=args.state)
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
