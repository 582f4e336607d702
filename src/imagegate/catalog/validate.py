"""The one place a request is checked against a model's documented rules.

The SDK runs it before spending money; the gateway runs it before queueing. Every error names
the field (in the caller's protocol when ``names`` maps it) and the rule it breaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from imagegate import sizes
from imagegate.catalog.model import Model, NumberRange
from imagegate.catalog.registry import Catalog, load_catalog
from imagegate.errors import ValidationError
from imagegate.types import GenerationRequest, SizeSpec

FieldNames = Mapping[str, str]


def _name(names: FieldNames | None, field: str) -> str:
    return (names or {}).get(field, field)


def _fail(names: FieldNames | None, field: str, rule: str) -> ValidationError:
    shown = _name(names, field)
    return ValidationError(f"{shown} {rule}", field=shown)


def build_request(
    model: str,
    prompt: str,
    *,
    size: str | None = None,
    aspect_ratio: str | None = None,
    clarity: int | None = None,
    n: int | None = None,
    seed: int | None = None,
    negative_prompt: str | None = None,
    prompt_extend: bool | None = None,
    watermark: bool | None = None,
    quality: str | None = None,
    reference_images: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    catalog: Catalog | None = None,
    names: FieldNames | None = None,
) -> GenerationRequest:
    """Build a checked ``GenerationRequest`` from loose caller values.

    The size is resolved against the model's rule (``16:9`` to its recommended size, ``2K`` to
    its tier, Chanjing ``aspect_ratio``/``clarity`` to pixels) and everything is validated.
    """
    entry = (catalog or load_catalog()).get(model)
    try:
        spec = sizes.resolve(
            entry.size, entry.name, size, clarity=clarity, aspect_ratio=aspect_ratio
        )
    except ValidationError as error:
        raise _renamed(error, names) from None
    request = GenerationRequest(
        model=entry.name,
        prompt=prompt,
        negative_prompt=negative_prompt,
        n=n,
        size=spec,
        seed=seed,
        prompt_extend=prompt_extend,
        watermark=watermark,
        quality=quality,
        reference_images=tuple(reference_images),
        extra=dict(extra or {}),
    )
    validate(request, catalog=catalog, names=names)
    return request


def _renamed(error: ValidationError, names: FieldNames | None) -> ValidationError:
    if error.field and names and error.field in names:
        shown = names[error.field]
        return ValidationError(error.message.replace(error.field, shown, 1), field=shown)
    return error


def validate(
    request: GenerationRequest,
    *,
    catalog: Catalog | None = None,
    names: FieldNames | None = None,
) -> Model:
    """Check every field of ``request`` against its model; return the model entry."""
    entry = (catalog or load_catalog()).get(request.model)
    _check_prompt(entry, request, names)
    _check_number(names, "n", request.n, entry.n, entry.name)
    if request.seed is not None:
        if entry.seed is None:
            raise _fail(names, "seed", f"is not a parameter of {entry.name}")
        _check_number(names, "seed", request.seed, entry.seed, entry.name)
    for option, value in (
        ("prompt_extend", request.prompt_extend),
        ("watermark", request.watermark),
        ("quality", request.quality),
    ):
        _check_option(entry, names, option, value)
    _check_references(entry, request, names)
    if request.size is not None:
        _check_size(entry, request.size, names)
    return entry


def _check_prompt(entry: Model, request: GenerationRequest, names: FieldNames | None) -> None:
    if not isinstance(request.prompt, str) or not request.prompt.strip():
        raise _fail(names, "prompt", "is required and must not be empty")
    if entry.prompt_max is not None and len(request.prompt) > entry.prompt_max:
        raise _fail(
            names,
            "prompt",
            f"has {len(request.prompt)} characters; {entry.name} allows at most {entry.prompt_max}",
        )
    negative = request.negative_prompt
    if negative is None:
        return
    if entry.negative_prompt_max is None:
        if negative == "":
            return
        raise _fail(names, "negative_prompt", f"is not a parameter of {entry.name}")
    if len(negative) > entry.negative_prompt_max:
        raise _fail(
            names,
            "negative_prompt",
            f"has {len(negative)} characters; {entry.name} allows at most "
            f"{entry.negative_prompt_max}",
        )


def _check_number(
    names: FieldNames | None, field: str, value: int | None, allowed: NumberRange, model: str
) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(names, field, f"must be an integer, got {value!r}")
    if not allowed.min <= value <= allowed.max:
        raise _fail(names, field, f"is {value}; {model} allows {allowed.min} to {allowed.max}")


def _check_option(entry: Model, names: FieldNames | None, option: str, value: Any) -> None:
    if value is None:
        return
    found = entry.options.get(option)
    if found is None:
        raise _fail(names, option, f"is not a parameter of {entry.name}")
    if found.values:
        if value not in found.values:
            allowed = ", ".join(map(str, found.values))
            raise _fail(names, option, f"is {value!r}; {entry.name} allows {allowed}")
    elif isinstance(found.default, bool) and not isinstance(value, bool):
        raise _fail(names, option, f"must be true or false, got {value!r}")


def _check_references(entry: Model, request: GenerationRequest, names: FieldNames | None) -> None:
    refs = request.reference_images
    if not refs:
        return
    rule = entry.reference_images
    if rule is None:
        raise _fail(names, "reference_images", f"are not accepted by {entry.name}")
    if len(refs) > rule.max:
        raise _fail(
            names,
            "reference_images",
            f"has {len(refs)} images; {entry.name} accepts at most {rule.max}",
        )
    for ref in refs:
        if not isinstance(ref, str) or not ref.startswith(("http://", "https://")):
            raise _fail(names, "reference_images", f"must be http(s) URLs, got {ref!r}")


def _check_size(entry: Model, spec: SizeSpec, names: FieldNames | None) -> None:
    try:
        if entry.size.kind == "aspect":
            if f"{spec.width}*{spec.height}" not in sizes.allowed_sizes(entry.size):
                raise ValidationError(
                    f"size {spec.text} is not one of the sizes {entry.name} makes; allowed: "
                    f"{', '.join(sizes.allowed_sizes(entry.size))}",
                    field="size",
                )
        else:
            sizes.check(entry.size, entry.name, spec)
    except ValidationError as error:
        raise _renamed(error, names) from None


def warnings_for(request: GenerationRequest, catalog: Catalog | None = None) -> list[str]:
    """Visible warnings about parameters a model accepts but does not forward."""
    entry = (catalog or load_catalog()).get(request.model)
    rule = entry.reference_images
    if request.reference_images and rule is not None and not rule.forwarded:
        return [rule.warning or f"{entry.name} ignores reference images; they were not sent"]
    return []


def effective(request: GenerationRequest, catalog: Catalog | None = None) -> GenerationRequest:
    """The request with the model's documented defaults filled in (what the vendor will do)."""
    entry = (catalog or load_catalog()).get(request.model)
    changes: dict[str, Any] = {}
    if request.n is None:
        changes["n"] = entry.n.default if entry.n.default is not None else entry.n.min
    if request.size is None:
        changes["size"] = sizes.default_size(entry.size, entry.name)
    for option in ("prompt_extend", "watermark", "quality"):
        if getattr(request, option) is None and entry.takes(option):
            changes[option] = entry.default(option)
    return request.with_(**changes) if changes else request
