"""The retention sweep: old tasks and the image files nobody points at any more.

Tasks are kept ``days`` days (7 by default) after submission; reads already treat older tasks
as unknown (``TaskService.get``), the sweep then deletes them, the blobs only they used and
expired access tokens. Blob files get a grace period (by modification time) so an image a
worker has just stored, but not yet recorded in its task, is never removed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from imagegate.storage.blobs import BlobStore
from imagegate.storage.db import utcnow
from imagegate.storage.keys import SqlKeyStore
from imagegate.storage.tasks import TaskStore

log = logging.getLogger("imagegate.engine")

DEFAULT_DAYS = 7.0


@dataclass(frozen=True)
class SweepResult:
    tasks: int
    blobs: int
    tokens: int


class RetentionSweeper:
    def __init__(
        self,
        store: TaskStore,
        blobs: BlobStore,
        keys: SqlKeyStore | None = None,
        *,
        days: float = DEFAULT_DAYS,
        interval: float = 3600.0,
        blob_grace: float = 3600.0,
    ) -> None:
        if days <= 0:
            raise ValueError(f"retention days must be greater than 0, got {days}")
        self.store = store
        self.blobs = blobs
        self.keys = keys
        self.days = days
        self.interval = interval
        self.blob_grace = blob_grace

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Tasks submitted before this moment are expired."""
        return (now or utcnow()) - timedelta(days=self.days)

    def sweep(self, now: datetime | None = None) -> SweepResult:
        tasks = self.store.delete_older_than(self.cutoff(now))
        removed = self.blobs.sweep(self.store.referenced_blobs(), grace_seconds=self.blob_grace)
        tokens = self.keys.prune_tokens() if self.keys else 0
        if tasks or removed or tokens:
            log.info("retention: removed %d tasks, %d files, %d tokens", tasks, removed, tokens)
        return SweepResult(tasks, removed, tokens)

    async def run(self) -> None:
        """Sweep now, then every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:
                log.exception("retention sweep failed; trying again in %ss", self.interval)
            await asyncio.sleep(self.interval)
