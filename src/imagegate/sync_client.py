"""``Client``: the synchronous SDK, ``AsyncClient`` run on a private event loop in a thread.

A daemon thread owns the loop, so the synchronous API works both in plain scripts and inside
an already running event loop (Jupyter, an async web handler), where ``asyncio.run`` fails.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from imagegate.client import AsyncClient, DryRun, ProgressCallback
from imagegate.types import GenerationRequest, GenerationResult, Task

T = TypeVar("T")


class LoopThread:
    """A private event loop in a daemon thread: sync calls work inside or outside a loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="imagegate-client", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class Client:
    """The same API as ``AsyncClient``, synchronous. ``on_progress`` runs on the client's thread."""

    def __init__(self, **options: Any) -> None:
        self._loop = LoopThread()
        self._async = AsyncClient(**options)
        self.catalog = self._async.catalog
        self.router = self._async.router

    def generate(self, prompt: str, *, model: str, **options: Any) -> GenerationResult:
        return self._loop.run(self._async.generate(prompt, model=model, **options))

    def submit(self, prompt: str, *, model: str, **options: Any) -> Task:
        return self._loop.run(self._async.submit(prompt, model=model, **options))

    def get(self, task_id: str) -> Task:
        return self._loop.run(self._async.get(task_id))

    def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Task:
        return self._loop.run(self._async.wait(task_id, timeout, on_progress))

    def cancel(self, task_id: str) -> Task:
        return self._loop.run(self._async.cancel(task_id))

    def download(self, task: Task | str, out_dir: str | Path | None = None) -> GenerationResult:
        return self._loop.run(self._async.download(task, out_dir))

    def dry_run(self, prompt: str, *, model: str, **options: Any) -> DryRun:
        return self._loop.run(self._async.dry_run(prompt, model=model, **options))

    def build(self, prompt: str, *, model: str, **options: Any) -> GenerationRequest:
        return self._async.build(prompt, model=model, **options)

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.run(self._async.aclose())
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
