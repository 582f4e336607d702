"""What a dry run shows: the exact vendor request, secrets replaced, and the warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagegate.providers.base import HttpCall
from imagegate.types import GenerationRequest

_SECRET_HEADERS = {"authorization", "access_token", "x-api-key", "api-key", "proxy-authorization"}


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Secrets replaced by ``***``; placeholders such as ``$DASHSCOPE_API_KEY`` kept as is."""
    shown: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in _SECRET_HEADERS and "$" not in value and "{{" not in value:
            scheme, _, secret = value.partition(" ")
            value = f"{scheme} ***" if secret else "***"
        shown[name] = value
    return shown


@dataclass(frozen=True)
class DryRun:
    """What ``--dry-run`` shows: the exact request, with secrets replaced, and the warnings."""

    provider: str
    request: GenerationRequest
    call: HttpCall | None = None  # None: the sandbox sends nothing
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "call": self.call.to_dict() if self.call else None,
            "warnings": list(self.warnings),
        }
