"""The task engine: in-process workers that take stored tasks to a terminal state.

One dispatcher claims tasks from the TaskStore with a lease (``lease_owner`` + ``lease_until``)
and runs each in its own coroutine, at most ``max_concurrent`` at a time. It wakes when a task
is submitted (``TaskEvents.wake``), when a task finishes, and every ``idle_interval`` seconds
to pick up tasks whose lease expired (a crashed process, another node's dead worker).

A task's life here:

1. **Submit** (only if it has no upstream id). ``submitting_since`` is written first, then
   ``provider.submit()`` is called, and the upstream id is written *the moment it returns*,
   before anything else. Rate limits and 5xx/transport errors are retried with backoff; any
   other error (a 4xx parameter error, a content rejection) is final.
2. **Poll** with the provider's ``PollPolicy`` (bounded by its ``timeout``), renewing the lease.
3. **Finish**: download results into the BlobStore, then SUCCEEDED / FAILED / CANCELED.

A task that already has an upstream id is only ever polled, never submitted again: each
vendor bills per image.

The one window left: the process dies after the upstream accepted a submit but before our
write of its id commits (one local UPDATE, microseconds after the response is parsed). The
next worker finds ``submitting_since`` set and no upstream id; it cannot know whether the
upstream got the task, so it submits again and adds a visible warning to the task saying the
upstream may have received it twice. The window is kept that small by writing the id before
any other work, and on a graceful stop (SIGTERM) by letting in-flight submits finish and
record their id (``stop_grace``) instead of cancelling them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from imagegate.engine.events import TaskEvents
from imagegate.engine.results import outcome_of
from imagegate.engine.retention import RetentionSweeper
from imagegate.engine.upstreams import ProviderSource
from imagegate.errors import ImagegateError
from imagegate.providers.base import PollPolicy, Provider
from imagegate.providers.http import RetryPolicy, is_retryable
from imagegate.storage.blobs import BlobStore
from imagegate.storage.db import utcnow
from imagegate.storage.tasks import TaskRecord, TaskStore
from imagegate.types import Task, TaskError, TaskStatus, UpstreamState

log = logging.getLogger("imagegate.engine")

RESUBMIT_WARNING = (
    "an earlier submit of this task to {provider} was interrupted before its upstream task id "
    "was stored; it was submitted again, so the upstream may have received it twice"
)


@dataclass(frozen=True)
class EngineConfig:
    max_concurrent: int = 32
    lease_seconds: float = 30.0
    #: how often an idle engine looks for new tasks and expired leases
    idle_interval: float = 1.0
    submit_retry: RetryPolicy = field(default_factory=RetryPolicy)
    download_attempts: int = 3
    download_delay: float = 0.5
    #: overrides every provider's own poll policy (tests use tiny intervals)
    poll_policy: PollPolicy | None = None
    #: on stop, how long in-flight upstream submits may take to return and record their id
    stop_grace: float = 10.0


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class TaskEngine:
    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStore,
        providers: ProviderSource,
        *,
        config: EngineConfig | None = None,
        events: TaskEvents | None = None,
        worker_id: str | None = None,
        retention: RetentionSweeper | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.providers = providers
        self.config = config or EngineConfig()
        self.events = events or TaskEvents()
        self.worker_id = worker_id or _worker_id()
        self.retention = retention
        self._dispatcher: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._submits: set[asyncio.Future[Any]] = set()
        self._stopping = False

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._dispatcher is not None and not self._dispatcher.done()

    async def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self._dispatcher = asyncio.create_task(self._dispatch(), name="imagegate-dispatcher")
        if self.retention is not None:
            self._sweeper = asyncio.create_task(self.retention.run(), name="imagegate-retention")

    async def stop(self, *, release: bool = True) -> None:
        """Stop claiming and working.

        ``release=True`` (a graceful stop) waits up to ``stop_grace`` for in-flight submits to
        record their upstream id, then gives every lease back so another process resumes at
        once. ``release=False`` leaves the leases to expire, exactly what a crash leaves.
        """
        self._stopping = True
        tasks: list[asyncio.Future[Any]] = [
            t for t in (self._dispatcher, self._sweeper, *self._running) if t is not None
        ]
        if not release:  # a crash kills in-flight submits too
            tasks.extend(self._submits)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._dispatcher = self._sweeper = None
        if release and self._submits:
            await asyncio.wait(set(self._submits), timeout=self.config.stop_grace)
        if release:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, self.worker_id)

    def wake(self) -> None:
        self.events.wake()

    # ---- dispatch --------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        work = self.events.work
        while not self._stopping:
            work.clear()
            try:
                while len(self._running) < self.config.max_concurrent and not self._stopping:
                    record = await asyncio.to_thread(
                        self.store.claim, self.worker_id, self.config.lease_seconds
                    )
                    if record is None:
                        break
                    job = asyncio.create_task(self._run(record), name=f"task-{record.task.id}")
                    self._running.add(job)
                    job.add_done_callback(self._job_done)
            except Exception:
                log.exception("claiming tasks failed; retrying in %ss", self.config.idle_interval)
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                async with asyncio.timeout(self.config.idle_interval):
                    await work.wait()

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._running.discard(job)
        self.events.wake()

    async def _run(self, record: TaskRecord) -> None:
        task = record.task
        current = asyncio.current_task()
        assert current is not None
        heartbeat = asyncio.create_task(self._heartbeat(task.id, current))
        try:
            await self._execute(record)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("task %s failed inside the engine", task.id)
            await self._finish(task.id, TaskStatus.FAILED, error=_internal(error))
        finally:
            heartbeat.cancel()
            self.events.changed(task.id)

    async def _heartbeat(self, task_id: str, job: asyncio.Task[None]) -> None:
        """Renew the lease while working; stop the job when the lease is gone (or canceled)."""
        every = max(0.01, self.config.lease_seconds / 3)
        while True:
            await asyncio.sleep(every)
            try:
                held = await asyncio.to_thread(
                    self.store.renew, task_id, self.worker_id, self.config.lease_seconds
                )
            except Exception:
                log.warning("renewing the lease of task %s failed", task_id, exc_info=True)
                continue
            if not held:
                log.info("task %s: lease lost or task canceled; stopping its worker", task_id)
                job.cancel()
                return

    # ---- one task --------------------------------------------------------------------------

    async def _execute(self, record: TaskRecord) -> None:
        task = record.task
        if task.upstream_task_id:
            try:
                provider = self.providers.by_name(task.provider or "")
            except ImagegateError as error:
                await self._finish(task.id, TaskStatus.FAILED, error=_error(error))
                return
            since = record.upstream_submit_time or task.submit_time
            state = await self._poll(task, provider, task.upstream_task_id, since, at_once=True)
        else:
            try:
                provider = self.providers.provider_for(task.model)
            except ImagegateError as error:
                await self._finish(task.id, TaskStatus.FAILED, error=_error(error))
                return
            if record.submitting_since is not None:
                task.warnings.append(RESUBMIT_WARNING.format(provider=provider.name))
                await asyncio.to_thread(
                    self.store.set_warnings, task.id, self.worker_id, task.warnings
                )
            state = await self._submit(task, provider)
            if state is not None:
                task.warnings.extend(w for w in state.warnings if w not in task.warnings)
            if state is not None and not state.status.is_terminal:
                state = await self._poll(task, provider, state.task_id, utcnow(), at_once=False)
        if state is None:
            return
        outcome = await outcome_of(
            state,
            provider,
            self.blobs,
            download_attempts=self.config.download_attempts,
            download_delay=self.config.download_delay,
        )
        warnings = [*task.warnings, *(w for w in state.warnings if w not in task.warnings)]
        await self._finish(
            task.id,
            outcome.status,
            images=outcome.images,
            usage=outcome.usage,
            error=outcome.error,
            warnings=warnings,
        )

    async def _submit(self, task: Task, provider: Provider) -> UpstreamState | None:
        """Submit once (retrying only what is safe); None when the task ended meanwhile."""
        policy = self.config.submit_retry
        tries = 0
        while True:
            marked = await asyncio.to_thread(
                self.store.mark_submitting,
                task.id,
                self.worker_id,
                provider.name,
                self.config.lease_seconds,
            )
            if not marked:
                return None
            try:
                state, stored = await self._submit_and_record(task, provider)
            except ImagegateError as error:
                tries += 1
                if is_retryable(error) and tries < policy.attempts:
                    delay = policy.delay(tries - 1, error)
                    log.info("task %s: submit failed (%s); retry in %.2fs", task.id, error, delay)
                    await asyncio.to_thread(
                        self.store.submit_refused, task.id, self.worker_id, str(error)
                    )
                    await asyncio.sleep(delay)
                    continue
                await self._finish(task.id, TaskStatus.FAILED, error=_error(error))
                return None
            return state if stored else None

    async def _submit_and_record(
        self, task: Task, provider: Provider
    ) -> tuple[UpstreamState, bool]:
        """``provider.submit`` then the id write, shielded so a stop cannot split the two."""

        async def submit_and_record() -> tuple[UpstreamState, bool]:
            state = await provider.submit(task.request)
            upstream_id = state.task_id or f"sync:{task.id}"
            stored = await asyncio.to_thread(
                self.store.record_upstream, task.id, self.worker_id, upstream_id, state.status
            )
            if not stored:
                await self._cancel_orphan(task.id, provider, upstream_id)
            return state, stored

        inner = asyncio.ensure_future(submit_and_record())
        self._submits.add(inner)
        inner.add_done_callback(self._submits.discard)
        return await asyncio.shield(inner)

    async def _cancel_orphan(self, task_id: str, provider: Provider, upstream_id: str) -> None:
        """The task was canceled while its submit was in flight: cancel upstream too."""
        record = await asyncio.to_thread(self.store.get_record, task_id)
        if record is None or record.task.status != TaskStatus.CANCELED:
            return
        try:
            await provider.cancel(upstream_id)
        except ImagegateError as error:
            log.info("task %s: upstream cancel of %s failed: %s", task_id, upstream_id, error)

    async def _poll(
        self, task: Task, provider: Provider, upstream_id: str, since: datetime, *, at_once: bool
    ) -> UpstreamState | None:
        """Poll until terminal, the policy's timeout, or the task ends under us (None)."""
        policy = self.config.poll_policy or provider.poll_policy
        deadline = since + timedelta(seconds=policy.timeout)
        attempt = 0
        while True:
            if not at_once:
                await asyncio.sleep(policy.interval(attempt))
                attempt += 1
            at_once = False
            try:
                state = await provider.get(upstream_id)
            except ImagegateError as error:
                if is_retryable(error) and utcnow() < deadline:
                    log.info("task %s: poll failed (%s); polling again", task.id, error)
                    continue
                await self._finish(task.id, TaskStatus.FAILED, error=_error(error))
                return None
            if state.status.is_terminal:
                return state
            held = await asyncio.to_thread(
                self.store.progress,
                task.id,
                self.worker_id,
                state.status,
                self.config.lease_seconds,
                scheduled=state.status == TaskStatus.RUNNING,
            )
            if not held:
                return None
            if utcnow() >= deadline:
                message = (
                    f"upstream task {upstream_id} at {provider.name} did not finish within "
                    f"{policy.timeout:g} s"
                )
                await self._finish(task.id, TaskStatus.FAILED, error=TaskError("Timeout", message))
                return None

    async def _finish(self, task_id: str, status: TaskStatus, **outcome: object) -> None:
        done = await asyncio.to_thread(
            self.store.finish,
            task_id,
            self.worker_id,
            status,
            **outcome,  # type: ignore[arg-type]
        )
        if not done:
            log.info("task %s ended elsewhere before this worker could finish it", task_id)
        self.events.changed(task_id)


def _error(error: ImagegateError) -> TaskError:
    return TaskError(error.vendor_code or error.code, error.message)


def _internal(error: Exception) -> TaskError:
    if isinstance(error, ImagegateError):
        return _error(error)
    return TaskError("InternalError", f"{type(error).__name__}: {error}")
