"""Shared fixtures: a real gateway on 127.0.0.1 and a fresh API key, or a gateway process.

In a test module::

    from tests.gateway_fixtures import Gateway, KeyPair, api_key, gateway, gateway_factory

    __all__ = ["api_key", "gateway", "gateway_factory"]  # fixtures, imported for pytest

    def test_something(gateway, api_key):
        httpx.post(gateway.base_url + "/v1/images/generations",
                   headers={"Authorization": f"Bearer {api_key.secret}"}, json={...})

``gateway`` runs ``create_app(open_state(settings))`` on a real uvicorn server (in a thread)
over a fresh data directory, with the sandbox as the upstream of every model (latency 0) and
tiny poll/lease intervals. ``gateway_factory(**settings)`` builds more, with other settings
(a small ``max_body_bytes``, a Redis limiter ...). ``start_gateway_process`` runs
``python -m imagegate serve`` as a real subprocess, for restart and start-up tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate.config import ENV_NAMES
from imagegate.server.app import create_app, open_state
from imagegate.server.context import ApiKey, GatewayContext
from imagegate.server.settings import GatewaySettings
from tests.fakes.server import ThreadedServer, free_port

ROOT = Path(__file__).resolve().parents[1]

#: settings every test gateway starts from: instant sandbox, quick polls and lease recovery
TEST_SETTINGS: dict[str, Any] = {
    "sandbox": {"latency": 0.0},
    "poll_interval": 0.02,
    "lease_seconds": 3.0,
    "sync_timeout": 20.0,
}


@dataclass(frozen=True)
class KeyPair:
    """An API key as a client holds it: the public app_id and the secret (Bearer token)."""

    app_id: str
    secret: str
    key: ApiKey

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@dataclass
class Gateway:
    """A running in-process gateway."""

    base_url: str
    data_dir: Path
    settings: GatewaySettings
    state: Any
    app: Any
    server: ThreadedServer

    @property
    def ctx(self) -> GatewayContext:
        return self.app.state.ctx

    def new_key(
        self,
        name: str = "test",
        *,
        qps: float = 1000.0,
        max_in_flight: int = 1000,
        models: tuple[str, ...] = (),
    ) -> KeyPair:
        created = self.state.keys.create(name, qps=qps, max_in_flight=max_in_flight, models=models)
        return KeyPair(created.app_id, created.secret, created.key)

    def url(self, path: str) -> str:
        return self.base_url + path


def start_gateway(data_dir: Path, **overrides: Any) -> Gateway:
    """Open a data dir, build the app and serve it on a free port (the caller stops it)."""
    values = {**TEST_SETTINGS, **overrides, "data_dir": data_dir}
    settings = GatewaySettings.model_validate(values)
    state = open_state(settings)
    app = create_app(state, settings=settings)
    server = ThreadedServer(app).start()
    settings = settings.model_copy(update={"port": server.port})
    return Gateway(server.base_url, data_dir, settings, state, app, server)


def stop_gateway(gateway: Gateway) -> None:
    gateway.server.stop()
    gateway.state.close()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """``gateway_factory(**settings)``: a new gateway (own data dir) per call, all stopped after."""
    started: list[Gateway] = []

    def make(**overrides: Any) -> Gateway:
        data_dir = overrides.pop("data_dir", None) or tmp_path / f"gateway-{len(started)}"
        gateway = start_gateway(Path(data_dir), **overrides)
        started.append(gateway)
        return gateway

    yield make
    for gateway in reversed(started):
        stop_gateway(gateway)


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    """A running gateway: sandbox upstream (latency 0), SQLite in a tmp data dir."""
    return gateway_factory()


@pytest.fixture
def api_key(gateway: Gateway) -> KeyPair:
    """A fresh key on ``gateway`` with limits high enough never to get in a test's way."""
    return gateway.new_key()


# -- a gateway as a real process ------------------------------------------------------------


@dataclass
class GatewayProcess:
    """``imagegate serve`` running as a subprocess; its output goes to ``log_path``."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, leases are left to expire (a crash)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM: a graceful stop (leases handed back); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"imagegate serve exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"imagegate serve did not answer /healthz in {timeout}s:\n{self.output()}"
        )


def gateway_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without vendor credentials, plus the test defaults and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES.values()}
    env.pop("IMAGEGATE_DATA_DIR", None)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "IMAGEGATE_SANDBOX_LATENCY": "0",
            "IMAGEGATE_POLL_INTERVAL": "0.05",
            "IMAGEGATE_LEASE_SECONDS": "2",
        }
    )
    env.update(extra or {})
    return env


def launch_gateway(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    args: tuple[str, ...] = (),
    log_path: Path | None = None,
    command: tuple[str, ...] = (sys.executable, "-m", "imagegate"),
) -> GatewayProcess:
    """Start ``imagegate serve`` (not waiting for it); ``command`` may be the console script."""
    port = port or free_port()
    log_path = log_path or data_dir.parent / f"serve-{data_dir.name}-{port}.log"
    full_env = gateway_env(env)
    argv = [*command, "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--data-dir", str(data_dir), *args]
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    return GatewayProcess(process, port, data_dir, log_path, full_env)


@contextmanager
def start_gateway_process(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> Iterator[GatewayProcess]:
    """``imagegate serve`` as a real process on a free port, healthy on entry, killed on exit."""
    gateway = launch_gateway(data_dir, env=env, port=port, args=args)
    try:
        gateway.wait_healthy(timeout)
        yield gateway
    finally:
        gateway.kill()
