"""DashScope request bodies as pydantic models, and the server-side decoders built on them.

The gateway's DashScope front hands the raw JSON value of a submit to
``decode_generation_body`` (wan2.6 ``messages`` shape) or ``decode_synthesis_body`` (legacy
``text2image/image-synthesis`` shape); both return a ``GenerationRequest`` checked against the
catalog, so the rules live in one place and every message names the DashScope field.

What the official SDK sends (captured from ``dashscope`` 2.0.2 against a loopback server):

- 1.x ``ImageSynthesis.call/async_call/sync_call``: ``{"model", "parameters", "input"}``;
  ``parameters`` is ``{}`` when nothing was set (None values are dropped by the SDK), and may
  hold ``size, n, seed, style, ref_strength, ref_mode, prompt_extend, watermark``; ``input``
  holds ``prompt`` plus ``negative_prompt`` and ``ref_img`` when given.
- 1.x ``ImageGeneration.async_call`` leaks its own flag as ``parameters.is_async: true`` (the
  real cloud accepts it, so the vendor ignores unknown parameters); ``call`` may add
  ``stream`` / ``incremental_output``.
- 2.x ``client.images``: same keys, ``parameters`` omitted when empty, sizes written ``WxH``
  normalised to ``W*H``.

Unknown-field policy (documented choice): the vendor tolerates unknown keys (evidence above),
so unknown keys are accepted; ``ignored_fields`` lists the non-null ones so the front can
attach a visible warning ("never drop a parameter without saying so"). Keys the SDK sends for
other DashScope image models (``style``, ``ref_strength``, ``ref_mode``) are known but no
catalog model takes them: a non-null value is a ``ValidationError`` naming the field
(``style: "<auto>"``, the vendor default, is accepted). Null values are always ignored.
Types are strict: ``"n": "2"`` or ``"watermark": "yes"`` is an ``InvalidRequest``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from pydantic import ValidationError as PydanticError

from imagegate.catalog import Catalog, build_request
from imagegate.errors import InvalidRequest, UnknownModel, ValidationError
from imagegate.types import GenerationRequest

#: parameters the official SDK adds for its own plumbing; ignored without a warning
SDK_PLUMBING = frozenset({"is_async", "stream", "incremental_output"})
#: image parameters of other DashScope models (wanx-v1) that no catalog model takes
FOREIGN_PARAMETERS = ("style", "ref_strength", "ref_mode")
STYLE_DEFAULT = "<auto>"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Wire):
    text: StrictStr | None = None
    image: StrictStr | None = None
    type: StrictStr | None = None


class Message(_Wire):
    role: StrictStr = "user"
    content: list[ContentPart] = Field(min_length=1)

    @field_validator("content", mode="before")
    @classmethod
    def _text_shorthand(cls, value: Any) -> Any:
        """``"content": "a cat"`` (the SDK's plain-string message) means one text part."""
        return [{"text": value}] if isinstance(value, str) else value


class GenerationInput(_Wire):
    messages: list[Message] = Field(min_length=1)


class CommonParameters(_Wire):
    size: StrictStr | None = None
    n: StrictInt | None = None
    seed: StrictInt | None = None
    prompt_extend: StrictBool | None = None
    watermark: StrictBool | None = None
    style: StrictStr | None = None
    ref_strength: float | None = None
    ref_mode: StrictStr | None = None


class GenerationParameters(CommonParameters):
    negative_prompt: StrictStr | None = None


class GenerationBody(_Wire):
    """wan2.6 body: async ``image-generation`` and sync ``multimodal-generation`` (seeds 1, 2)."""

    model: StrictStr
    input: GenerationInput
    parameters: GenerationParameters | None = None


class SynthesisInput(_Wire):
    prompt: StrictStr
    negative_prompt: StrictStr | None = None
    ref_img: StrictStr | None = None


class SynthesisBody(_Wire):
    """Legacy ``text2image/image-synthesis`` body (wan2.5 and older)."""

    model: StrictStr
    input: SynthesisInput
    parameters: CommonParameters | None = None


# --------------------------------------------------------------------------- decoders


def decode_generation_body(body: Any, catalog: Catalog) -> GenerationRequest:
    """A wan2.6 ``messages`` body as a checked request.

    The prompt is the text of the last ``user`` message (its text parts joined by newlines);
    its ``image`` parts are reference images. Raises ``InvalidRequest`` (malformed, naming the
    path), ``UnknownModel`` ("Model not exist.") or ``ValidationError`` (a model rule).
    """
    parsed = _parse(GenerationBody, body)
    _known_model(parsed.model, catalog)
    index, message = _user_message(parsed.input.messages)
    texts = [(j, part.text) for j, part in enumerate(message.content) if part.text is not None]
    images = [part.image for part in message.content if part.image is not None]
    if not texts:
        raise InvalidRequest(
            f"input.messages[{index}].content needs a text part with the prompt",
            field=f"input.messages[{index}].content",
        )
    prompt_path = (
        f"input.messages[{index}].content[{texts[0][0]}].text"
        if len(texts) == 1
        else f"input.messages[{index}].content"
    )
    params = parsed.parameters or GenerationParameters()
    _reject_foreign(params, parsed.model)
    names = {
        "prompt": prompt_path,
        "negative_prompt": "parameters.negative_prompt",
        "reference_images": f"input.messages[{index}].content",
        **_parameter_names(),
    }
    return build_request(
        parsed.model,
        "\n".join(text for _, text in texts),
        size=params.size,
        n=params.n,
        seed=params.seed,
        negative_prompt=params.negative_prompt,
        prompt_extend=params.prompt_extend,
        watermark=params.watermark,
        reference_images=images,
        catalog=catalog,
        names=names,
    )


def decode_synthesis_body(body: Any, catalog: Catalog) -> GenerationRequest:
    """A legacy ``input.prompt`` body as a checked request (``input.ref_img`` is a reference)."""
    parsed = _parse(SynthesisBody, body)
    _known_model(parsed.model, catalog)
    params = parsed.parameters or CommonParameters()
    _reject_foreign(params, parsed.model)
    names = {
        "prompt": "input.prompt",
        "negative_prompt": "input.negative_prompt",
        "reference_images": "input.ref_img",
        **_parameter_names(),
    }
    refs = [parsed.input.ref_img] if parsed.input.ref_img else []
    return build_request(
        parsed.model,
        parsed.input.prompt,
        size=params.size,
        n=params.n,
        seed=params.seed,
        negative_prompt=parsed.input.negative_prompt,
        prompt_extend=params.prompt_extend,
        watermark=params.watermark,
        reference_images=refs,
        catalog=catalog,
        names=names,
    )


def ignored_fields(body: Any) -> list[str]:
    """Dotted paths of the non-null keys a decoder accepted but does not use.

    SDK plumbing (``parameters.is_async``/``stream``/``incremental_output``) is not listed.
    The front turns a non-empty list into a task warning.
    """
    if not isinstance(body, dict):
        return []
    known = {
        "": {"model", "input", "parameters"},
        "input": {"messages", "prompt", "negative_prompt", "ref_img"},
        "parameters": set(GenerationParameters.model_fields) | SDK_PLUMBING,
    }
    found: list[str] = []
    for section, keys in known.items():
        data = body if not section else body.get(section)
        if not isinstance(data, dict):
            continue
        for key, value in data.items():
            if key not in keys and value is not None:
                found.append(f"{section}.{key}" if section else key)
    return found


# --------------------------------------------------------------------------- helpers


def _parameter_names() -> dict[str, str]:
    return {
        name: f"parameters.{name}"
        for name in ("size", "n", "seed", "prompt_extend", "watermark", "aspect_ratio")
    }


def _parse(model: type[GenerationBody] | type[SynthesisBody], body: Any) -> Any:
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"the request body must be a JSON object, got {_json_type(body)}", field="body"
        )
    try:
        return model.model_validate(body)
    except PydanticError as error:
        first = error.errors(include_url=False)[0]
        path = dotted_path(first["loc"]) or "body"
        raise InvalidRequest(
            f"{path} {_rule(first['type'], first['msg'], first.get('input'))}", field=path
        ) from None


def dotted_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("input", "messages", 0, "content")`` as ``input.messages[0].content``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_RULES = {
    "missing": "is required",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "too_short": "must not be empty",
}


def _rule(kind: str, message: str, value: Any) -> str:
    rule = _RULES.get(kind, message[:1].lower() + message[1:])
    if kind != "missing" and kind in _RULES:
        rule += f", got {_json_type(value)}"
    return rule


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _known_model(name: str, catalog: Catalog) -> None:
    if name not in catalog:
        raise UnknownModel(
            f"Model not exist. model {name!r} is not served here; known models: "
            f"{', '.join(catalog.names())}",
            field="model",
        )


def _user_message(messages: list[Message]) -> tuple[int, Message]:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index, messages[index]
    raise InvalidRequest("input.messages needs a message with role user", field="input.messages")


def _reject_foreign(params: CommonParameters, model: str) -> None:
    for name in FOREIGN_PARAMETERS:
        value = getattr(params, name)
        if value is None or (name == "style" and value == STYLE_DEFAULT):
            continue
        raise ValidationError(
            f"parameters.{name} is not a parameter of {model} (it belongs to wanx-v1)",
            field=f"parameters.{name}",
        )
