"""The sandbox's picture: a seeded landscape, rendered locally with Pillow.

Everything that varies is drawn from one random stream seeded by a hash of (prompt, seed), so
the same (prompt, seed, size) gives the same PNG bytes on every run and machine with the same
Pillow. The scene is composed on a small canvas (longest side ``_BASE``) and scaled once to
the exact requested size, which keeps even 4096*4096 well under a second: no per-pixel Python.
A "SANDBOX" label is drawn in the bottom-left corner at full resolution and the PNG carries a
``sandbox: true`` text chunk, so nobody mistakes the output for a model's.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageDraw, ImageFilter, ImageFont, PngImagePlugin

MARK = "SANDBOX"
SOFTWARE = "imagegate sandbox renderer (not a model)"
_BASE = 512
_TAU = 2 * math.pi

RGB = tuple[int, int, int]


def _rgb(hue: float, saturation: float, value: float) -> RGB:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, min(1.0, saturation), min(1.0, value))
    return (round(red * 255), round(green * 255), round(blue * 255))


def _stream(prompt: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _scene(rng: random.Random, width: int, height: int) -> Image.Image:
    """Sky gradient, a glowing sun, a few floating shapes and layered hills, at base size."""
    scale = _BASE / max(width, height)
    bw, bh = max(16, round(width * scale)), max(16, round(height * scale))
    hue = rng.random()
    top = _rgb(hue, 0.55 + 0.3 * rng.random(), 0.35 + 0.3 * rng.random())
    low = _rgb(hue + 0.08 + 0.2 * rng.random(), 0.3 + 0.4 * rng.random(), 0.8 + 0.2 * rng.random())
    mask = Image.linear_gradient("L").resize((bw, bh))
    sky = Image.composite(Image.new("RGB", (bw, bh), low), Image.new("RGB", (bw, bh), top), mask)
    img = sky.convert("RGBA")

    sun_x, sun_y = rng.uniform(0.15, 0.85) * bw, rng.uniform(0.12, 0.45) * bh
    sun_r = rng.uniform(0.05, 0.12) * max(bw, bh)
    sun = _rgb(hue + 0.5 + 0.1 * rng.random(), 0.35, 1.0)
    glow_side = max(2, round(sun_r * 6))
    glow = Image.radial_gradient("L").resize((glow_side, glow_side))
    glow = glow.point(lambda p: max(0, 200 - 2 * p))
    halo = Image.new("RGBA", (bw, bh), (*sun, 0))
    corner = (round(sun_x - sun_r * 3), round(sun_y - sun_r * 3))
    halo.paste(Image.new("RGBA", glow.size, (*sun, 255)), corner, glow)
    img = Image.alpha_composite(img, halo)
    ImageDraw.Draw(img).ellipse(
        (sun_x - sun_r, sun_y - sun_r, sun_x + sun_r, sun_y + sun_r), fill=(*sun, 255)
    )

    shapes = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
    for _ in range(rng.randint(3, 7)):
        layer = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        x, y = rng.uniform(0, bw), rng.uniform(0, bh * 0.6)
        radius = rng.uniform(0.01, 0.05) * max(bw, bh)
        colour = (*_rgb(hue + rng.random(), 0.3 + 0.5 * rng.random(), 0.9), rng.randint(90, 200))
        if rng.random() < 0.5:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        else:
            sides = rng.randint(3, 6)
            draw.regular_polygon((x, y, radius), sides, rotation=rng.uniform(0, 360), fill=colour)
        shapes = Image.alpha_composite(shapes, layer)
    img = Image.alpha_composite(img, shapes)

    draw = ImageDraw.Draw(img)
    layers = rng.randint(3, 5)
    for k in range(layers):
        base_y = bh * (0.5 + 0.45 * (k + 1) / (layers + 1))
        amp = bh * rng.uniform(0.03, 0.12)
        f1, f2 = rng.uniform(1, 3), rng.uniform(3, 7)
        p1, p2 = rng.uniform(0, _TAU), rng.uniform(0, _TAU)
        ridge = [
            (x, base_y - amp * math.sin(f1 * x / bw * _TAU + p1)
             - 0.4 * amp * math.sin(f2 * x / bw * _TAU + p2))
            for x in range(0, bw + 8, 8)
        ]  # fmt: skip
        shade = 0.75 - 0.5 * (k + 1) / (layers + 1)
        colour = _rgb(hue + 0.3 + 0.08 * k + 0.1 * rng.random(), 0.45 + 0.3 * rng.random(), shade)
        draw.polygon([*ridge, (bw, bh), (0, bh)], fill=(*colour, 255))
    return img.convert("RGB").filter(ImageFilter.SMOOTH)


def _mark(img: Image.Image, text: str, *, right: bool = False) -> None:
    """White text on a black box in a bottom corner, sized to the image."""
    width, height = img.size
    size = max(8, min(width, height) // 28)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(img)
    left, top, end, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(1, size // 3)
    box_w, box_h = end - left + 2 * pad, bottom - top + 2 * pad
    x0 = width - box_w - pad if right else pad
    y0 = max(0, height - box_h - pad)
    draw.rectangle((x0, y0, x0 + box_w, y0 + box_h), fill=(0, 0, 0))
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=(255, 255, 255))


def render(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    *,
    watermark: bool = False,
) -> Image.Image:
    """The picture for (prompt, seed) at exactly ``width`` x ``height``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"sandbox cannot render {width}x{height}")
    img = _scene(_stream(prompt, seed), width, height).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    _mark(img, MARK)
    if watermark:
        _mark(img, "AI generated", right=True)
    return img


def png_info(seed: int, extra: dict[str, str] | None = None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("sandbox", "true")
    info.add_text("Software", SOFTWARE)
    info.add_text("seed", str(seed))
    for key, value in (extra or {}).items():
        info.add_text(key, value)
    return info


def render_png(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    *,
    watermark: bool = False,
    text: dict[str, str] | None = None,
) -> bytes:
    """PNG bytes of :func:`render`, with the ``sandbox: true`` text chunk."""
    out = io.BytesIO()
    _save(render(prompt, seed, width, height, watermark=watermark), out, seed, text)
    return out.getvalue()


def write_png(
    dest: Path,
    prompt: str,
    seed: int,
    width: int,
    height: int,
    *,
    watermark: bool = False,
    text: dict[str, str] | None = None,
) -> None:
    """Render straight into a file (no second copy of the bytes in memory)."""
    with dest.open("wb") as out:
        _save(render(prompt, seed, width, height, watermark=watermark), out, seed, text)


def _save(img: Image.Image, out: BinaryIO, seed: int, text: dict[str, str] | None) -> None:
    # compress_level 1: a 4096*4096 PNG in ~0.5 s instead of ~2 s, at a modest size cost.
    img.save(out, "PNG", pnginfo=png_info(seed, text), compress_level=1)
