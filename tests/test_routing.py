"""Routing: catalog vendor + credentials -> provider; missing credentials said plainly."""

from __future__ import annotations

import pytest

from imagegate.config import Credentials
from imagegate.errors import InvalidRequest, NotConfigured, UnknownModel
from imagegate.routing import Router

ALL = Credentials(
    dashscope_api_key="sk-test",
    chanjing_app_id="app",
    chanjing_secret_key="secret",
    openai_base_url="http://127.0.0.1:9/v1",
    openai_api_key="sk-openai",
)


async def test_each_model_goes_to_its_vendor() -> None:
    router = Router(ALL)
    try:
        assert router.provider_for("wan2.6-t2i").name == "dashscope"
        assert router.provider_for("wanx2.1-t2i-plus").name == "dashscope"  # alias
        assert router.provider_for("kling-v2-1").name == "chanjing"
        assert router.provider_for("wan2.7-image-pro").name == "openai"
        # one instance per provider name, shared by its models
        assert router.provider_for("wan2.2-t2i-flash") is router.by_name("dashscope")
        assert set(router.describe().values()) == {"dashscope", "chanjing", "openai"}
    finally:
        await router.aclose()


def test_missing_credentials_name_the_variables_and_the_sandbox() -> None:
    router = Router(Credentials())
    with pytest.raises(NotConfigured) as caught:
        router.provider_for("wan2.6-t2i")
    message = str(caught.value)
    assert "DASHSCOPE_API_KEY" in message
    assert "--sandbox" in message and "sandbox=True" in message
    assert caught.value.exit_code == 3
    with pytest.raises(NotConfigured) as chanjing:
        router.provider_for("wan2.2-t2i")
    assert "CHANJING_APP_ID" in str(chanjing.value)
    assert "CHANJING_SECRET_KEY" in str(chanjing.value)
    with pytest.raises(NotConfigured, match="IMAGEGATE_OPENAI_BASE_URL"):
        router.provider_for("wan2.7-image-pro")
    with pytest.raises(NotConfigured, match="DASHSCOPE_API_KEY"):
        router.by_name("dashscope")


def test_partial_credentials_still_count_as_missing() -> None:
    router = Router(Credentials(chanjing_app_id="only-the-id"))
    with pytest.raises(NotConfigured) as caught:
        router.provider_for("kling-v2-1")
    assert "CHANJING_SECRET_KEY" in str(caught.value)
    assert "CHANJING_APP_ID" not in str(caught.value)


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env")
    router = Router()
    assert router.vendor_for("wan2.6-t2i") == "dashscope"
    assert router.describe()["wan2.6-t2i"] == "dashscope"
    assert router.describe()["kling-v2-1"].startswith("not configured")


async def test_sandbox_takes_everything_even_with_credentials() -> None:
    router = Router(ALL, sandbox=True, sandbox_options={"latency": 0.25})
    try:
        for model in ("wan2.6-t2i", "kling-v2-1", "wan2.7-image-pro"):
            provider = router.provider_for(model)
            assert provider.name == "sandbox"
        assert router.by_name("sandbox").latency == 0.25  # type: ignore[attr-defined]
        assert set(router.describe().values()) == {"sandbox"}
    finally:
        await router.aclose()


async def test_provider_override() -> None:
    router = Router(ALL, provider="openai")
    try:
        assert router.provider_for("wan2.6-t2i").name == "openai"
        assert router.provider_for("kling-v2-1").name == "openai"
    finally:
        await router.aclose()
    sandboxed = Router(Credentials(), provider="sandbox")
    assert sandboxed.provider_for("wan2.6-t2i").name == "sandbox"
    with pytest.raises(NotConfigured, match="IMAGEGATE_OPENAI_API_KEY"):
        Router(Credentials(dashscope_api_key="k"), provider="openai").provider_for("wan2.6-t2i")
    with pytest.raises(InvalidRequest, match="provider 'midjourney'"):
        Router(Credentials(), provider="midjourney")
    with pytest.raises(InvalidRequest):
        Router(ALL).by_name("nope")


async def test_fallback_to_sandbox_is_said_plainly() -> None:
    router = Router(Credentials(dashscope_api_key="sk"), fallback_to_sandbox=True)
    try:
        routes = router.describe()
        assert routes["wan2.6-t2i"] == "dashscope"
        assert routes["kling-v2-1"] == "sandbox (no CHANJING_APP_ID, CHANJING_SECRET_KEY)"
        assert routes["wan2.7-image-pro"] == (
            "sandbox (no IMAGEGATE_OPENAI_BASE_URL, IMAGEGATE_OPENAI_API_KEY)"
        )
        assert router.provider_for("kling-v2-1").name == "sandbox"
        assert router.provider_for("wan2.6-t2i").name == "dashscope"
    finally:
        await router.aclose()


def test_unknown_model() -> None:
    with pytest.raises(UnknownModel, match="midjourney-v7"):
        Router(ALL).provider_for("midjourney-v7")


async def test_preview_needs_no_secret() -> None:
    router = Router(Credentials())
    try:
        provider = router.preview("wan2.6-t2i")
        assert provider.name == "dashscope"
        assert router.preview("kling-v2-1").name == "chanjing"
        assert router.preview("wan2.7-image-pro").name == "openai"
    finally:
        await router.aclose()
