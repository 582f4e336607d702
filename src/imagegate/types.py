"""The unified language every protocol, provider and front translates to and from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


class TaskStatus(StrEnum):
    """DashScope's task words; every other protocol maps to and from these."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.UNKNOWN}
)


@dataclass(frozen=True)
class SizeSpec:
    """A requested output size: the resolved pixels plus the vendor notation it came from.

    ``text`` is what the caller wrote (``"1280*1280"``, ``"16:9"``, ``"2K"``); ``aspect_ratio``
    and ``clarity`` are set when the size is expressed the Chanjing way, ``tier`` when it is a
    tier such as ``2K``. Encoders use whichever notation their vendor speaks.
    """

    width: int
    height: int
    text: str
    aspect_ratio: str | None = None
    clarity: int | None = None
    tier: str | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def star(self) -> str:
        return f"{self.width}*{self.height}"


@dataclass(frozen=True)
class GenerationRequest:
    """One text-to-image request, vendor-neutral.

    Optional fields are ``None`` when the caller did not set them: encoders send only what was
    set, so the vendor's own defaults apply (and a dry run shows exactly the caller's body).
    ``catalog.effective(request)`` gives the request with the model's defaults filled in.
    """

    model: str
    prompt: str
    negative_prompt: str | None = None
    n: int | None = None
    size: SizeSpec | None = None
    seed: int | None = None
    prompt_extend: bool | None = None
    watermark: bool | None = None
    quality: str | None = None
    reference_images: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "n": self.n,
            "size": None,
            "seed": self.seed,
            "prompt_extend": self.prompt_extend,
            "watermark": self.watermark,
            "quality": self.quality,
            "reference_images": list(self.reference_images),
            "extra": dict(self.extra),
        }
        if self.size is not None:
            data["size"] = {
                "width": self.size.width,
                "height": self.size.height,
                "text": self.size.text,
                "aspect_ratio": self.size.aspect_ratio,
                "clarity": self.size.clarity,
                "tier": self.size.tier,
            }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        size = data.get("size")
        return cls(
            model=data["model"],
            prompt=data["prompt"],
            negative_prompt=data.get("negative_prompt"),
            n=data.get("n"),
            size=SizeSpec(**size) if size else None,
            seed=data.get("seed"),
            prompt_extend=data.get("prompt_extend"),
            watermark=data.get("watermark"),
            quality=data.get("quality"),
            reference_images=tuple(data.get("reference_images") or ()),
            extra=dict(data.get("extra") or {}),
        )


@dataclass(frozen=True)
class ImageResult:
    """One produced image: where the upstream put it, where we stored it, or why it failed."""

    url: str | None = None
    path: Path | None = None
    data: bytes | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    actual_prompt: str | None = None
    content_type: str = "image/png"
    error_code: str | None = None
    error_message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True)
class Usage:
    image_count: int = 0
    size: str | None = None


@dataclass(frozen=True)
class TaskError:
    code: str
    message: str


@dataclass(frozen=True)
class UpstreamState:
    """What a provider knows about one upstream task after a submit or a poll."""

    task_id: str
    status: TaskStatus
    images: tuple[ImageResult, ...] = ()
    usage: Usage | None = None
    error: TaskError | None = None
    request_id: str | None = None
    warnings: tuple[str, ...] = ()
    raw: dict[str, Any] | None = None


@dataclass
class Task:
    """A task as the SDK and the gateway see it."""

    id: str
    model: str
    request: GenerationRequest
    status: TaskStatus = TaskStatus.PENDING
    provider: str | None = None
    upstream_task_id: str | None = None
    submit_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    scheduled_time: datetime | None = None
    end_time: datetime | None = None
    images: list[ImageResult] = field(default_factory=list)
    usage: Usage | None = None
    error: TaskError | None = None
    warnings: list[str] = field(default_factory=list)
    owner: str | None = None
    request_id: str | None = None
    #: the protocol flavour that created the task ("dashscope-generation", "dashscope-synthesis",
    #: "dashscope-sync", "chanjing", "openai", "sdk"), so its answers keep that shape
    front: str | None = None


@dataclass(frozen=True)
class GenerationResult:
    """What ``Client.generate`` returns: the finished task and its files on disk."""

    task: Task
    images: tuple[ImageResult, ...]

    @property
    def paths(self) -> list[Path]:
        return [image.path for image in self.images if image.path is not None]


@dataclass(frozen=True)
class ApiKey:
    """An imagegate API key (never the secret itself, only its identity and limits)."""

    id: str  # the public app_id, e.g. "ak_3f9c..."
    name: str = ""
    qps: float = 5.0
    max_in_flight: int = 20
    models: tuple[str, ...] = ()  # empty: every model
    revoked: bool = False

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models
