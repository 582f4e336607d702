"""Gateway settings: defaults, then a TOML file (``--config``), then the environment, then flags.

The TOML file may hold the keys at top level or under a ``[gateway]`` table::

    [gateway]
    port = 8000
    data_dir = "/var/lib/imagegate"
    redis_url = "redis://127.0.0.1:6379/0"
    [gateway.sandbox]
    latency = 0.5

Each setting also reads ``IMAGEGATE_<NAME>`` from the environment (``IMAGEGATE_DATA_DIR``,
``IMAGEGATE_DATABASE_URL``, ``IMAGEGATE_PORT`` ...). Vendor credentials are not here: they come
from ``imagegate.config.Credentials`` (the vendors' own variable names).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imagegate.errors import InvalidRequest
from imagegate.providers.sandbox import BLOCKED_WORDS

ENV_PREFIX = "IMAGEGATE_"
DEFAULT_DATA_DIR = Path("imagegate-data")


class SandboxSettings(BaseModel):
    """How the built-in sandbox renderer behaves when it serves a model."""

    model_config = ConfigDict(extra="forbid")

    latency: float = Field(default=1.0, ge=0, description="seconds a sandbox task takes")
    failure_rate: float = Field(default=0.0, ge=0, le=1, description="share of tasks that fail")
    blocked_words: list[str] = Field(
        default_factory=lambda: list(BLOCKED_WORDS),
        description="prompts holding one are refused as content rejected (DataInspectionFailed)",
    )

    @field_validator("blocked_words", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """The environment gives one string: ``IMAGEGATE_SANDBOX_BLOCKED_WORDS=a,b``."""
        if isinstance(value, str):
            return [word.strip() for word in value.split(",") if word.strip()]
        return value


class GatewaySettings(BaseModel):
    """Everything ``imagegate serve`` can be told, with the defaults a fresh machine needs."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None  # None: SQLite file inside data_dir
    redis_url: str | None = None  # set: rate limits shared through Redis
    sync_timeout: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    default_qps: float = Field(default=5.0, gt=0)
    default_max_in_flight: int = Field(default=20, ge=1)
    link_ttl: int = Field(default=86400, gt=0, description="signed image link lifetime, s")
    retention_days: float = Field(default=30.0, gt=0)
    timezone: str = "Asia/Shanghai"
    lease_seconds: float = Field(default=30.0, gt=0, description="a dead worker's tasks wait this")
    poll_interval: float | None = Field(default=None, gt=0, description="fixed upstream poll, s")
    max_concurrent: int = Field(default=32, ge=1, description="tasks worked on at once")
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


_ENV_FIELDS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in GatewaySettings.model_fields if name != "sandbox"},
    "sandbox_latency": ("sandbox", "latency"),
    "sandbox_failure_rate": ("sandbox", "failure_rate"),
    "sandbox_blocked_words": ("sandbox", "blocked_words"),
}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, path in _ENV_FIELDS.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None or raw.strip() == "":
            continue
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = raw.strip()
    return values


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    """The gateway table of a TOML file (``[gateway]`` if present, else the top level)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidRequest(f"--config: file {path} does not exist.", field="config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"--config: {path} is not valid TOML: {exc}", field="config") from exc
    table = data.get("gateway", data)
    if not isinstance(table, dict):
        raise InvalidRequest(f"--config: [gateway] in {path} must be a table.", field="config")
    return table


def load_settings(
    config: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> GatewaySettings:
    """Defaults < TOML file < ``IMAGEGATE_*`` environment < ``overrides`` (None is ignored)."""
    values: dict[str, Any] = {}
    if config is not None:
        values = _merge(values, read_config_file(Path(config)))
    values = _merge(values, _from_env(os.environ if env is None else env))
    values = _merge(values, {k: v for k, v in overrides.items() if v is not None})
    try:
        return GatewaySettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidRequest(f"Invalid gateway settings: {problems}", field="config") from exc
