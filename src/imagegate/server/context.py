"""What a protocol front may use: the contracts between the fronts and the rest of the gateway.

A front is a thin translator (decode -> service -> encode). It never touches the database or
an upstream itself: it authenticates with ``keys``, throttles with ``limiter``, runs tasks
through ``service`` and turns stored images into links with ``signer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from imagegate.catalog import Catalog
from imagegate.types import ApiKey, GenerationRequest, ImageResult, Task, TaskStatus


class KeyStore(Protocol):
    def authenticate(self, secret: str) -> ApiKey | None:
        """The key whose secret this is (Bearer token / Chanjing secret_key), or None."""

    def authenticate_pair(self, app_id: str, secret: str) -> ApiKey | None:
        """Chanjing's access_token route: app_id + secret_key."""

    def issue_token(self, key: ApiKey, ttl_seconds: int = 86400) -> tuple[str, int]:
        """A Chanjing access token for ``key`` and its expiry as a Unix timestamp."""

    def check_token(self, token: str) -> ApiKey | None:
        """The key an access token was issued to, if the token is valid and unexpired."""


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    retry_after: int = 0  # whole seconds, at most 8
    reason: str = ""  # "qps" or "in_flight"


class Limiter(Protocol):
    async def acquire(self, key: ApiKey, in_flight: int) -> LimitDecision:
        """Whether ``key`` may submit one more task now (``in_flight`` = its unfinished tasks)."""


class UrlSigner(Protocol):
    def sign(self, path: str, expires_in: int | None = None) -> str:
        """``path`` with ``?expires=…&signature=…`` appended (HMAC over path and expiry)."""

    def verify(self, path: str, expires: str, signature: str) -> bool:
        """True when the signature matches and the link has not expired."""


class TaskService(Protocol):
    """The engine's face to the fronts. Every call is scoped to the key that owns the task."""

    async def submit(
        self,
        request: GenerationRequest,
        *,
        owner: ApiKey,
        request_id: str,
        front: str,
        warnings: list[str] | None = None,
    ) -> Task:
        """Validate against the catalog, store the task (PENDING), then return it.

        Raises ``ValidationError`` / ``UnknownModel`` / ``RateLimited`` / ``PermissionDenied``.
        """

    async def get(self, task_id: str, *, owner: ApiKey) -> Task | None:
        """The task, or None when it is unknown, expired or owned by another key."""

    async def wait(self, task_id: str, *, owner: ApiKey, timeout: float) -> Task:
        """Block until the task is terminal; raises ``imagegate.errors.Timeout`` after timeout."""

    async def cancel(self, task_id: str, *, owner: ApiKey) -> Task:
        """Cancel a PENDING task: ``UnsupportedOperation`` if not PENDING, ``TaskNotFound``."""

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
        ids: list[str] | None = None,
    ) -> tuple[list[Task], int]:
        """One page of the key's tasks, newest first, and the total count."""

    async def in_flight(self, owner: ApiKey) -> int:
        """How many of the key's tasks are not yet terminal."""

    def image_url(self, task: Task, image: ImageResult, base_url: str) -> str:
        """A signed, expiring gateway URL for a stored result image."""


@dataclass
class GatewayContext:
    """Everything a front needs, built once by the app factory."""

    service: TaskService
    keys: KeyStore
    limiter: Limiter
    signer: UrlSigner
    catalog: Catalog
    sync_timeout: float = 300.0
    max_body_bytes: int = 1 << 20
    timezone: str = "Asia/Shanghai"
    extras: dict[str, object] = field(default_factory=dict)
