"""The interface every upstream adapter implements.

A provider turns a ``GenerationRequest`` into one upstream task and reports its state. It
never knows about the gateway, its database or its HTTP server. Adapters for a vendor build
their bodies with the codec in ``imagegate.protocols`` and do their I/O with httpx.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagegate.errors import UnsupportedOperation
from imagegate.types import GenerationRequest, ImageResult, UpstreamState


@dataclass(frozen=True)
class PollPolicy:
    """How often to ask an upstream about a task: the vendor's cadence, with backoff.

    The interval starts at ``initial``, is multiplied by ``factor`` every ``every`` polls and
    never exceeds ``maximum``. ``timeout`` bounds the whole wait (seconds).
    """

    initial: float = 1.0
    factor: float = 2.0
    every: int = 3
    maximum: float = 5.0
    timeout: float = 600.0

    def interval(self, attempt: int) -> float:
        """Seconds to sleep before poll number ``attempt`` (0-based)."""
        return min(self.maximum, self.initial * self.factor ** (attempt // max(1, self.every)))


@dataclass(frozen=True)
class HttpCall:
    """An HTTP request exactly as it would be sent (for ``--dry-run``)."""

    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    #: what the body leaves out or changes, said plainly (e.g. a parameter not forwarded)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": self.body,
        }
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data


@dataclass(frozen=True)
class Submission:
    """Extra information a front may pass with a submit (e.g. the sync flavour to use)."""

    upstream_model: str | None = None
    sync: bool = False
    options: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """One upstream: a vendor account, another gateway, or the built-in sandbox."""

    #: identifier stored with every task: ``dashscope``, ``chanjing``, ``openai``, ``sandbox``
    name: str = "provider"
    #: how to poll this upstream
    poll_policy: PollPolicy = PollPolicy()

    @abstractmethod
    async def submit(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> UpstreamState:
        """Send the request; return as soon as the upstream gives a task id.

        Synchronous upstreams return a terminal state with the images at once.
        """

    @abstractmethod
    async def get(self, task_id: str) -> UpstreamState:
        """Ask the upstream once about a task."""

    async def cancel(self, task_id: str) -> UpstreamState:
        """Cancel a task that has not started; not every vendor has this."""
        raise UnsupportedOperation(f"{self.name} cannot cancel tasks")

    @abstractmethod
    async def download(self, image: ImageResult, dest: Path) -> ImageResult:
        """Save one result image to ``dest`` (a file path) and return it with ``path`` set."""

    def describe_call(
        self, request: GenerationRequest, submission: Submission | None = None
    ) -> HttpCall:
        """The exact HTTP request ``submit`` would send, without sending it."""
        raise UnsupportedOperation(f"{self.name} has no wire request to show")

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections."""
