"""Size notation and size rules.

One parser for every way a size is written (``1280*1280``, ``1280x1280``, ``16:9``, ``2K``,
Chanjing ``aspect_ratio`` + ``clarity``) and one checker for every kind of rule in the seed
pages (a pixel range with a ratio range, a per-side range, a fixed table of ratio sizes).
Pure code: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from imagegate.errors import ValidationError
from imagegate.types import SizeSpec

_PIXELS = re.compile(r"^\s*(\d{1,6})\s*[*xX×]\s*(\d{1,6})\s*$")
_RATIO = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")
_TIER = re.compile(r"^\s*(\d)\s*[kK]\s*$")


def parse_pixels(text: str) -> tuple[int, int] | None:
    match = _PIXELS.match(text)
    return (int(match[1]), int(match[2])) if match else None


def parse_ratio(text: str) -> Fraction | None:
    match = _RATIO.match(text)
    if not match or int(match[2]) == 0 or int(match[1]) == 0:
        return None
    return Fraction(int(match[1]), int(match[2]))


def ratio_text(text: str) -> str:
    """Normalise ``" 16 : 9 "`` to ``"16:9"``."""
    match = _RATIO.match(text)
    return f"{int(match[1])}:{int(match[2])}" if match else text


@dataclass(frozen=True)
class SizeRule:
    """The size rule of one model, loaded from the catalog.

    kind ``pixels``: total pixels in [min_pixels, max_pixels] and width/height in
    [min_ratio, max_ratio]; kind ``sides``: each side in [min_side, max_side]; kind ``aspect``:
    one of ``ratios`` (each a base size at clarity ``base_clarity``), scaled by ``clarity``.
    ``recommended`` maps ratio strings to sizes, ``tiers`` maps tier names to sizes.
    """

    kind: str
    default: str | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    min_ratio: str | None = None
    max_ratio: str | None = None
    min_side: int | None = None
    max_side: int | None = None
    recommended: dict[str, str] = field(default_factory=dict)
    tiers: dict[str, str] = field(default_factory=dict)
    ratios: dict[str, str] = field(default_factory=dict)
    clarities: tuple[int, ...] = ()
    default_clarity: int | None = None
    base_clarity: int = 1024
    default_ratio: str | None = None

    def describe(self) -> str:
        """A one-line human summary, for tables and error messages."""
        if self.kind == "pixels":
            parts = [f"{_side(self.min_pixels)} to {_side(self.max_pixels)} pixels"]
            parts.append(f"ratio {self.min_ratio} to {self.max_ratio}")
            if self.tiers:
                parts.append("tiers " + "/".join(self.tiers))
            return ", ".join(parts)
        if self.kind == "sides":
            return f"each side {self.min_side} to {self.max_side}"
        ratios = "/".join(self.ratios)
        if self.clarities:
            return f"aspect_ratio {ratios}; clarity {'/'.join(map(str, self.clarities))}"
        return f"aspect_ratio {ratios}"


def _side(pixels: int | None) -> str:
    if pixels is None:
        return "?"
    root = round(pixels**0.5)
    return f"{root}*{root}" if root * root == pixels else str(pixels)


def resolve(
    rule: SizeRule,
    model: str,
    text: str | None,
    *,
    clarity: int | None = None,
    aspect_ratio: str | None = None,
) -> SizeSpec | None:
    """Turn what the caller wrote into a checked ``SizeSpec`` for this model.

    Returns ``None`` when nothing was asked for and the model has no default to state.
    Raises ``ValidationError`` (field ``size``, ``aspect_ratio`` or ``clarity``) naming the rule.
    """
    if rule.kind == "aspect":
        return _resolve_aspect(rule, model, text, clarity=clarity, aspect_ratio=aspect_ratio)
    if clarity is not None:
        raise ValidationError(
            f"clarity is not a parameter of {model}; give size as W*H instead",
            field="clarity",
        )
    if aspect_ratio is not None and text is None:
        text = aspect_ratio
    if text is None:
        return None
    spec = _parse_for_pixel_rule(rule, model, text)
    check(rule, model, spec)
    return spec


def _parse_for_pixel_rule(rule: SizeRule, model: str, text: str) -> SizeSpec:
    stripped = text.strip()
    pixels = parse_pixels(stripped)
    if pixels:
        return SizeSpec(pixels[0], pixels[1], text=stripped)
    tier = stripped.upper()
    if _TIER.match(stripped):
        if tier not in rule.tiers:
            raise ValidationError(
                f"size {stripped}: {model} has no size tiers; "
                f"give W*H ({rule.describe()}) or a ratio ({_ratio_list(rule)})"
                if not rule.tiers
                else f"size {stripped}: {model} takes tiers {'/'.join(rule.tiers)}",
                field="size",
            )
        width, height = parse_pixels(rule.tiers[tier]) or (0, 0)
        return SizeSpec(width, height, text=tier, tier=tier)
    if parse_ratio(stripped) is not None:
        key = ratio_text(stripped)
        if key not in rule.recommended:
            raise ValidationError(
                f"size {key}: {model} has no recommended size for that ratio; "
                f"use one of {_ratio_list(rule)} or give W*H ({rule.describe()})",
                field="size",
            )
        width, height = parse_pixels(rule.recommended[key]) or (0, 0)
        return SizeSpec(width, height, text=rule.recommended[key], aspect_ratio=key)
    raise ValidationError(
        f"size {text!r} is not a size: write W*H (1280*1280), WxH, a ratio such as 16:9"
        + (f" or a tier ({'/'.join(rule.tiers)})" if rule.tiers else ""),
        field="size",
    )


def _ratio_list(rule: SizeRule) -> str:
    return ", ".join(rule.recommended) or "none"


def check(rule: SizeRule, model: str, spec: SizeSpec) -> None:
    """Check resolved pixels against a ``pixels`` or ``sides`` rule."""
    width, height = spec.width, spec.height
    if width <= 0 or height <= 0:
        raise ValidationError(f"size {spec.text}: width and height must be positive", field="size")
    if f"{width}*{height}" in rule.recommended.values():
        # The vendor's own recommended sizes are valid by definition, even where the page's
        # pixel range would exclude them (wan2.6: 16:9 is 1696*960 = 1628160 < 1280*1280).
        return
    if rule.kind == "pixels":
        assert rule.min_pixels is not None and rule.max_pixels is not None
        pixels = width * height
        if not rule.min_pixels <= pixels <= rule.max_pixels:
            raise ValidationError(
                f"size {spec.text} has {pixels} pixels; {model} needs {rule.min_pixels} to "
                f"{rule.max_pixels} ({_side(rule.min_pixels)} to {_side(rule.max_pixels)})",
                field="size",
            )
        low = parse_ratio(rule.min_ratio or "") or Fraction(0)
        high = parse_ratio(rule.max_ratio or "") or Fraction(10**9)
        ratio = Fraction(width, height)
        if not low <= ratio <= high:
            raise ValidationError(
                f"size {spec.text} has ratio {width}:{height} ({float(ratio):.3f}); {model} needs "
                f"a ratio from {rule.min_ratio} to {rule.max_ratio}",
                field="size",
            )
    elif rule.kind == "sides":
        assert rule.min_side is not None and rule.max_side is not None
        for name, side in (("width", width), ("height", height)):
            if not rule.min_side <= side <= rule.max_side:
                raise ValidationError(
                    f"size {spec.text} has {name} {side}; {model} needs each side from "
                    f"{rule.min_side} to {rule.max_side} (at most "
                    f"{rule.max_side}*{rule.max_side})",
                    field="size",
                )


def _resolve_aspect(
    rule: SizeRule,
    model: str,
    text: str | None,
    *,
    clarity: int | None,
    aspect_ratio: str | None,
) -> SizeSpec:
    tier_clarity: int | None = None
    if text is not None:
        stripped = text.strip()
        pixels = parse_pixels(stripped)
        if pixels:
            return _aspect_from_pixels(rule, model, stripped, pixels, clarity)
        if _TIER.match(stripped):
            tier_clarity = int(stripped.strip()[0]) * 1024
            if not rule.clarities:
                raise ValidationError(
                    f"size {stripped}: {model} has no clarity tiers; give an aspect_ratio "
                    f"({', '.join(rule.ratios)})",
                    field="size",
                )
            clarity = clarity or tier_clarity
        elif parse_ratio(stripped) is not None:
            if aspect_ratio is not None and ratio_text(aspect_ratio) != ratio_text(stripped):
                raise ValidationError(
                    f"size {stripped} and aspect_ratio {aspect_ratio} disagree", field="size"
                )
            aspect_ratio = stripped
        else:
            raise ValidationError(
                f"size {text!r} is not a size: {model} takes an aspect_ratio "
                f"({', '.join(rule.ratios)})",
                field="size",
            )
    ratio = ratio_text(aspect_ratio) if aspect_ratio is not None else rule.default_ratio
    if ratio not in rule.ratios:
        raise ValidationError(
            f"aspect_ratio {aspect_ratio} is not supported by {model}; "
            f"allowed: {', '.join(rule.ratios)}",
            field="aspect_ratio",
        )
    if clarity is not None and not rule.clarities:
        raise ValidationError(
            f"clarity is not a parameter of {model}; it takes aspect_ratio only",
            field="clarity",
        )
    if clarity is not None and clarity not in rule.clarities:
        field_name = "size" if tier_clarity is not None else "clarity"
        raise ValidationError(
            f"clarity {clarity} is not supported by {model}; "
            f"allowed: {', '.join(map(str, rule.clarities))}",
            field=field_name,
        )
    effective = clarity or rule.default_clarity or rule.base_clarity
    base = parse_pixels(rule.ratios[ratio]) or (0, 0)
    width = base[0] * effective // rule.base_clarity
    height = base[1] * effective // rule.base_clarity
    return SizeSpec(
        width,
        height,
        text=aspect_ratio if aspect_ratio is not None else f"{width}*{height}",
        aspect_ratio=ratio if aspect_ratio is not None else None,
        clarity=clarity,
    )


def _aspect_from_pixels(
    rule: SizeRule, model: str, text: str, pixels: tuple[int, int], clarity: int | None
) -> SizeSpec:
    for option in clarity_options(rule):
        if clarity is not None and option != clarity:
            continue
        for ratio, base in rule.ratios.items():
            width, height = parse_pixels(base) or (0, 0)
            scaled = (width * option // rule.base_clarity, height * option // rule.base_clarity)
            if scaled == pixels:
                return SizeSpec(
                    pixels[0],
                    pixels[1],
                    text=text,
                    aspect_ratio=ratio,
                    clarity=option if rule.clarities else None,
                )
    allowed = ", ".join(allowed_sizes(rule))
    raise ValidationError(
        f"size {text} is not one of the sizes {model} makes; allowed: {allowed} "
        f"(or an aspect_ratio {', '.join(rule.ratios)})",
        field="size",
    )


def clarity_options(rule: SizeRule) -> tuple[int, ...]:
    return rule.clarities or (rule.base_clarity,)


def allowed_sizes(rule: SizeRule) -> list[str]:
    """Every W*H an ``aspect`` rule can produce."""
    sizes = []
    for option in clarity_options(rule):
        for base in rule.ratios.values():
            width, height = parse_pixels(base) or (0, 0)
            sizes.append(
                f"{width * option // rule.base_clarity}*{height * option // rule.base_clarity}"
            )
    return sizes


def default_size(rule: SizeRule, model: str) -> SizeSpec:
    """The size the vendor uses when the caller names none."""
    if rule.kind == "aspect":
        return _resolve_aspect(rule, model, None, clarity=None, aspect_ratio=None)
    assert rule.default is not None
    return _parse_for_pixel_rule(rule, model, rule.default)
