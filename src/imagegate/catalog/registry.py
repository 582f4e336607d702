"""Loading ``models.toml`` and looking models up by name or alias."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from imagegate.catalog.model import (
    ENDPOINT_KINDS,
    VENDORS,
    Model,
    NumberRange,
    Option,
    ReferenceRule,
)
from imagegate.errors import UnknownModel
from imagegate.sizes import SizeRule


class Catalog:
    """Every known model, addressable by canonical name or alias."""

    def __init__(self, models: list[Model]) -> None:
        self._models = {model.name: model for model in models}
        self._names: dict[str, str] = {}
        for model in models:
            self._names[model.name] = model.name
            for alias in model.aliases:
                self._names[alias] = model.name

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._names

    def get(self, name: str) -> Model:
        canonical = self._names.get(name)
        if canonical is None:
            raise UnknownModel(
                f"model {name!r} does not exist; known models: {', '.join(self._models)}",
                field="model",
            )
        return self._models[canonical]

    def names(self) -> list[str]:
        return list(self._models)


def _size_rule(data: dict[str, Any]) -> SizeRule:
    return SizeRule(
        kind=data["kind"],
        default=data.get("default"),
        min_pixels=data.get("min_pixels"),
        max_pixels=data.get("max_pixels"),
        min_ratio=data.get("min_ratio"),
        max_ratio=data.get("max_ratio"),
        min_side=data.get("min_side"),
        max_side=data.get("max_side"),
        recommended=dict(data.get("recommended", {})),
        tiers=dict(data.get("tiers", {})),
        ratios=dict(data.get("ratios", {})),
        clarities=tuple(data.get("clarities", ())),
        default_clarity=data.get("default_clarity"),
        default_ratio=data.get("default_ratio"),
    )


def _options(data: dict[str, Any]) -> dict[str, Option]:
    options = {}
    for name, value in data.items():
        if isinstance(value, dict):
            options[name] = Option(name, value["default"], tuple(value["values"]))
        else:
            options[name] = Option(name, value)
    return options


def _model(name: str, data: dict[str, Any]) -> Model:
    if data["vendor"] not in VENDORS:
        raise ValueError(f"catalog: {name}: unknown vendor {data['vendor']!r}")
    if data["endpoint"] not in ENDPOINT_KINDS:
        raise ValueError(f"catalog: {name}: unknown endpoint {data['endpoint']!r}")
    seed = data.get("seed")
    refs = data.get("reference_images")
    return Model(
        name=name,
        vendor=data["vendor"],
        endpoint=data["endpoint"],
        size=_size_rule(data["size"]),
        n=NumberRange(**data["n"]),
        family=data.get("family", ""),
        source=data.get("source", ""),
        aliases=tuple(data.get("aliases", ())),
        sync=data.get("sync", False),
        seed_page=data.get("seed_page", True),
        prompt_max=data.get("prompt_max"),
        negative_prompt_max=data.get("negative_prompt_max"),
        seed=NumberRange(**seed) if seed else None,
        options=_options(data.get("options", {})),
        reference_images=ReferenceRule(**refs) if refs else None,
    )


def load_catalog(path: Path | None = None) -> Catalog:
    """Load a catalog file; without a path, the one shipped with imagegate (cached)."""
    if path is None:
        return _builtin()
    return _parse(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _builtin() -> Catalog:
    text = resources.files("imagegate.catalog").joinpath("models.toml").read_text("utf-8")
    return _parse(text)


def _parse(text: str) -> Catalog:
    data = tomllib.loads(text)
    return Catalog([_model(name, entry) for name, entry in data["models"].items()])
