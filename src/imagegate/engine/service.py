"""The gateway's task service, and the one call that builds the gateway's whole state.

Wiring (the server's app factory)::

    from imagegate.engine.service import open_gateway

    state = open_gateway(data_dir, database_url=None, providers=router, catalog=catalog)
    created = state.keys.ensure_default_key()   # CreatedKey(app_id, secret) on first start
    await state.start()                          # workers + retention sweep (app startup)
    ...  GatewayContext(service=state.service, keys=state.keys, signer=state.signer, ...)
    await state.stop()                           # app shutdown: gives leases back
    state.close()                                # disposes the database pool

``open_gateway`` creates ``data_dir`` and, under it, ``imagegate.db`` (SQLite, WAL; or uses
``database_url``, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), migrates the
schema, opens ``blobs/`` and loads (or creates) the URL signing secret. ``providers`` is any
object with ``provider_for(model)`` and ``by_name(name)`` (``routing.Router``); without it the
service still stores and reads tasks (the ``imagegate keys`` CLI needs only ``state.keys``)
but ``start()`` refuses.

Stored images are served at ``/files/<blob path>``: the server checks
``state.signer.verify(request.url.path, expires, signature)`` (403 when False) and then opens
``state.blobs.resolve(<blob path>)`` (404 when None).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import uuid4

from sqlalchemy import Engine

from imagegate.catalog import Catalog, load_catalog, validate, warnings_for
from imagegate.engine.events import TaskEvents
from imagegate.engine.retention import DEFAULT_DAYS, RetentionSweeper
from imagegate.engine.upstreams import ProviderSource
from imagegate.engine.worker import EngineConfig, TaskEngine
from imagegate.errors import (
    ImagegateError,
    PermissionDenied,
    TaskNotFound,
    Timeout,
    UnsupportedOperation,
)
from imagegate.storage.blobs import BlobStore
from imagegate.storage.db import open_engine, utcnow
from imagegate.storage.keys import SqlKeyStore
from imagegate.storage.signing import DEFAULT_EXPIRES_IN, HmacUrlSigner
from imagegate.storage.tasks import TaskStore
from imagegate.types import ApiKey, GenerationRequest, ImageResult, Task, TaskStatus

FILES_PREFIX = "/files"


class GatewayTaskService:
    """Implements ``server.context.TaskService`` on the TaskStore and the engine's events."""

    def __init__(
        self,
        store: TaskStore,
        signer: HmacUrlSigner,
        *,
        catalog: Catalog | None = None,
        providers: ProviderSource | None = None,
        events: TaskEvents | None = None,
        retention_days: float = DEFAULT_DAYS,
        recheck_interval: float = 1.0,
        enforce_in_flight: bool = True,
    ) -> None:
        self.store = store
        self.signer = signer
        self.catalog = catalog or load_catalog()
        self.providers = providers
        self.events = events or TaskEvents()
        self.retention_days = retention_days
        self.recheck_interval = recheck_interval
        self.enforce_in_flight = enforce_in_flight

    def _cutoff(self) -> datetime:
        """Tasks submitted before this read as unknown, even before the sweep deletes them."""
        return utcnow() - timedelta(days=self.retention_days)

    async def submit(
        self,
        request: GenerationRequest,
        *,
        owner: ApiKey,
        request_id: str,
        front: str,
        warnings: list[str] | None = None,
    ) -> Task:
        entry = validate(request, catalog=self.catalog)
        if not (owner.allows(entry.name) or owner.allows(request.model)):
            raise PermissionDenied(
                f"model {request.model} is not allowed for key {owner.id}; it may use "
                f"{', '.join(owner.models)}",
                field="model",
            )
        notes = list(dict.fromkeys([*(warnings or []), *warnings_for(request, self.catalog)]))
        task = Task(
            id=str(uuid4()),
            model=entry.name,
            request=request,
            warnings=notes,
            owner=owner.id,
            request_id=request_id,
            front=front,
        )
        limit = owner.max_in_flight if self.enforce_in_flight else None
        await asyncio.to_thread(self.store.insert, task, max_in_flight=limit)
        self.events.wake()
        return task

    async def get(self, task_id: str, *, owner: ApiKey) -> Task | None:
        return await asyncio.to_thread(
            self.store.get, task_id, owner=owner.id, newer_than=self._cutoff()
        )

    async def wait(self, task_id: str, *, owner: ApiKey, timeout: float) -> Task:
        """Event-driven (this process) with a periodic re-read (other nodes)."""
        deadline = time.monotonic() + timeout
        with self.events.watch(task_id) as changed:
            while True:
                changed.clear()
                task = await self.get(task_id, owner=owner)
                if task is None:
                    raise TaskNotFound(f"task {task_id} does not exist", field="task_id")
                if task.status.is_terminal:
                    return task
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(
                        f"task {task_id} did not finish within {timeout:g} s; it is still "
                        f"{task.status.value} and can be queried later"
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, self.recheck_interval)):
                        await changed.wait()

    async def cancel(self, task_id: str, *, owner: ApiKey) -> Task:
        task = await self.get(task_id, owner=owner)
        if task is None:
            raise TaskNotFound(f"task {task_id} does not exist", field="task_id")
        if task.status != TaskStatus.PENDING:
            raise _not_cancelable(task)
        warning = await self._cancel_upstream(task)
        canceled = await asyncio.to_thread(
            self.store.cancel, task_id, owner=owner.id, warning=warning
        )
        self.events.changed(task_id)
        found = await self.get(task_id, owner=owner)
        if found is None:
            raise TaskNotFound(f"task {task_id} does not exist", field="task_id")
        if not canceled:
            raise _not_cancelable(found)
        return found

    async def _cancel_upstream(self, task: Task) -> str | None:
        """Tell the upstream, when it already has the task; a warning when it cannot."""
        if not task.upstream_task_id or not task.provider or self.providers is None:
            return None
        try:
            provider = self.providers.by_name(task.provider)
            await provider.cancel(task.upstream_task_id)
        except UnsupportedOperation as error:
            if error.vendor_code:  # the upstream itself refused: the task started meanwhile
                raise UnsupportedOperation(
                    f"task {task.id} can no longer be canceled: {error.message}",
                    vendor_code=error.vendor_code,
                ) from None
            return (
                f"{task.provider} cannot cancel tasks; its task {task.upstream_task_id} "
                "may still run"
            )
        except TaskNotFound:
            return None
        except ImagegateError as error:
            return f"canceling upstream task {task.upstream_task_id} failed: {error}"
        return None

    async def list(
        self,
        *,
        owner: ApiKey,
        page: int = 1,
        page_size: int = 10,
        status: TaskStatus | None = None,
        model: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        ids: builtins.list[str] | None = None,
    ) -> tuple[builtins.list[Task], int]:
        if model is not None and model in self.catalog:
            model = self.catalog.get(model).name
        return await asyncio.to_thread(
            self.store.list,
            owner=owner.id,
            page=page,
            page_size=page_size,
            status=status,
            model=model,
            start=start,
            end=end,
            ids=ids,
            newer_than=self._cutoff(),
        )

    async def in_flight(self, owner: ApiKey) -> int:
        return await asyncio.to_thread(self.store.count_unfinished, owner.id)

    def image_url(self, task: Task, image: ImageResult, base_url: str) -> str:
        blob = image.metadata.get("blob")
        if not blob:
            raise ValueError(
                f"task {task.id} has no stored file for this image "
                f"({image.error_code or 'not downloaded'}: {image.error_message or ''})"
            )
        return base_url.rstrip("/") + self.signer.sign(f"{FILES_PREFIX}/{blob}")


def _not_cancelable(task: Task) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"task {task.id} is {task.status.value}; only PENDING tasks can be canceled",
        field="task_id",
    )


@dataclass
class GatewayState:
    """Everything durable the gateway owns, built by ``open_gateway``."""

    data_dir: Path
    database: Engine
    tasks: TaskStore
    blobs: BlobStore
    keys: SqlKeyStore
    signer: HmacUrlSigner
    events: TaskEvents
    service: GatewayTaskService
    retention: RetentionSweeper
    engine: TaskEngine | None = None

    async def start(self) -> None:
        if self.engine is None:
            raise RuntimeError("open_gateway(..., providers=...) is needed to run tasks")
        await self.engine.start()
        self.engine.wake()

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.stop()

    def close(self) -> None:
        self.database.dispose()


def open_gateway(
    data_dir: Path | str,
    database_url: str | None = None,
    *,
    providers: ProviderSource | None = None,
    catalog: Catalog | None = None,
    engine_config: EngineConfig | None = None,
    retention_days: float = DEFAULT_DAYS,
    sweep_interval: float = 3600.0,
    url_expires_in: int = DEFAULT_EXPIRES_IN,
    schema: str | None = None,
) -> GatewayState:
    """Open (creating and migrating as needed) the gateway's state under ``data_dir``."""
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    database = open_engine(root, database_url, schema=schema)
    blobs = BlobStore(root / "blobs")
    tasks = TaskStore(database, blob_path=blobs.path)
    keys = SqlKeyStore(database)
    signer = HmacUrlSigner.from_database(database, default_expires_in=url_expires_in)
    events = TaskEvents()
    retention = RetentionSweeper(tasks, blobs, keys, days=retention_days, interval=sweep_interval)
    service = GatewayTaskService(
        tasks,
        signer,
        catalog=catalog,
        providers=providers,
        events=events,
        retention_days=retention_days,
    )
    engine = None
    if providers is not None:
        engine = TaskEngine(
            tasks, blobs, providers, config=engine_config, events=events, retention=retention
        )
    return GatewayState(
        data_dir=root,
        database=database,
        tasks=tasks,
        blobs=blobs,
        keys=keys,
        signer=signer,
        events=events,
        service=service,
        retention=retention,
        engine=engine,
    )
