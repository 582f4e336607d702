"""In-process signals between the task service and the workers.

``wake()`` tells the dispatcher a task was just stored, so it claims it at once instead of on
its next idle tick. ``changed(task_id)`` wakes whoever waits for that task (a synchronous
route in ``service.wait``). These are only shortcuts: every waiter also re-reads the database
periodically, so tasks finished by another node (PostgreSQL deployments) are seen too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class TaskEvents:
    def __init__(self) -> None:
        self._work: asyncio.Event | None = None
        self._work_loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @property
    def work(self) -> asyncio.Event:
        """The dispatcher's wake-up event, made in the running loop (state may outlive loops)."""
        loop = asyncio.get_running_loop()
        if self._work is None or self._work_loop is not loop:
            self._work, self._work_loop = asyncio.Event(), loop
        return self._work

    def wake(self) -> None:
        if self._work is not None:
            self._work.set()

    def changed(self, task_id: str) -> None:
        for event in self._waiters.get(task_id, ()):
            event.set()

    @contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``task_id`` changes in this process, while the block runs."""
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]
