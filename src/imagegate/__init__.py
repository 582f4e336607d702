"""imagegate: one SDK, CLI and gateway for text-to-image vendors.

``Client`` / ``AsyncClient`` are imported on first use, so ``import imagegate.types`` (which
every module does) stays light and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imagegate.errors import (
    AuthError,
    ContentRejected,
    DownloadError,
    ImagegateError,
    InvalidRequest,
    NotConfigured,
    PermissionDenied,
    RateLimited,
    SubmitOutcomeUnknown,
    TaskFailed,
    TaskNotFound,
    Timeout,
    UnknownModel,
    UnsupportedOperation,
    UpstreamError,
    ValidationError,
)
from imagegate.types import (
    GenerationRequest,
    GenerationResult,
    ImageResult,
    SizeSpec,
    Task,
    TaskError,
    TaskStatus,
    Usage,
)

if TYPE_CHECKING:
    from imagegate.client import AsyncClient, DryRun
    from imagegate.sync_client import Client
    from imagegate.waiting import Progress

__version__ = "0.1.0"

_LAZY = {
    "AsyncClient": "imagegate.client",
    "Client": "imagegate.sync_client",
    "DryRun": "imagegate.client",
    "Progress": "imagegate.waiting",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'imagegate' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AsyncClient",
    "AuthError",
    "Client",
    "ContentRejected",
    "DownloadError",
    "DryRun",
    "GenerationRequest",
    "GenerationResult",
    "ImageResult",
    "ImagegateError",
    "InvalidRequest",
    "NotConfigured",
    "PermissionDenied",
    "Progress",
    "RateLimited",
    "SizeSpec",
    "SubmitOutcomeUnknown",
    "Task",
    "TaskError",
    "TaskFailed",
    "TaskNotFound",
    "TaskStatus",
    "Timeout",
    "UnknownModel",
    "UnsupportedOperation",
    "UpstreamError",
    "Usage",
    "ValidationError",
    "__version__",
]
