"""The DashScope upstream: Wan text-to-image on Alibaba Model Studio (or anything speaking it).

Bodies and answers come from ``imagegate.protocols.dashscope``; this module only does the
HTTP: which endpoint, which headers, retries, and streamed downloads.

Retries: reads (``GET /tasks/{id}``) are retried on rate limits, 5xx and every transport
error. A submit is retried on rate limits, 5xx and on transport failures that happen before
the request reached the vendor (connect errors, pool timeouts). A submit whose answer was lost
after it was sent (read timeout, dropped connection) is *not* resent: the vendor may have
created the task and bills per image, so the error goes back to the caller.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from imagegate.catalog import Catalog, load_catalog
from imagegate.catalog.model import Model
from imagegate.config import DASHSCOPE_DEFAULT_BASE
from imagegate.errors import ValidationError
from imagegate.protocols import dashscope as wire
from imagegate.protocols.dashscope_errors import decode_error
from imagegate.providers.base import HttpCall, PollPolicy, Provider, Submission
from imagegate.providers.http import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    RetryPolicy,
    download_to,
    reading_submit_answer,
    submit_transport_error,
    transport_error,
    unreadable_answer,
    with_retries,
)
from imagegate.types import GenerationRequest, ImageResult, TaskStatus, UpstreamState

#: the official SDK's cadence: 1 s, doubled every 3 polls, at most 5 s
DASHSCOPE_POLL = PollPolicy(initial=1.0, factor=2.0, every=3, maximum=5.0)
REDACTED_KEY = "Bearer $DASHSCOPE_API_KEY"


class DashScopeProvider(Provider):
    """Submit, poll, cancel and download Wan text-to-image tasks over DashScope's HTTP API."""

    name = "dashscope"

    def __init__(
        self,
        api_key: str,
        base_url: str = DASHSCOPE_DEFAULT_BASE,
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        poll_policy: PollPolicy | None = None,
        catalog: Catalog | None = None,
        workspace: str | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("DashScopeProvider needs an API key (DASHSCOPE_API_KEY)")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.workspace = workspace
        self.retry = retry or RetryPolicy()
        self.poll_policy = poll_policy or DASHSCOPE_POLL
        self.catalog = catalog or load_catalog()
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)

    # ------------------------------------------------------------------ the wire request

    def _route(
        self, request: GenerationRequest, submission: Submission | None
    ) -> tuple[str, bool, dict[str, Any]]:
        """(path, async?, body) for this request: the catalog says which endpoint."""
        submission = submission or Submission()
        entry = self._entry(request.model)
        sync = submission.sync and (entry.endpoint == "dashscope-generation" or entry.sync)
        body = wire.encode_request(
            request, entry.endpoint, model_name=submission.upstream_model or entry.name
        )
        return wire.submit_path(entry.endpoint, sync=sync), not sync, body

    def _entry(self, model: str) -> Model:
        entry = self.catalog.get(model)
        if entry.endpoint not in ("dashscope-generation", "dashscope-synthesis"):
            raise ValidationError(
                f"model {entry.name} is not a DashScope model (endpoint {entry.endpoint})",
                field="model",
            )
        return entry

    def _headers(self, *, is_async: bool = False, body: bool = False) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if body:
            headers["Content-Type"] = "application/json"
        if is_async:
            headers[wire.ASYNC_HEADER] = "enable"
        if self.workspace:
            headers[wire.WORKSPACE_HEADER] = self.workspace
        return headers

    def describe_call(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> HttpCall:
        path, is_async, body = self._route(request, submission)
        headers = self._headers(is_async=is_async, body=True)
        headers["Authorization"] = REDACTED_KEY
        headers.pop("User-Agent", None)
        return HttpCall("POST", self.base_url + path, headers, body)

    # ------------------------------------------------------------------ operations

    async def submit(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> UpstreamState:
        """Create the task; a sync endpoint answers with the finished images at once."""
        path, is_async, body = self._route(request, submission)
        headers = self._headers(is_async=is_async, body=True)

        async def once() -> Any:
            return await self._call("POST", path, headers, json=body, what="submit", submit=True)

        # a submit whose answer was lost raises SubmitOutcomeUnknown, which is never retried
        data = await with_retries(once, self.retry)
        with reading_submit_answer(f"DashScope submit (POST {path})"):
            return wire.decode_submit(data) if is_async else wire.decode_sync(data)

    async def get(self, task_id: str) -> UpstreamState:
        async def once() -> Any:
            return await self._call("GET", wire.task_path(task_id), self._headers(), what="poll")

        state = wire.decode_task(await with_retries(once, self.retry))
        return state if state.task_id else _with_id(state, task_id)

    async def cancel(self, task_id: str) -> UpstreamState:
        """``POST /tasks/{id}/cancel``: only PENDING tasks; otherwise ``UnsupportedOperation``."""
        data = await self._call("POST", wire.cancel_path(task_id), self._headers(), what="cancel")
        output = data.get("output") if isinstance(data, dict) else None
        if isinstance(output, dict) and output.get("task_status"):
            state = wire.decode_task(data)
            return state if state.task_id else _with_id(state, task_id)
        # The cancel answer's shape is UNCONFIRMED; a 200 without a status means it worked.
        request_id = data.get("request_id") if isinstance(data, dict) else None
        return UpstreamState(task_id, TaskStatus.CANCELED, request_id=request_id, raw=data)

    async def download(self, image: ImageResult, dest: Path) -> ImageResult:
        return await download_to(self._http, image, dest)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ HTTP

    async def _call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        json: dict[str, Any] | None = None,
        what: str,
        submit: bool = False,
    ) -> Any:
        """One request; a non-2xx answer or an unreadable body becomes a typed error.

        For a submit, a failure after the request was sent (a lost answer, a success body
        that cannot be read) is ``SubmitOutcomeUnknown``: the task may exist upstream.
        """
        url = self.base_url + path
        try:
            response = await self._http.request(method, url, headers=headers, json=json)
        except httpx.HTTPError as error:
            wrap = submit_transport_error if submit else transport_error
            raise wrap(error, f"DashScope {what} ({method} {path})") from error
        if response.status_code >= 300:
            raise decode_error(response.status_code, response.content, response.headers)
        try:
            data = response.json()
        except ValueError:
            raise unreadable_answer(
                f"DashScope {what} answered HTTP {response.status_code} with a body that is "
                f"not JSON: {response.text[:120]!r}",
                submit=submit,
                http_status=response.status_code,
                request_id=response.headers.get("x-request-id"),
            ) from None
        if isinstance(data, dict) and data.get("code") and not isinstance(data.get("output"), dict):
            raise decode_error(response.status_code, data, response.headers)
        return data


def _with_id(state: UpstreamState, task_id: str) -> UpstreamState:
    return replace(state, task_id=task_id)
