"""Upstream adapter for an OpenAI-compatible images endpoint (yunwu-api, new-api, one-api...).

The upstream is synchronous: ``submit`` posts ``/v1/images/generations`` and returns a
terminal state with the images. There is no upstream task to poll, so the state of each
finished submit is kept in memory (bounded) for ``get``; an id not kept (another process, a
restart, evicted) reads as UNKNOWN. The wire format lives in ``imagegate.protocols.openai``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from imagegate.catalog import Catalog, load_catalog
from imagegate.errors import UpstreamError
from imagegate.protocols import openai as protocol
from imagegate.providers.base import HttpCall, Provider, Submission
from imagegate.providers.http import (
    USER_AGENT,
    RetryPolicy,
    download_to,
    reading_submit_answer,
    submit_transport_error,
    with_retries,
)
from imagegate.types import (
    GenerationRequest,
    ImageResult,
    TaskError,
    TaskStatus,
    UpstreamState,
)

#: placeholder shown by ``describe_call`` instead of the secret
API_KEY_PLACEHOLDER = "$IMAGEGATE_OPENAI_API_KEY"


def normalize_base_url(base_url: str) -> str:
    """``https://host``, ``https://host/v1`` and ``https://host/v1/`` all mean ``https://host/v1``.

    A base with another path (``https://host/openai``) gets ``/v1`` appended, the way the
    ``openai`` SDK's ``base_url`` always ends in the version segment.
    """
    base = base_url.strip().rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


class OpenAICompatProvider(Provider):
    """Calls ``POST {base}/v1/images/generations`` with ``Authorization: Bearer <key>``.

    ``submission.options["response_format"]`` (``url`` or ``b64_json``) is forwarded only when
    given (seed 003's deployment rejects it as a string). ``submission.upstream_model`` is the
    model name sent upstream. Retries 429 (honouring ``Retry-After``), 5xx and transport
    errors before the request left, with backoff and jitter; a 4xx is final, and a lost or
    unreadable answer is ``SubmitOutcomeUnknown`` (the images may have been made and billed).
    The key is sent per request, never as a client default, so result downloads from storage
    hosts never carry it.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        catalog: Catalog | None = None,
        timeout: float = 300.0,
        keep: int = 256,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._api_key = api_key
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=10.0),
            headers={"User-Agent": USER_AGENT},
        )
        self._timeout = timeout
        self.retry = retry or RetryPolicy()
        self._catalog = catalog
        self._keep = keep
        self._results: OrderedDict[str, UpstreamState] = OrderedDict()

    @property
    def url(self) -> str:
        return self.base_url + protocol.PATH.removeprefix("/v1")

    def _prepare(
        self, request: GenerationRequest, submission: Submission | None
    ) -> tuple[dict[str, Any], list[str]]:
        """The body to send and the warnings about what was not forwarded."""
        warnings: list[str] = []
        catalog = self._catalog or load_catalog()
        if request.reference_images and request.model in catalog:
            rule = catalog.get(request.model).reference_images
            if rule is not None and not rule.forwarded:
                warnings.append(
                    rule.warning or f"{request.model} ignores reference images; not sent"
                )
                request = request.with_(reference_images=())
        options = submission.options if submission else {}
        body = protocol.encode_request(
            request,
            model_name=submission.upstream_model if submission else None,
            response_format=options.get("response_format"),
        )
        return body, warnings

    def describe_call(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> HttpCall:
        body, _ = self._prepare(request, submission)
        return HttpCall(
            method="POST",
            url=self.url,
            headers={
                "Authorization": f"Bearer {API_KEY_PLACEHOLDER}",
                "Content-Type": "application/json",
            },
            body=body,
        )

    async def submit(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> UpstreamState:
        body, warnings = self._prepare(request, submission)

        async def post() -> httpx.Response:
            try:
                response = await self._http.post(
                    self.url,
                    json=body,
                    headers={"Authorization": f"Bearer {self._api_key}"},
                    timeout=httpx.Timeout(self._timeout, connect=10.0),
                )
            except httpx.HTTPError as error:  # a lost answer is SubmitOutcomeUnknown: not resent
                raise submit_transport_error(error, f"POST {self.url}") from error
            if response.status_code != 200:
                raise protocol.decode_error(response.status_code, _body(response), response.headers)
            return response

        response = await with_retries(post, self.retry)
        # Decoding is outside the retry loop: a 200 we cannot read was generated (and paid
        # for) upstream; sending it again would pay twice.
        request_id = response.headers.get("x-request-id")
        payload = _body(response)
        with reading_submit_answer(f"POST {self.url}"):
            if not isinstance(payload, dict):
                raise UpstreamError(
                    f"POST {self.url} answered 200 with a body that is not a JSON object",
                    request_id=request_id,
                    http_status=200,
                )
            state = protocol.decode_response(
                payload, request_id=request_id, expected_n=request.n or 1
            )
        if state.task_id in self._results:  # an upstream reusing request ids
            state = replace(state, task_id=f"{state.task_id}-{len(self._results)}")
        if warnings:
            state = replace(state, warnings=(*warnings, *state.warnings))
        self._remember(state)
        return state

    def _remember(self, state: UpstreamState) -> None:
        self._results[state.task_id] = state
        while len(self._results) > self._keep:
            self._results.popitem(last=False)

    async def get(self, task_id: str) -> UpstreamState:
        state = self._results.get(task_id)
        if state is not None:
            return state
        return UpstreamState(
            task_id=task_id,
            status=TaskStatus.UNKNOWN,
            error=TaskError(
                "UNKNOWN",
                f"task {task_id} is not known to this {self.name} adapter: the upstream is "
                "synchronous and results are kept in memory only",
            ),
        )

    async def download(self, image: ImageResult, dest: Path) -> ImageResult:
        return await download_to(self._http, image, dest)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


__all__ = ["API_KEY_PLACEHOLDER", "OpenAICompatProvider", "normalize_base_url"]
