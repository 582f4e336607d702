"""Shared pytest configuration: tests never reach the internet."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_vendor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start with no vendor credentials, whatever the developer's shell has."""
    for name in (
        "DASHSCOPE_API_KEY",
        "DASHSCOPE_BASE_URL",
        "CHANJING_APP_ID",
        "CHANJING_SECRET_KEY",
        "CHANJING_BASE_URL",
        "IMAGEGATE_OPENAI_BASE_URL",
        "IMAGEGATE_OPENAI_API_KEY",
        "IMAGEGATE_DATA_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
