"""The SDK: ``AsyncClient`` (its synchronous twin ``Client`` is in ``sync_client``).

One call validates against the catalog (before a cent is spent), submits to whichever
provider serves the model, polls with that provider's policy and saves every image to disk::

    with imagegate.Client(sandbox=True) as client:
        result = client.generate("a flower shop", model="wan2.6-t2i", size="16:9", n=2)
        print(result.paths)

Task ids are ``"<provider>:<upstream task id>"`` (``"dashscope:8f0c…"``), so ``get``, ``wait``
and ``cancel`` work from any client instance, in any process: no local state is required.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagegate.catalog import Catalog, build_request, load_catalog, warnings_for
from imagegate.config import Credentials
from imagegate.dry_run import DryRun, redact_headers
from imagegate.errors import DownloadError, InvalidRequest, TaskFailed, ValidationError
from imagegate.providers.base import HttpCall, PollPolicy, Provider, Submission
from imagegate.routing import Router
from imagegate.types import (
    GenerationRequest,
    GenerationResult,
    Task,
    TaskStatus,
    UpstreamState,
)
from imagegate.waiting import (
    Progress,
    download_images,
    notify,
    poll_until_done,
    submit_and_wait,
)

ProgressCallback = Callable[[Progress], object]

_KEEP = 1024


def parse_task_id(task_id: str) -> tuple[str, str]:
    """``"dashscope:abc"`` -> ``("dashscope", "abc")``."""
    provider, sep, upstream = task_id.partition(":")
    if not sep or not provider or not upstream:
        raise InvalidRequest(
            f"task id {task_id!r} must look like '<provider>:<upstream task id>', "
            "as returned by submit()",
            field="task_id",
        )
    return provider, upstream


def _merge(*groups: Sequence[str]) -> list[str]:
    merged: list[str] = []
    for group in groups:
        merged.extend(item for item in group if item not in merged)
    return merged


def _stem(task: Task) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{task.provider}-{task.upstream_task_id}")


class AsyncClient:
    """Generate images through any vendor of the catalog, asynchronously."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        chanjing_app_id: str | None = None,
        chanjing_secret_key: str | None = None,
        chanjing_base_url: str | None = None,
        openai_base_url: str | None = None,
        openai_api_key: str | None = None,
        provider: str | None = None,
        sandbox: bool = False,
        out_dir: str | Path = ".",
        poll_policy: PollPolicy | None = None,
        sandbox_options: dict[str, Any] | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        credentials = Credentials.from_env(
            dashscope_api_key=api_key,
            dashscope_base_url=base_url,
            chanjing_app_id=chanjing_app_id,
            chanjing_secret_key=chanjing_secret_key,
            chanjing_base_url=chanjing_base_url,
            openai_base_url=openai_base_url,
            openai_api_key=openai_api_key,
        )
        self.catalog = catalog or load_catalog()
        self.out_dir = Path(out_dir)
        self.poll_policy = poll_policy
        self.router = Router(
            credentials,
            sandbox=sandbox,
            sandbox_options=sandbox_options,
            catalog=self.catalog,
            provider=provider,
            poll_policy=poll_policy,
        )
        self._tasks: OrderedDict[str, Task] = OrderedDict()

    # -- building and checking ----------------------------------------------------------

    def build(
        self,
        prompt: str,
        *,
        model: str,
        size: str | None = None,
        n: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
        prompt_extend: bool | None = None,
        watermark: bool | None = None,
        quality: str | None = None,
        clarity: int | None = None,
        aspect_ratio: str | None = None,
        reference_images: Sequence[str] = (),
        sync: bool = False,
    ) -> GenerationRequest:
        """The checked request; raises ``ValidationError`` naming the field and the rule."""
        request = build_request(
            model,
            prompt,
            size=size,
            aspect_ratio=aspect_ratio,
            clarity=clarity,
            n=n,
            seed=seed,
            negative_prompt=negative_prompt,
            prompt_extend=prompt_extend,
            watermark=watermark,
            quality=quality,
            reference_images=reference_images,
            catalog=self.catalog,
        )
        entry = self.catalog.get(request.model)
        if sync and not entry.sync and entry.endpoint != "openai-images":
            raise ValidationError(
                f"sync: {entry.name} has no synchronous endpoint (only asynchronous tasks); "
                "drop --sync / sync=True",
                field="sync",
            )
        return request

    # -- the one-call path ----------------------------------------------------------------

    async def generate(
        self,
        prompt: str,
        *,
        model: str,
        size: str | None = None,
        n: int | None = None,
        seed: int | None = None,
        negative_prompt: str | None = None,
        prompt_extend: bool | None = None,
        watermark: bool | None = None,
        quality: str | None = None,
        clarity: int | None = None,
        aspect_ratio: str | None = None,
        reference_images: Sequence[str] = (),
        out_dir: str | Path | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        sync: bool = False,
    ) -> GenerationResult:
        """Validate, submit, wait, download every image; return the files and the task.

        Nothing is sent when a field breaks the model's rules (``ValidationError``). A FAILED
        task raises ``TaskFailed`` with the vendor's code, a poll past ``timeout`` seconds
        ``Timeout``; a partial batch returns the good images, lists the failed ones (``ok``
        false) and adds a warning per failure. Files are ``<provider>-<task>-<i>.png``.
        """
        request = self.build(
            prompt,
            model=model,
            size=size,
            n=n,
            seed=seed,
            negative_prompt=negative_prompt,
            prompt_extend=prompt_extend,
            watermark=watermark,
            quality=quality,
            clarity=clarity,
            aspect_ratio=aspect_ratio,
            reference_images=reference_images,
            sync=sync,
        )
        provider = self.router.provider_for(request.model)
        warnings = warnings_for(request, self.catalog)
        start = time.monotonic()
        holder: dict[str, Task] = {}

        async def submitted(state: UpstreamState) -> None:
            holder["task"] = self._record(provider, state, request, warnings)
            await self._report(
                on_progress, holder["task"], time.monotonic() - start, 0, "submitted"
            )

        async def polled(state: UpstreamState, elapsed: float, polls: int) -> None:
            holder["task"] = self._record(provider, state, request, warnings)
            await self._report(on_progress, holder["task"], time.monotonic() - start, polls)

        state = await submit_and_wait(
            provider,
            request,
            submission=Submission(sync=True) if sync else None,
            policy=self.poll_policy,
            timeout=timeout,
            on_submitted=submitted,
            on_state=polled,
        )
        task = self._record(provider, state, request, warnings)
        _raise_for(task)
        await self._report(on_progress, task, time.monotonic() - start, -1, "downloading")
        result = await self._download(provider, task, out_dir)
        await self._report(on_progress, task, time.monotonic() - start, -1, "done")
        return result

    # -- task by task -----------------------------------------------------------------------

    async def submit(self, prompt: str, *, model: str, sync: bool = False, **options: Any) -> Task:
        """Validate and submit; return at once with the task (id ``provider:upstream id``).

        ``options`` are the request fields of ``generate`` (size, n, seed, ...).
        """
        request = self.build(prompt, model=model, sync=sync, **options)
        provider = self.router.provider_for(request.model)
        state = await provider.submit(request, Submission(sync=True) if sync else None)
        return self._record(provider, state, request, warnings_for(request, self.catalog))

    async def get(self, task_id: str) -> Task:
        """Ask the upstream once about a task."""
        provider_name, upstream = parse_task_id(task_id)
        provider = self.router.by_name(provider_name)
        return self._record(provider, await provider.get(upstream))

    async def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Task:
        """Poll until the task is terminal (``Timeout`` after ``timeout`` seconds)."""
        provider_name, upstream = parse_task_id(task_id)
        provider = self.router.by_name(provider_name)
        start = time.monotonic()

        async def polled(state: UpstreamState, elapsed: float, polls: int) -> None:
            task = self._record(provider, state)
            await self._report(on_progress, task, time.monotonic() - start, polls)

        state = await poll_until_done(
            provider,
            upstream,
            policy=self.poll_policy,
            timeout=timeout,
            on_state=polled,
            label=task_id,
        )
        return self._record(provider, state)

    async def cancel(self, task_id: str) -> Task:
        """Cancel a PENDING task (``UnsupportedOperation`` once it runs, or if the vendor can't)."""
        provider_name, upstream = parse_task_id(task_id)
        provider = self.router.by_name(provider_name)
        return self._record(provider, await provider.cancel(upstream))

    async def download(
        self, task: Task | str, out_dir: str | Path | None = None
    ) -> GenerationResult:
        """Save a finished task's images (waiting for it first if it is not finished)."""
        if isinstance(task, str):
            task = await self.wait(task)
        _raise_for(task)
        provider = self.router.by_name(task.provider or "")
        return await self._download(provider, task, out_dir)

    async def dry_run(
        self, prompt: str, *, model: str, sync: bool = False, **options: Any
    ) -> DryRun:
        """The exact HTTP request the vendor would receive; nothing is sent, no key needed."""
        request = self.build(prompt, model=model, sync=sync, **options)
        provider = self.router.preview(request.model)
        warnings = warnings_for(request, self.catalog)
        if provider.name == "sandbox":
            return DryRun("sandbox", request, None, warnings)
        described = provider.describe_call(request, Submission(sync=True) if sync else None)
        extra = list(getattr(described, "warnings", ()))
        call = HttpCall(
            described.method, described.url, redact_headers(described.headers), described.body
        )
        return DryRun(provider.name, request, call, _merge(warnings, extra))

    # -- plumbing -----------------------------------------------------------------------------

    def _record(
        self,
        provider: Provider,
        state: UpstreamState,
        request: GenerationRequest | None = None,
        warnings: Sequence[str] = (),
    ) -> Task:
        """Fold an upstream state into the Task this client knows (or a fresh one)."""
        task_id = f"{provider.name}:{state.task_id}"
        task = self._tasks.get(task_id)
        if task is None:
            known = request or GenerationRequest(model="", prompt="")
            task = Task(
                id=task_id,
                model=known.model,
                request=known,
                provider=provider.name,
                upstream_task_id=state.task_id,
                front="sdk",
            )
        now = datetime.now(UTC)
        task.status = state.status
        if state.status is not TaskStatus.PENDING and task.scheduled_time is None:
            task.scheduled_time = now
        if state.status.is_terminal and task.end_time is None:
            task.end_time = now
        if state.images:
            task.images = list(state.images)
        task.usage = state.usage or task.usage
        task.error = state.error
        task.request_id = state.request_id or task.request_id
        task.warnings = _merge(task.warnings, warnings, state.warnings)
        self._tasks[task_id] = task
        self._tasks.move_to_end(task_id)
        while len(self._tasks) > _KEEP:
            self._tasks.popitem(last=False)
        return task

    async def _report(
        self,
        callback: ProgressCallback | None,
        task: Task,
        elapsed: float,
        polls: int,
        stage: str = "polling",
    ) -> None:
        await notify(callback, Progress(task.id, task.status, elapsed, max(polls, 0), stage))

    async def _download(
        self, provider: Provider, task: Task, out_dir: str | Path | None
    ) -> GenerationResult:
        target = Path(out_dir) if out_dir is not None else self.out_dir
        images = await download_images(provider, task.images, target, _stem(task))
        task.images = images
        good = [image for image in images if image.ok]
        for index, image in enumerate(images):
            if not image.ok:
                code = f" [{image.error_code}]" if image.error_code else ""
                task.warnings = _merge(
                    task.warnings, [f"image {index} failed: {image.error_message}{code}"]
                )
        if not good:
            first = next((image for image in images if not image.ok), None)
            if first is not None and first.error_code == DownloadError.code:
                raise DownloadError(
                    f"task {task.id}: no image could be saved: {first.error_message}"
                )
            raise TaskFailed(
                f"task {task.id} succeeded but produced no image"
                + (f": {first.error_message}" if first else ""),
                vendor_code=first.error_code if first else None,
                request_id=task.request_id,
            )
        return GenerationResult(task=task, images=tuple(images))

    async def aclose(self) -> None:
        await self.router.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _raise_for(task: Task) -> None:
    """A terminal task that did not succeed becomes ``TaskFailed`` with the vendor's words."""
    if task.status is TaskStatus.SUCCEEDED:
        return
    if task.status is TaskStatus.FAILED:
        error = task.error
        raise TaskFailed(
            f"task {task.id} failed upstream: " + (error.message if error else "no reason given"),
            vendor_code=error.code if error else None,
            request_id=task.request_id,
        )
    if task.status is TaskStatus.CANCELED:
        raise TaskFailed(f"task {task.id} was canceled", vendor_code="CANCELED")
    if task.status is TaskStatus.UNKNOWN:
        reason = task.error.message if task.error else "expired, or not this account's"
        raise TaskFailed(f"task {task.id} is UNKNOWN upstream: {reason}", vendor_code="UNKNOWN")
    raise TaskFailed(f"task {task.id} is still {task.status.value}; wait for it first")


def __getattr__(name: str) -> Any:
    """``imagegate.client.Client`` lives in ``imagegate.sync_client`` (it wraps this module)."""
    if name == "Client":
        from imagegate.sync_client import Client

        return Client
    raise AttributeError(f"module 'imagegate.client' has no attribute {name!r}")
