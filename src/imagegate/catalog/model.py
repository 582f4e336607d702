"""One catalog entry, as loaded from ``models.toml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagegate.sizes import SizeRule

ENDPOINT_KINDS = frozenset(
    {"dashscope-generation", "dashscope-synthesis", "chanjing-task", "openai-images"}
)
VENDORS = frozenset({"dashscope", "chanjing", "openai"})


@dataclass(frozen=True)
class NumberRange:
    min: int
    max: int
    default: int | None = None

    def __str__(self) -> str:
        return f"{self.min} to {self.max}"


@dataclass(frozen=True)
class Option:
    """An optional parameter: a boolean with a default, or an enumeration with a default."""

    name: str
    default: Any
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ReferenceRule:
    max: int
    forwarded: bool = True
    warning: str | None = None


@dataclass(frozen=True)
class Model:
    name: str
    vendor: str
    endpoint: str
    size: SizeRule
    n: NumberRange
    family: str = ""
    source: str = ""
    aliases: tuple[str, ...] = ()
    sync: bool = False
    seed_page: bool = True
    prompt_max: int | None = None
    negative_prompt_max: int | None = None
    seed: NumberRange | None = None
    options: dict[str, Option] = field(default_factory=dict)
    reference_images: ReferenceRule | None = None

    def takes(self, option: str) -> bool:
        return option in self.options

    def default(self, option: str) -> Any:
        found = self.options.get(option)
        return found.default if found else None

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain data (``imagegate models --json``, ``GET /v1/models``)."""
        rule = self.size
        size: dict[str, Any] = {"kind": rule.kind, "rule": rule.describe()}
        for key in (
            "default",
            "min_pixels",
            "max_pixels",
            "min_ratio",
            "max_ratio",
            "min_side",
            "max_side",
            "default_clarity",
            "default_ratio",
        ):
            value = getattr(rule, key)
            if value is not None:
                size[key] = value
        if rule.recommended:
            size["recommended"] = dict(rule.recommended)
        if rule.tiers:
            size["tiers"] = dict(rule.tiers)
        if rule.ratios:
            size["ratios"] = dict(rule.ratios)
        if rule.clarities:
            size["clarities"] = list(rule.clarities)
        data: dict[str, Any] = {
            "name": self.name,
            "aliases": list(self.aliases),
            "vendor": self.vendor,
            "endpoint": self.endpoint,
            "sync": self.sync,
            "family": self.family,
            "source": self.source,
            "seed_page": self.seed_page,
            "prompt_max": self.prompt_max,
            "negative_prompt_max": self.negative_prompt_max,
            "n": {"min": self.n.min, "max": self.n.max, "default": self.n.default},
            "seed": {"min": self.seed.min, "max": self.seed.max} if self.seed else None,
            "size": size,
            "options": {
                name: (
                    {"default": option.default, "values": list(option.values)}
                    if option.values
                    else {"default": option.default}
                )
                for name, option in self.options.items()
            },
            "reference_images": (
                {
                    "max": self.reference_images.max,
                    "forwarded": self.reference_images.forwarded,
                }
                if self.reference_images
                else None
            ),
        }
        return data
