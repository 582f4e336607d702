"""Every rule of every model, at its boundaries: just inside passes, just outside fails naming
the field. Expected values are written out from the seed pages, not read back from the data,
so a wrong number in models.toml fails here."""

from __future__ import annotations

import pytest

from imagegate.catalog import build_request, effective, load_catalog, validate, warnings_for
from imagegate.errors import UnknownModel, ValidationError
from imagegate.types import GenerationRequest

CATALOG = load_catalog()

SEED_MODELS = [
    "wan2.6-t2i",
    "wan2.5-t2i-preview",
    "wan2.2-t2i-plus",
    "wan2.2-t2i-flash",
    "wan2.1-t2i-plus",
    "wan2.1-t2i-turbo",
    "wanx2.0-t2i-turbo",
    "wan2.2-t2i",
    "kling-v2-1",
    "wan2.7-image-pro",
]

# prompt limits from seed 001's table; Chanjing and wan2.7 pages state none (imagegate bound)
PROMPT_MAX = {
    "wan2.6-t2i": 2100,
    "wan2.5-t2i-preview": 2000,
    "wan2.2-t2i-plus": 500,
    "wan2.2-t2i-flash": 500,
    "wan2.1-t2i-plus": 500,
    "wan2.1-t2i-turbo": 500,
    "wanx2.0-t2i-turbo": 800,
}

PIXEL_RANGE = {  # (min pixels, max pixels, min ratio, max ratio)
    "wan2.6-t2i": (1280 * 1280, 1440 * 1440, (1, 4), (4, 1)),
    "wan2.5-t2i-preview": (1280 * 1280, 1440 * 1440, (1, 4), (4, 1)),
    "wan2.7-image-pro": (768 * 768, 4096 * 4096, (1, 8), (8, 1)),
}
SIDE_MODELS = [
    "wan2.2-t2i-plus",
    "wan2.2-t2i-flash",
    "wan2.1-t2i-plus",
    "wan2.1-t2i-turbo",
    "wanx2.0-t2i-turbo",
]


def fails(field: str, model: str, prompt: str = "a flower shop", **kwargs: object) -> str:
    with pytest.raises(ValidationError) as caught:
        build_request(model, prompt, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field, caught.value.message
    assert field.split(".")[-1] in caught.value.message
    return caught.value.message


def passes(model: str, prompt: str = "a flower shop", **kwargs: object) -> GenerationRequest:
    return build_request(model, prompt, **kwargs)  # type: ignore[arg-type]


def test_catalog_lists_the_ten_seed_models_and_the_seedream_codes() -> None:
    names = CATALOG.names()
    for model in SEED_MODELS:
        assert model in names
    assert {"doubao-seedream-3.0-t2i", "doubao-seedream-4.0", "doubao-seedream-4.5"} <= set(names)
    assert sum(1 for model in CATALOG if model.seed_page) == 10


@pytest.mark.parametrize(
    ("model", "vendor", "endpoint"),
    [
        ("wan2.6-t2i", "dashscope", "dashscope-generation"),
        ("wan2.5-t2i-preview", "dashscope", "dashscope-synthesis"),
        ("wan2.2-t2i-flash", "dashscope", "dashscope-synthesis"),
        ("wanx2.0-t2i-turbo", "dashscope", "dashscope-synthesis"),
        ("wan2.2-t2i", "chanjing", "chanjing-task"),
        ("kling-v2-1", "chanjing", "chanjing-task"),
        ("wan2.7-image-pro", "openai", "openai-images"),
    ],
)
def test_vendor_and_endpoint(model: str, vendor: str, endpoint: str) -> None:
    entry = CATALOG.get(model)
    assert (entry.vendor, entry.endpoint) == (vendor, endpoint)


def test_aliases_resolve_to_canonical_names() -> None:
    assert CATALOG.get("wanx2.1-t2i-plus").name == "wan2.1-t2i-plus"
    assert CATALOG.get("wanx2.1-t2i-turbo").name == "wan2.1-t2i-turbo"
    assert passes("wanx2.1-t2i-turbo").model == "wan2.1-t2i-turbo"


def test_unknown_model() -> None:
    with pytest.raises(UnknownModel) as caught:
        passes("wan9-t2i")
    assert caught.value.field == "model"


@pytest.mark.parametrize(("model", "limit"), sorted(PROMPT_MAX.items()))
def test_prompt_limit(model: str, limit: int) -> None:
    passes(model, "x" * limit)
    message = fails("prompt", model, "x" * (limit + 1))
    assert str(limit) in message


@pytest.mark.parametrize("model", SEED_MODELS)
def test_prompt_required(model: str) -> None:
    fails("prompt", model, "")
    fails("prompt", model, "   ")


@pytest.mark.parametrize("model", [*PROMPT_MAX])
def test_negative_prompt_limit_500(model: str) -> None:
    passes(model, negative_prompt="n" * 500)
    fails("negative_prompt", model, negative_prompt="n" * 501)


@pytest.mark.parametrize("model", ["wan2.2-t2i", "kling-v2-1", "wan2.7-image-pro"])
def test_negative_prompt_not_taken(model: str) -> None:
    fails("negative_prompt", model, negative_prompt="blurry")
    passes(model, negative_prompt="")  # an empty one says nothing


@pytest.mark.parametrize("model", SEED_MODELS)
def test_n_range_one_to_four(model: str) -> None:
    passes(model, n=1)
    passes(model, n=4)
    assert "1 to 4" in fails("n", model, n=0)
    fails("n", model, n=5)


@pytest.mark.parametrize(
    ("model", "default"),
    [("wan2.6-t2i", 4), ("wan2.2-t2i-flash", 4), ("wan2.7-image-pro", 1), ("kling-v2-1", 1)],
)
def test_n_default(model: str, default: int) -> None:
    assert effective(passes(model)).n == default


@pytest.mark.parametrize("model", [*PROMPT_MAX, "wan2.7-image-pro"])
def test_seed_range(model: str) -> None:
    passes(model, seed=0)
    passes(model, seed=2147483647)
    fails("seed", model, seed=-1)
    fails("seed", model, seed=2147483648)


@pytest.mark.parametrize("model", ["wan2.2-t2i", "kling-v2-1"])
def test_seed_not_taken_on_chanjing(model: str) -> None:
    fails("seed", model, seed=1)


@pytest.mark.parametrize(("model", "rule"), sorted(PIXEL_RANGE.items()))
def test_pixel_range(model: str, rule: tuple) -> None:
    low, high, _, _ = rule
    side_low, side_high = round(low**0.5), round(high**0.5)
    passes(model, size=f"{side_low}*{side_low}")
    passes(model, size=f"{side_high}x{side_high}")
    message = fails("size", model, size=f"{side_low}*{side_low - 1}")
    assert f"{low} to {high}" in message
    fails("size", model, size=f"{side_high}*{side_high + 1}")


def test_pixel_rule_message_matches_the_issue() -> None:
    message = fails("size", "wan2.6-t2i", size="512*512")
    assert "size 512*512 has 262144 pixels; wan2.6-t2i needs 1638400 to 2073600" in message


@pytest.mark.parametrize(("model", "rule"), sorted(PIXEL_RANGE.items()))
def test_ratio_range(model: str, rule: tuple) -> None:
    _, _, (low_w, low_h), (high_w, high_h) = rule
    # find sizes inside the pixel range exactly at the ratio limit, then one pixel past it
    scale = 680 if model != "wan2.7-image-pro" else 288  # inside the pixel range
    tall = (low_w * scale, low_h * scale)
    wide = (high_w * scale, high_h * scale)
    passes(model, size=f"{tall[0]}*{tall[1]}")
    passes(model, size=f"{wide[0]}*{wide[1]}")
    assert "ratio" in fails("size", model, size=f"{tall[0] - 1}*{tall[1]}")
    fails("size", model, size=f"{wide[0]}*{wide[1] - 1}")


@pytest.mark.parametrize("model", SIDE_MODELS)
def test_side_range(model: str) -> None:
    passes(model, size="512*512")
    passes(model, size="1440*1440")
    passes(model, size="512*1440")
    assert "512 to 1440" in fails("size", model, size="511*1024")
    fails("size", model, size="1024*1441")


@pytest.mark.parametrize(
    ("model", "ratio", "size"),
    [
        ("wan2.6-t2i", "1:1", (1280, 1280)),
        ("wan2.6-t2i", "3:4", (1104, 1472)),
        ("wan2.6-t2i", "4:3", (1472, 1104)),
        ("wan2.6-t2i", "9:16", (960, 1696)),
        ("wan2.6-t2i", "16:9", (1696, 960)),
        ("wan2.5-t2i-preview", "16:9", (1696, 960)),
        ("wan2.2-t2i-flash", "16:9", (1280, 720)),
    ],
)
def test_ratio_strings_map_to_recommended_sizes(
    model: str, ratio: str, size: tuple[int, int]
) -> None:
    spec = passes(model, size=ratio).size
    assert spec is not None
    assert (spec.width, spec.height) == size


def test_recommended_sizes_below_the_stated_minimum_are_still_accepted() -> None:
    # seed 002 recommends 1696*960 (1628160 px) although it states a 1280*1280 minimum
    assert passes("wan2.6-t2i", size="1696*960").size is not None
    fails("size", "wan2.6-t2i", size="1696*959")


def test_unlisted_ratio_string() -> None:
    assert "21:9" in fails("size", "wan2.6-t2i", size="21:9")


@pytest.mark.parametrize(
    ("tier", "size"), [("1K", (1024, 1024)), ("2K", (2048, 2048)), ("4K", (4096, 4096))]
)
def test_wan27_tiers(tier: str, size: tuple[int, int]) -> None:
    spec = passes("wan2.7-image-pro", size=tier.lower()).size
    assert spec is not None
    assert (spec.width, spec.height, spec.tier) == (*size, tier)
    fails("size", "wan2.7-image-pro", size="8K")


def test_tiers_are_refused_where_the_model_has_none() -> None:
    assert "W*H" in fails("size", "wan2.6-t2i", size="2K")


def test_default_sizes() -> None:
    assert effective(passes("wan2.6-t2i")).size.star == "1280*1280"  # type: ignore[union-attr]
    assert effective(passes("wan2.2-t2i-plus")).size.star == "1024*1024"  # type: ignore[union-attr]
    assert effective(passes("wan2.7-image-pro")).size.star == "2048*2048"  # type: ignore[union-attr]
    assert effective(passes("kling-v2-1")).size.star == "1024*1024"  # type: ignore[union-attr]


@pytest.mark.parametrize("model", ["wan2.2-t2i", "kling-v2-1"])
def test_chanjing_aspect_ratios(model: str) -> None:
    for ratio in ("1:1", "3:4", "4:3", "9:16", "16:9"):
        spec = passes(model, aspect_ratio=ratio).size
        assert spec is not None and spec.aspect_ratio == ratio
    fails("aspect_ratio", model, aspect_ratio="21:9")


def test_kling_clarity() -> None:
    spec = passes("kling-v2-1", aspect_ratio="3:4", clarity=2048).size
    assert spec is not None and (spec.width, spec.height, spec.clarity) == (1728, 2304, 2048)
    assert passes("kling-v2-1", size="2K").size.clarity == 2048  # type: ignore[union-attr]
    assert "1024, 2048" in fails("clarity", "kling-v2-1", clarity=4096)
    fails("clarity", "wan2.2-t2i", clarity=1024)
    fails("clarity", "wan2.6-t2i", clarity=1024)


def test_chanjing_pixel_sizes_must_be_ones_it_makes() -> None:
    spec = passes("kling-v2-1", size="2048*2048").size
    assert spec is not None and (spec.aspect_ratio, spec.clarity) == ("1:1", 2048)
    assert "allowed" in fails("size", "kling-v2-1", size="1000*1000")


def test_wan22_quality_mode() -> None:
    passes("wan2.2-t2i", quality="std")
    passes("wan2.2-t2i", quality="pro")
    assert "std, pro" in fails("quality", "wan2.2-t2i", quality="max")
    fails("quality", "kling-v2-1", quality="std")
    assert effective(passes("wan2.2-t2i")).quality == "std"


@pytest.mark.parametrize("model", [*PROMPT_MAX])
def test_dashscope_boolean_options(model: str) -> None:
    request = effective(passes(model))
    assert (request.prompt_extend, request.watermark) == (True, False)
    fails("watermark", model, watermark="yes")


def test_wan27_takes_watermark_not_prompt_extend() -> None:
    passes("wan2.7-image-pro", watermark=True)
    fails("prompt_extend", "wan2.7-image-pro", prompt_extend=True)


def test_kling_reference_image_accepted_with_a_warning() -> None:
    url = "https://res.chanjing.cc/chanjing/res/aigc_creation/photo/xxx.jpg"
    request = passes("kling-v2-1", reference_images=[url])
    assert "not forwarded" in warnings_for(request)[0]
    fails("reference_images", "kling-v2-1", reference_images=[url, url])
    fails("reference_images", "wan2.2-t2i", reference_images=[url])
    fails("reference_images", "doubao-seedream-4.0", reference_images=["file:///etc/passwd"])


def test_field_names_follow_the_callers_protocol() -> None:
    names = {"n": "number_of_images", "prompt": "ref_prompt"}
    with pytest.raises(ValidationError) as caught:
        build_request("wan2.2-t2i", "x", n=9, names=names)
    assert caught.value.field == "number_of_images"
    assert caught.value.message.startswith("number_of_images is 9")


def test_validate_rechecks_a_built_request() -> None:
    request = passes("wan2.6-t2i").with_(n=7)
    with pytest.raises(ValidationError):
        validate(request)


def test_models_to_dict_is_plain_data() -> None:
    import json

    data = [model.to_dict() for model in CATALOG]
    assert json.loads(json.dumps(data))[0]["size"]["min_pixels"] == 1638400
