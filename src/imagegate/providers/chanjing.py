"""The Chanjing (蝉镜) upstream adapter: access token, submit, poll, page list, download.

Bodies and answers come from ``imagegate.protocols.chanjing``; this module only does I/O.
Chanjing authenticates business calls with a short-lived ``access_token`` header obtained
from ``app_id`` + ``secret_key``. The token is cached until 5 minutes before its expiry (as
the vendor's own clients do), shared by concurrent callers (one refresh at a time, and a
third-party note says a new token invalidates the previous one), and refreshed once when a
call answers 10400. Chanjing has no cancel endpoint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from imagegate.catalog import Catalog, load_catalog, validate
from imagegate.config import CHANJING_DEFAULT_BASE
from imagegate.errors import (
    AuthError,
    InvalidRequest,
    RateLimited,
    TaskNotFound,
    UnsupportedOperation,
    UpstreamError,
)
from imagegate.protocols import chanjing as wire
from imagegate.protocols.headers import parse_retry_after
from imagegate.providers.base import HttpCall, PollPolicy, Provider, Submission
from imagegate.providers.http import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    RetryPolicy,
    download_to,
    submit_transport_error,
    transport_error,
    unreadable_answer,
    with_retries,
)
from imagegate.types import GenerationRequest, ImageResult, TaskError, TaskStatus, UpstreamState

#: image tasks take ~20-90 s; the vendor's own skill polls every 10 s for up to 1800 s
CHANJING_POLL = PollPolicy(initial=2.0, factor=2.0, every=2, maximum=10.0, timeout=1800.0)
#: refresh this many seconds before ``expire_in`` (the official clients use 5 minutes)
TOKEN_MARGIN = 300.0
#: what a dry run shows instead of the real token
REDACTED_TOKEN = "$CHANJING_ACCESS_TOKEN"


class ChanjingProvider(Provider):
    """One Chanjing account (``app_id`` + ``secret_key``)."""

    name = "chanjing"

    def __init__(
        self,
        app_id: str,
        secret_key: str,
        base_url: str = CHANJING_DEFAULT_BASE,
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        poll_policy: PollPolicy | None = None,
        catalog: Catalog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self.secret_key = secret_key
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.poll_policy = poll_policy or CHANJING_POLL
        self.catalog = catalog or load_catalog()
        self._clock = clock
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=DEFAULT_TIMEOUT, headers={"User-Agent": USER_AGENT}
        )
        self._token: str | None = None
        self._expire_in = 0
        self._token_lock = asyncio.Lock()

    # ------------------------------------------------------------------ provider interface

    async def submit(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> UpstreamState:
        """Validate, send the submit, return PENDING with Chanjing's ``unique_id``."""
        body, warnings = self._prepare(request, submission)
        data, trace_id = await self._call("POST", wire.SUBMIT_PATH, json=body, submit=True)
        if not isinstance(data, str) or not data:
            raise unreadable_answer(
                f"Chanjing accepted the submit but returned no unique_id: {data!r:.100}",
                submit=True,
                request_id=trace_id,
            )
        return UpstreamState(
            task_id=data,
            status=TaskStatus.PENDING,
            request_id=trace_id,
            warnings=tuple(warnings),
        )

    async def get(self, task_id: str) -> UpstreamState:
        """One poll. An unknown ``unique_id`` reads as ``UNKNOWN`` (terminal), as on DashScope."""
        try:
            data, trace_id = await self._call("GET", wire.TASK_PATH, params={"unique_id": task_id})
        except TaskNotFound as error:
            return _unknown(task_id, str(error), error.request_id)
        if data is None:
            return _unknown(task_id, f"Chanjing has no task {task_id}", None)
        return wire.decode_task(data, request_id=trace_id)

    async def cancel(self, task_id: str) -> UpstreamState:
        raise UnsupportedOperation(
            f"Chanjing has no cancel endpoint; task {task_id} runs to its end"
        )

    async def download(self, image: ImageResult, dest: Path) -> ImageResult:
        """Output URLs are plain links (no token header); a cut-off body is a DownloadError."""
        return await download_to(self._http, image, dest)

    def describe_call(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> HttpCall:
        """The exact submit request, token redacted, with the warnings about dropped fields."""
        body, warnings = self._prepare(request, submission)
        return HttpCall(
            method="POST",
            url=self.base_url + wire.SUBMIT_PATH,
            headers={wire.TOKEN_HEADER: REDACTED_TOKEN, "Content-Type": "application/json"},
            body=body,
            warnings=tuple(warnings),
        )

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ extras

    async def list_page(
        self,
        *,
        unique_ids: Sequence[str] = (),
        page: int = 1,
        page_size: int = wire.PAGE_MAX,
        is_success: bool = False,
    ) -> tuple[list[UpstreamState], int]:
        """One page of this account's image tasks and the total count."""
        query = wire.PageQuery(
            tuple(unique_ids), wire.CREATION_TYPE_IMAGE, page, page_size, is_success
        )
        body = wire.encode_page_query(query)  # checks the documented bounds first
        data, _ = await self._call("POST", wire.PAGE_PATH, json=body)
        return wire.decode_page(data)

    async def access_token(self, *, stale: str | None = None) -> str:
        """The cached token, refreshed when within ``TOKEN_MARGIN`` of expiry or ``stale``.

        Callers wait on one lock, so concurrent callers share one refresh; a caller whose
        token was rejected passes it as ``stale`` and reuses a token another caller already
        refreshed instead of fetching a second one.
        """
        async with self._token_lock:
            token = self._token
            if token and token != stale and self._clock() < self._expire_in - TOKEN_MARGIN:
                return token
            self._token, self._expire_in = await self._fetch_token()
            return self._token

    # ------------------------------------------------------------------ plumbing

    def _prepare(
        self, request: GenerationRequest, submission: Submission | None
    ) -> tuple[dict[str, Any], list[str]]:
        validate(request, catalog=self.catalog, names=wire.FIELD_NAMES)
        model_name = submission.upstream_model if submission else None
        body = wire.encode_submit(request, model_name=model_name, catalog=self.catalog)
        return body, wire.submit_warnings(request, self.catalog)

    async def _fetch_token(self) -> tuple[str, int]:
        body = {"app_id": self.app_id, "secret_key": self.secret_key}
        try:
            data, _ = await self._send("POST", wire.TOKEN_PATH, json=body)
        except (InvalidRequest, AuthError) as error:
            raise AuthError(
                f"Chanjing refused app_id/secret_key: {error.message}",
                field="app_id",
                vendor_code=error.vendor_code,
                request_id=error.request_id,
            ) from None
        return wire.decode_token(data)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        submit: bool = False,
    ) -> tuple[Any, str | None]:
        """A business call with the token, one refresh on 10400, and retries."""

        async def once() -> tuple[Any, str | None]:
            token = await self.access_token()
            try:
                return await self._send(
                    method, path, token=token, json=json, params=params, submit=submit
                )
            except AuthError:
                fresh = await self.access_token(stale=token)
                return await self._send(
                    method, path, token=fresh, json=json, params=params, submit=submit
                )

        # a submit whose answer was lost raises SubmitOutcomeUnknown, which is never retried
        return await with_retries(once, self.retry)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        submit: bool = False,
    ) -> tuple[Any, str | None]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers[wire.TOKEN_HEADER] = token
        try:
            response = await self._http.request(
                method, self.base_url + path, json=json, params=params, headers=headers
            )
        except httpx.HTTPError as error:
            if submit:  # the task list (list_page) shows whether a lost submit was created
                raise submit_transport_error(error, "Chanjing submit") from error
            raise transport_error(error, f"Chanjing {path}") from error
        return _read(response, path, submit=submit)


def _read(response: httpx.Response, path: str, *, submit: bool) -> tuple[Any, str | None]:
    """The envelope's ``data`` and ``trace_id``; HTTP 429 / 5xx / odd bodies as errors.

    A submit answered 200 with a body that is not an envelope may have created the task:
    ``SubmitOutcomeUnknown``, so it is not sent again.
    """
    status = response.status_code
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RateLimited(
            f"Chanjing {path} answered HTTP 429", retry_after=retry_after, http_status=429
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    is_envelope = isinstance(body, dict) and "code" in body
    if status != 200 and not (is_envelope and body["code"] != wire.CODE_OK):
        raise UpstreamError(f"Chanjing {path} answered HTTP {status}", http_status=status)
    if not is_envelope:
        raise unreadable_answer(
            f"Chanjing {path} answered a body that is not a JSON envelope", submit=submit
        )
    data = wire.decode_envelope(body)
    trace_id = body.get("trace_id")
    return data, str(trace_id) if trace_id else None


def _unknown(task_id: str, message: str, request_id: str | None) -> UpstreamState:
    return UpstreamState(
        task_id=task_id,
        status=TaskStatus.UNKNOWN,
        error=TaskError("task_not_found", message),
        request_id=request_id,
    )
