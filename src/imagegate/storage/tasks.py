"""TaskStore: every task the gateway accepted, its lease, its upstream id and its results.

Workers change a task only while they hold its lease: every worker write is conditional on
``lease_owner = <worker>`` and a non-terminal status, so a worker that lost its lease (it was
too slow, or the task was canceled) learns it from a zero row count and stops.

Claims are one ``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING``: on SQLite the write lock
makes it exclusive, on PostgreSQL the inner select is ``FOR UPDATE SKIP LOCKED`` so nodes
claiming at once never wait on, nor take, each other's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update

from imagegate.errors import RateLimited
from imagegate.storage import db
from imagegate.storage.db import tasks as T
from imagegate.storage.db import utcnow
from imagegate.storage.task_rows import (
    BlobPath,
    TaskRecord,
    image_to_json,
    jsonable,
    record_from_row,
    usage_json,
)
from imagegate.types import Task, TaskError, TaskStatus, Usage

__all__ = ["UNFINISHED", "TaskRecord", "TaskStore", "image_to_json"]

UNFINISHED = (TaskStatus.PENDING.value, TaskStatus.RUNNING.value)


class TaskStore:
    """Synchronous, short transactions; async callers run them in a worker thread."""

    def __init__(self, engine: Engine, blob_path: BlobPath | None = None) -> None:
        self.engine = engine
        self._blob_path = blob_path

    # ---- fronts ----------------------------------------------------------------------------

    def insert(self, task: Task, *, max_in_flight: int | None = None) -> None:
        """Store a new task; refuse with ``RateLimited`` when its owner is at ``max_in_flight``.

        The count and the insert share one write transaction, so on SQLite two submits cannot
        both slip under the limit (on PostgreSQL the check is best effort under concurrency).
        """
        now = utcnow()
        with db.write(self.engine) as conn:
            if max_in_flight is not None:
                count = conn.execute(
                    select(func.count())
                    .select_from(T)
                    .where(T.c.owner == task.owner, T.c.status.in_(UNFINISHED))
                ).scalar_one()
                if count >= max_in_flight:
                    raise RateLimited(
                        f"key {task.owner} already has {count} unfinished tasks; its limit is "
                        f"{max_in_flight} tasks in flight",
                        retry_after=1,
                    )
            conn.execute(
                T.insert().values(
                    id=task.id,
                    owner=task.owner or "",
                    model=task.model,
                    front=task.front,
                    request=jsonable(task.request.to_dict()),
                    status=task.status.value,
                    provider=task.provider,
                    upstream_task_id=task.upstream_task_id,
                    attempts=0,
                    submit_time=task.submit_time,
                    scheduled_time=task.scheduled_time,
                    end_time=task.end_time,
                    images=[image_to_json(i) for i in task.images],
                    usage=usage_json(task.usage),
                    error_code=task.error.code if task.error else None,
                    error_message=task.error.message if task.error else None,
                    warnings=list(task.warnings),
                    request_id=task.request_id,
                    updated_at=now,
                )
            )

    def get(
        self, task_id: str, *, owner: str | None = None, newer_than: datetime | None = None
    ) -> Task | None:
        record = self.get_record(task_id, owner=owner, newer_than=newer_than)
        return record.task if record else None

    def get_record(
        self, task_id: str, *, owner: str | None = None, newer_than: datetime | None = None
    ) -> TaskRecord | None:
        query = select(T).where(T.c.id == task_id)
        if owner is not None:
            query = query.where(T.c.owner == owner)
        if newer_than is not None:
            query = query.where(T.c.submit_time >= newer_than)
        with db.read(self.engine) as conn:
            row = conn.execute(query).mappings().first()
        return record_from_row(row, self._blob_path) if row else None

    def list(
        self,
        *,
        owner: str,
        page: int = 1,
        page_size: int = 10,
        status: TaskStatus | None = None,
        model: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        ids: Sequence[str] | None = None,
        newer_than: datetime | None = None,
    ) -> tuple[list[Task], int]:
        """One page (1-based) of ``owner``'s tasks, newest first, and the total count."""
        where = [T.c.owner == owner]
        if status is not None:
            where.append(T.c.status == TaskStatus(status).value)
        if model is not None:
            where.append(T.c.model == model)
        if start is not None:
            where.append(T.c.submit_time >= start)
        if end is not None:
            where.append(T.c.submit_time <= end)
        if ids is not None:
            where.append(T.c.id.in_(list(ids)))
        if newer_than is not None:
            where.append(T.c.submit_time >= newer_than)
        page, page_size = max(1, page), max(1, page_size)
        with db.read(self.engine) as conn:
            total = conn.execute(select(func.count()).select_from(T).where(*where)).scalar_one()
            rows = conn.execute(
                select(T)
                .where(*where)
                .order_by(T.c.submit_time.desc(), T.c.id.desc())
                .limit(page_size)
                .offset((page - 1) * page_size)
            ).mappings()
            found = [record_from_row(row, self._blob_path).task for row in rows]
        return found, int(total)

    def count_unfinished(self, owner: str) -> int:
        with db.read(self.engine) as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(T)
                    .where(T.c.owner == owner, T.c.status.in_(UNFINISHED))
                ).scalar_one()
            )

    def cancel(self, task_id: str, *, owner: str, warning: str | None = None) -> bool:
        """PENDING -> CANCELED; False when the task is not (or no longer) PENDING."""
        values: dict[str, Any] = {
            "status": TaskStatus.CANCELED.value,
            "end_time": utcnow(),
            "updated_at": utcnow(),
            "lease_owner": None,
            "lease_until": None,
        }
        with db.write(self.engine) as conn:
            if warning:
                current = conn.execute(select(T.c.warnings).where(T.c.id == task_id)).scalar()
                values["warnings"] = [*(current or []), warning]
            result = conn.execute(
                update(T)
                .where(
                    T.c.id == task_id,
                    T.c.owner == owner,
                    T.c.status == TaskStatus.PENDING.value,
                )
                .values(**values)
            )
        return result.rowcount == 1

    # ---- workers ---------------------------------------------------------------------------

    def claim(self, worker: str, lease_seconds: float) -> TaskRecord | None:
        """Lease the oldest unfinished task nobody holds (new, or whose lease expired)."""
        now = utcnow()
        candidate = (
            select(T.c.id)
            .where(
                T.c.status.in_(UNFINISHED),
                or_(T.c.lease_until.is_(None), T.c.lease_until < now),
            )
            .order_by(T.c.submit_time, T.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with db.write(self.engine) as conn:
            row = (
                conn.execute(
                    update(T)
                    .where(T.c.id == candidate)
                    .values(
                        lease_owner=worker,
                        lease_until=now + timedelta(seconds=lease_seconds),
                        updated_at=now,
                    )
                    .returning(*T.c)
                )
                .mappings()
                .first()
            )
        return record_from_row(row, self._blob_path) if row else None

    def renew(self, task_id: str, worker: str, lease_seconds: float) -> bool:
        """Extend the lease; False when the worker lost it (expired and taken, or canceled)."""
        return self._update_held(task_id, worker, lease_seconds=lease_seconds)

    def release(self, worker: str) -> int:
        """Give up every lease ``worker`` holds (graceful stop: others resume at once)."""
        with db.write(self.engine) as conn:
            result = conn.execute(
                update(T)
                .where(T.c.lease_owner == worker, T.c.status.in_(UNFINISHED))
                .values(lease_owner=None, lease_until=None, updated_at=utcnow())
            )
        return int(result.rowcount)

    def mark_submitting(
        self, task_id: str, worker: str, provider: str, lease_seconds: float
    ) -> bool:
        """Record that an upstream submit is about to start (attempts + 1)."""
        return self._update_held(
            task_id,
            worker,
            lease_seconds=lease_seconds,
            provider=provider,
            submitting_since=utcnow(),
            attempts=T.c.attempts + 1,
        )

    def submit_refused(self, task_id: str, worker: str, error: str) -> bool:
        """The upstream answered the submit with an error: it holds no task for us."""
        return self._update_held(task_id, worker, submitting_since=None, error_message=error)

    def record_upstream(
        self, task_id: str, worker: str, upstream_task_id: str, status: TaskStatus
    ) -> bool:
        """Store the upstream id the moment the upstream returns it.

        When the task was canceled (or the lease lost) meanwhile, the id is still written if
        the row has none, so nobody ever submits this task again; the result is then False.
        """
        now = utcnow()
        if self._update_held(
            task_id,
            worker,
            upstream_task_id=upstream_task_id,
            upstream_submit_time=now,
            submitting_since=None,
            error_message=None,
            status=_live(status).value,
        ):
            return True
        with db.write(self.engine) as conn:
            conn.execute(
                update(T)
                .where(T.c.id == task_id, T.c.upstream_task_id.is_(None))
                .values(upstream_task_id=upstream_task_id, submitting_since=None, updated_at=now)
            )
        return False

    def progress(
        self,
        task_id: str,
        worker: str,
        status: TaskStatus,
        lease_seconds: float,
        *,
        scheduled: bool = False,
    ) -> bool:
        values: dict[str, Any] = {"status": _live(status).value}
        if scheduled:
            values["scheduled_time"] = func.coalesce(T.c.scheduled_time, utcnow())
        return self._update_held(task_id, worker, lease_seconds=lease_seconds, **values)

    def set_warnings(self, task_id: str, worker: str, warnings: Sequence[str]) -> bool:
        return self._update_held(task_id, worker, warnings=list(warnings))

    def finish(
        self,
        task_id: str,
        worker: str,
        status: TaskStatus,
        *,
        images: Sequence[dict[str, Any]] = (),
        usage: Usage | None = None,
        error: TaskError | None = None,
        warnings: Sequence[str] | None = None,
    ) -> bool:
        """Make the task terminal (only while ``worker`` still holds it)."""
        if not status.is_terminal:
            raise ValueError(f"finish needs a terminal status, got {status}")
        now = utcnow()
        values: dict[str, Any] = {
            "status": status.value,
            "end_time": now,
            "scheduled_time": func.coalesce(T.c.scheduled_time, now),
            "images": jsonable(list(images)),
            "usage": usage_json(usage),
            "error_code": error.code if error else None,
            "error_message": error.message if error else None,
            "lease_owner": None,
            "lease_until": None,
            "submitting_since": None,
        }
        if warnings is not None:
            values["warnings"] = list(warnings)
        return self._update_held(task_id, worker, **values)

    def _update_held(
        self, task_id: str, worker: str, *, lease_seconds: float | None = None, **values: Any
    ) -> bool:
        now = utcnow()
        values["updated_at"] = now
        if lease_seconds is not None:
            values["lease_until"] = now + timedelta(seconds=lease_seconds)
        with db.write(self.engine) as conn:
            result = conn.execute(
                update(T)
                .where(T.c.id == task_id, T.c.lease_owner == worker, T.c.status.in_(UNFINISHED))
                .values(**values)
            )
        return result.rowcount == 1

    # ---- retention -------------------------------------------------------------------------

    def delete_older_than(self, cutoff: datetime) -> int:
        """Delete finished tasks submitted before ``cutoff``."""
        with db.write(self.engine) as conn:
            result = conn.execute(
                delete(T).where(T.c.submit_time < cutoff, T.c.status.not_in(UNFINISHED))
            )
        return int(result.rowcount)

    def referenced_blobs(self) -> set[str]:
        """Every blob path some stored task still points at."""
        found: set[str] = set()
        with db.read(self.engine) as conn:
            for images in conn.execute(select(T.c.images).where(T.c.images.is_not(None))).scalars():
                for image in images or ():
                    if image.get("blob"):
                        found.add(image["blob"])
        return found


def _live(status: TaskStatus) -> TaskStatus:
    """An upstream's non-terminal status as ours (PENDING until the upstream runs it)."""
    return TaskStatus.RUNNING if status == TaskStatus.RUNNING else TaskStatus.PENDING
