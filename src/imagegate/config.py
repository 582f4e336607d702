"""Vendor credentials and endpoints, from arguments or the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

DASHSCOPE_DEFAULT_BASE = "https://dashscope.aliyuncs.com/api/v1"
CHANJING_DEFAULT_BASE = "https://open-api.chanjing.cc"

#: environment variable of each credential field
ENV_NAMES = {
    "dashscope_api_key": "DASHSCOPE_API_KEY",
    "dashscope_base_url": "DASHSCOPE_BASE_URL",
    "chanjing_app_id": "CHANJING_APP_ID",
    "chanjing_secret_key": "CHANJING_SECRET_KEY",
    "chanjing_base_url": "CHANJING_BASE_URL",
    "openai_base_url": "IMAGEGATE_OPENAI_BASE_URL",
    "openai_api_key": "IMAGEGATE_OPENAI_API_KEY",
}

#: what each vendor needs before imagegate can call it
REQUIRED = {
    "dashscope": ("dashscope_api_key",),
    "chanjing": ("chanjing_app_id", "chanjing_secret_key"),
    "openai": ("openai_base_url", "openai_api_key"),
}


@dataclass(frozen=True)
class Credentials:
    dashscope_api_key: str | None = None
    dashscope_base_url: str = DASHSCOPE_DEFAULT_BASE
    chanjing_app_id: str | None = None
    chanjing_secret_key: str | None = None
    chanjing_base_url: str = CHANJING_DEFAULT_BASE
    openai_base_url: str | None = None
    openai_api_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str | None) -> Credentials:
        """Read every credential from ``env`` (default ``os.environ``); arguments win."""
        source = os.environ if env is None else env
        values: dict[str, str] = {}
        for item in fields(cls):
            value = source.get(ENV_NAMES[item.name])
            if value:
                values[item.name] = value.strip()
        creds = cls(**values)
        given = {key: value for key, value in overrides.items() if value is not None}
        return replace(creds, **given) if given else creds

    def configured(self, vendor: str) -> bool:
        return not self.missing(vendor)

    def missing(self, vendor: str) -> list[str]:
        """Environment variables still to set before ``vendor`` can be called."""
        return [ENV_NAMES[key] for key in REQUIRED.get(vendor, ()) if not getattr(self, key)]
