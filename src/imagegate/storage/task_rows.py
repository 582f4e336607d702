"""How a task is laid out in the ``tasks`` table: JSON for images and usage, rows to Tasks.

Stored images never keep the vendor's URL as ``url`` (it expires in about a day): ``url`` is
None and ``metadata["blob"]`` names the file in the BlobStore, which the gateway serves under
a signed link; the vendor's URL is kept as ``metadata["upstream_url"]`` for diagnosis.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import RowMapping

from imagegate.types import GenerationRequest, ImageResult, Task, TaskError, TaskStatus, Usage

BlobPath = Callable[[str], Path]


@dataclass(frozen=True)
class TaskRecord:
    """A task plus the bookkeeping only the engine needs."""

    task: Task
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    submitting_since: datetime | None = None
    upstream_submit_time: datetime | None = None


def image_to_json(image: ImageResult, blob: str | None = None) -> dict[str, Any]:
    """How one result image is kept in ``tasks.images`` (``blob`` = path in the BlobStore)."""
    metadata = dict(image.metadata)
    blob = metadata.pop("blob", None) if blob is None else blob
    metadata.pop("blob", None)
    upstream_url = metadata.pop("upstream_url", None) or image.url
    if upstream_url and upstream_url.startswith("data:"):
        upstream_url = None  # inline base64 results are not worth a copy in the database
    return jsonable(
        {
            "blob": blob,
            "upstream_url": upstream_url,
            "width": image.width,
            "height": image.height,
            "seed": image.seed,
            "actual_prompt": image.actual_prompt,
            "content_type": image.content_type,
            "error_code": image.error_code,
            "error_message": image.error_message,
            "metadata": metadata,
        }
    )


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def usage_json(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {"image_count": usage.image_count, "size": usage.size}


def record_from_row(row: RowMapping, blob_path: BlobPath | None = None) -> TaskRecord:
    """A ``tasks`` row as a ``TaskRecord`` (images get ``path`` when ``blob_path`` is given)."""
    error = None
    if row["status"] in (TaskStatus.FAILED.value, TaskStatus.UNKNOWN.value) and (
        row["error_code"] or row["error_message"]
    ):
        error = TaskError(row["error_code"] or "", row["error_message"] or "")
    task = Task(
        id=row["id"],
        model=row["model"],
        request=GenerationRequest.from_dict(row["request"]),
        status=TaskStatus(row["status"]),
        provider=row["provider"],
        upstream_task_id=row["upstream_task_id"],
        submit_time=row["submit_time"],
        scheduled_time=row["scheduled_time"],
        end_time=row["end_time"],
        images=[image_from_json(data, blob_path) for data in row["images"] or ()],
        usage=Usage(**row["usage"]) if row["usage"] else None,
        error=error,
        warnings=list(row["warnings"] or ()),
        owner=row["owner"],
        request_id=row["request_id"],
        front=row["front"],
    )
    return TaskRecord(
        task=task,
        attempts=int(row["attempts"] or 0),
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        submitting_since=row["submitting_since"],
        upstream_submit_time=row["upstream_submit_time"],
    )


def image_from_json(data: dict[str, Any], blob_path: BlobPath | None = None) -> ImageResult:
    metadata = dict(data.get("metadata") or {})
    blob = data.get("blob")
    if blob:
        metadata["blob"] = blob
    if data.get("upstream_url"):
        metadata["upstream_url"] = data["upstream_url"]
    return ImageResult(
        url=None,
        path=blob_path(blob) if blob and blob_path else None,
        width=data.get("width"),
        height=data.get("height"),
        seed=data.get("seed"),
        actual_prompt=data.get("actual_prompt"),
        content_type=data.get("content_type") or "image/png",
        error_code=data.get("error_code"),
        error_message=data.get("error_message"),
        metadata=metadata,
    )
