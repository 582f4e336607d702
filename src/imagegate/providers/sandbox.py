"""The sandbox provider: a real local renderer that behaves like an asynchronous vendor.

It exists so the SDK, the CLI and the gateway can be developed and tested without a vendor
account, and so the gateway has something honest to serve for models without credentials.
It renders real PNGs (see ``sandbox_render``), walks each task through PENDING -> RUNNING ->
SUCCEEDED by elapsed wall-clock time, injects failures deterministically per task id, and can
persist its jobs in ``state_dir`` so a new process resumes (never re-submits) a task. A
prompt holding one of ``blocked_words`` is refused at submit the way DashScope's moderation
refuses one (``DataInspectionFailed``), so a client's handling of content refusals can be
tried offline.

Images are rendered at download time, straight into the destination file: ``get()`` stays
cheap however often it is polled and memory stays bounded at 4096*4096.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from imagegate.catalog import Catalog, effective, load_catalog
from imagegate.errors import ContentRejected, DownloadError, TaskNotFound, UnsupportedOperation
from imagegate.providers.base import PollPolicy, Provider, Submission
from imagegate.providers.http import publish, write_atomic
from imagegate.providers.sandbox_render import SOFTWARE, write_png
from imagegate.types import (
    GenerationRequest,
    ImageResult,
    TaskError,
    TaskStatus,
    UpstreamState,
    Usage,
)

#: share of the latency a task spends PENDING before it turns RUNNING
PENDING_SHARE = 0.3
SEED_MAX = 2147483647
FAILURE_CODE = "SandboxInjectedFailure"
IMAGE_FAILURE_CODE = "SandboxInjectedImageFailure"
#: the vendor code of a refused prompt: DashScope's, which every front maps to its own refusal
CONTENT_CODE = "DataInspectionFailed"
#: words that make the sandbox refuse a prompt, unless told otherwise
BLOCKED_WORDS = ("sandbox-blocked",)
_TASK_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_URL = re.compile(r"^sandbox://([0-9a-f-]{36})/(\d+)$")


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by ``text``: failures are decided per task id, reproducibly."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class SandboxJob:
    """One submitted task, as persisted in ``state_dir/<task_id>.json``.

    The outcome (failure, failed images, latency) is fixed at submit time and stored, so a
    process that resumes the task sees it finish exactly as the submitting one would have.
    """

    task_id: str
    request: dict[str, Any]
    seed: int
    submitted_at: float
    latency: float
    fails: bool = False
    failed_images: list[int] = field(default_factory=list)
    canceled_at: float | None = None

    def status(self, now: float) -> TaskStatus:
        if self.canceled_at is not None:
            return TaskStatus.CANCELED
        elapsed = now - self.submitted_at
        if elapsed < self.latency * PENDING_SHARE:
            return TaskStatus.PENDING
        if elapsed < self.latency:
            return TaskStatus.RUNNING
        return TaskStatus.FAILED if self.fails else TaskStatus.SUCCEEDED

    @property
    def generation(self) -> GenerationRequest:
        return GenerationRequest.from_dict(self.request)


class SandboxProvider(Provider):
    """Local, deterministic stand-in for a text-to-image vendor (labelled ``sandbox``)."""

    name = "sandbox"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        state_dir: Path | None = None,
        catalog: Catalog | None = None,
        image_failure_rate: float = 0.0,
        blocked_words: Sequence[str] = BLOCKED_WORDS,
    ) -> None:
        for label, rate in (
            ("failure_rate", failure_rate),
            ("image_failure_rate", image_failure_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"sandbox {label} must be between 0 and 1, got {rate}")
        if latency < 0:
            raise ValueError(f"sandbox latency must be >= 0 seconds, got {latency}")
        self.latency = float(latency)
        self.failure_rate = float(failure_rate)
        self.image_failure_rate = float(image_failure_rate)
        self.blocked_words = tuple(word.casefold() for word in blocked_words if word.strip())
        self.state_dir = Path(state_dir) if state_dir is not None else None
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = catalog or load_catalog()
        self._jobs: dict[str, SandboxJob] = {}
        # Poll about ten times over the latency: quick enough for tests, gentle for long waits.
        self.poll_policy = PollPolicy(
            initial=max(0.01, min(1.0, self.latency / 10)),
            factor=2.0,
            every=3,
            maximum=max(0.05, min(5.0, self.latency / 2)),
            timeout=max(60.0, self.latency * 10),
        )

    # -- persistence --------------------------------------------------------------------

    def _path(self, task_id: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"{task_id}.json"

    def _save(self, job: SandboxJob) -> None:
        if self.state_dir is None:
            self._jobs[job.task_id] = job
            return
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".job-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(job), out, ensure_ascii=False)
        Path(tmp).replace(self._path(job.task_id))

    def _load(self, task_id: str) -> SandboxJob | None:
        if not _TASK_ID.match(task_id):
            return None
        if self.state_dir is None:
            return self._jobs.get(task_id)
        try:
            data = json.loads(self._path(task_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return SandboxJob(**data)

    def submission_count(self) -> int:
        """How many tasks were ever submitted here (files in ``state_dir``, or in memory)."""
        if self.state_dir is None:
            return len(self._jobs)
        return sum(1 for _ in self.state_dir.glob("*.json"))

    # -- Provider -------------------------------------------------------------------------

    async def submit(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> UpstreamState:
        full = effective(request, self.catalog)
        self._inspect(full.prompt)
        task_id = str(uuid.uuid4())
        seed = full.seed if full.seed is not None else random.SystemRandom().randint(0, SEED_MAX)
        count = full.n or 1
        failed = [i for i in range(count) if _unit(f"{task_id}:{i}") < self.image_failure_rate]
        job = SandboxJob(
            task_id=task_id,
            request=full.with_(seed=seed).to_dict(),
            seed=seed,
            submitted_at=time.time(),
            latency=self.latency,
            fails=_unit(f"{task_id}:task") < self.failure_rate or len(failed) == count,
            failed_images=failed,
        )
        self._save(job)
        if submission is not None and submission.sync and self.latency > 0:
            await anyio.sleep(self.latency)
        return self._state(job)

    def _inspect(self, prompt: str) -> None:
        """Refuse a prompt holding a blocked word, as a vendor's moderation would."""
        text = prompt.casefold()
        for word in self.blocked_words:
            if word in text:
                raise ContentRejected(
                    f"Input data may contain inappropriate content: prompt contains {word!r}, "
                    "a word the sandbox refuses (sandbox blocked_words).",
                    field="prompt",
                    vendor_code=CONTENT_CODE,
                )

    async def get(self, task_id: str) -> UpstreamState:
        job = self._load(task_id)
        if job is None:
            return UpstreamState(
                task_id=task_id,
                status=TaskStatus.UNKNOWN,
                error=TaskError("UnknownTask", f"the sandbox has no task {task_id!r}"),
            )
        return self._state(job)

    async def cancel(self, task_id: str) -> UpstreamState:
        job = self._load(task_id)
        if job is None:
            raise TaskNotFound(f"the sandbox has no task {task_id!r}", field="task_id")
        status = job.status(time.time())
        if status is not TaskStatus.PENDING:
            raise UnsupportedOperation(
                f"sandbox task {task_id} is {status.value}; only PENDING tasks can be canceled",
                vendor_code="UnsupportedOperation",
            )
        job.canceled_at = time.time()
        self._save(job)
        return self._state(job)

    async def download(self, image: ImageResult, dest: Path) -> ImageResult:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if image.data is not None:
            await anyio.to_thread.run_sync(write_atomic, dest, image.data)
            return replace(image, path=dest, data=None)
        match = _URL.match(image.url or "")
        if not match:
            raise DownloadError(f"not a sandbox image URL: {image.url!r}")
        job = self._load(match[1])
        index = int(match[2])
        if job is None:
            raise DownloadError(f"the sandbox has no task {match[1]!r} to render")
        request = job.generation
        if index >= (request.n or 1) or index in job.failed_images:
            raise DownloadError(f"sandbox task {job.task_id} has no image {index}")
        assert request.size is not None
        width, height, seed = request.size.width, request.size.height, _image_seed(job, index)
        await anyio.to_thread.run_sync(
            _render_to, dest, request.prompt, seed, width, height, bool(request.watermark)
        )
        return replace(image, path=dest, data=None, width=width, height=height, seed=seed)

    # -- states -----------------------------------------------------------------------------

    def _state(self, job: SandboxJob) -> UpstreamState:
        status = job.status(time.time())
        raw: dict[str, Any] = {
            "sandbox": True,
            "submitted_at": job.submitted_at,
            "latency": job.latency,
            "seed": job.seed,
        }
        if status is TaskStatus.FAILED:
            why = (
                f"every image failed (image_failure_rate {self.image_failure_rate})"
                if job.failed_images and len(job.failed_images) == (job.generation.n or 1)
                else f"failure_rate {self.failure_rate}"
            )
            message = f"sandbox: injected failure for task {job.task_id} ({why}); "
            message += "the request itself was fine"
            return UpstreamState(
                task_id=job.task_id,
                status=status,
                error=TaskError(FAILURE_CODE, message),
                raw=raw,
            )
        if status is not TaskStatus.SUCCEEDED:
            return UpstreamState(task_id=job.task_id, status=status, raw=raw)
        request = job.generation
        assert request.size is not None
        images = tuple(self._image(job, request, i) for i in range(request.n or 1))
        usage = Usage(image_count=sum(1 for image in images if image.ok), size=request.size.star)
        return UpstreamState(
            task_id=job.task_id, status=status, images=images, usage=usage, raw=raw
        )

    def _image(self, job: SandboxJob, request: GenerationRequest, index: int) -> ImageResult:
        assert request.size is not None
        metadata = {"sandbox": True, "index": index, "renderer": SOFTWARE}
        if index in job.failed_images:
            return ImageResult(
                seed=_image_seed(job, index),
                error_code=IMAGE_FAILURE_CODE,
                error_message=f"sandbox: injected failure for image {index} of task "
                f"{job.task_id} (image_failure_rate {self.image_failure_rate})",
                metadata=metadata,
            )
        return ImageResult(
            url=f"sandbox://{job.task_id}/{index}",
            width=request.size.width,
            height=request.size.height,
            seed=_image_seed(job, index),
            metadata=metadata,
        )


def _image_seed(job: SandboxJob, index: int) -> int:
    """Image ``i`` of a batch uses seed + i, so each is reproducible on its own."""
    return (job.seed + index) % (SEED_MAX + 1)


def _render_to(dest: Path, prompt: str, seed: int, width: int, height: int, mark: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-", suffix=".png")
    os.close(fd)
    try:
        write_png(Path(tmp), prompt, seed, width, height, watermark=mark)
        publish(Path(tmp), dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
