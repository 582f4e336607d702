"""``imagegate serve`` as a real process: what it prints, and that ``kill -9`` loses nothing.

The restart test puts the gateway in front of a separate fake DashScope process (the vendor's
wire shapes, its own state file), submits tasks, SIGKILLs the gateway while the tasks are
RUNNING upstream, starts it again on the same data directory, and checks that every task ends
SUCCEEDED with its image and that the fake saw each task submitted exactly once.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.server import free_port
from tests.gateway_fixtures import ROOT, gateway_env, launch_gateway, start_gateway_process

FAKE_KEY = "sk-fake-restart"
CONSOLE_SCRIPT = (str(Path(sys.executable).parent / "imagegate"),)


@dataclass
class FakeVendor:
    process: subprocess.Popen[bytes]
    base_url: str

    def state(self) -> dict[str, Any]:
        return httpx.get(self.base_url + "/_fake/state", timeout=5).json()  # type: ignore[no-any-return]

    def script(self, **body: Any) -> None:
        httpx.post(self.base_url + "/_fake/script", json=body, timeout=5).raise_for_status()


@pytest.fixture
def dashscope_vendor(tmp_path: Path) -> Iterator[FakeVendor]:
    """``python -m tests.fakes.dashscope_vendor`` as its own process, state kept in a file."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.fakes.dashscope_vendor", "--port", str(port)]
    argv += ["--state", str(tmp_path / "fake-dashscope.json"), "--api-key", FAKE_KEY]
    argv += ["--polls", "2"]
    log = (tmp_path / "fake-dashscope.log").open("wb")
    process = subprocess.Popen(argv, cwd=ROOT, env=gateway_env(), stdout=log, stderr=log)
    fake = FakeVendor(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (tmp_path / "fake-dashscope.log").read_text()
            try:
                fake.state()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the fake DashScope did not start"
                time.sleep(0.05)
        yield fake
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def printed_key(output: str) -> str:
    match = re.search(r"key:\s+(sk-ig-\S+)", output)
    assert match, f"no key in the start-up output:\n{output}"
    return match.group(1)


# -- start-up output ----------------------------------------------------------------------------


def test_serve_prints_url_first_key_once_and_says_sandbox_plainly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    gateway = launch_gateway(data_dir, command=CONSOLE_SCRIPT)
    try:
        gateway.wait_healthy()
        out = gateway.output()
        assert f"http://127.0.0.1:{gateway.port}" in out
        assert re.search(r"app_id:\s+ak_[0-9a-f]+", out)
        assert "shown once" in out
        key = printed_key(out)
        assert "every model is served by the SANDBOX" in out
        assert "NOT the real model" in out
        assert re.search(r"wan2\.6-t2i\s+│\s+SANDBOX \(no DASHSCOPE_API_KEY\)", out)
        assert str(data_dir.resolve()) in out
        models = httpx.get(
            gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}
        )
        assert models.status_code == 200
        # SIGTERM: a graceful stop (uvicorn re-raises the signal once shut down)
        assert gateway.terminate() in (0, -15)
        assert "Application shutdown complete" in gateway.output()
    finally:
        gateway.kill()

    with start_gateway_process(data_dir) as again:
        out = again.output()
        assert "1 active API key" in out
        assert "sk-ig-" not in out  # a key is shown only when it is created
        assert key not in out


def test_serve_refuses_a_port_in_use_clearly(tmp_path: Path) -> None:
    with start_gateway_process(tmp_path / "a") as first:
        taken = subprocess.run(
            [*CONSOLE_SCRIPT, "serve", "--port", str(first.port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=gateway_env(),
        )
    assert taken.returncode == 1
    assert f"cannot listen on 127.0.0.1:{first.port}" in taken.stderr


def test_serve_takes_port_and_data_dir_from_config_and_environment(tmp_path: Path) -> None:
    """With no --port / --data-dir flags, the config file and IMAGEGATE_* variables decide."""
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nport = {free_port()}\ndata_dir = "{tmp_path / "unused"}"\n')
    env = gateway_env({"IMAGEGATE_PORT": str(port), "IMAGEGATE_DATA_DIR": str(tmp_path / "env")})
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*CONSOLE_SCRIPT, "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert f"imagegate gateway on http://127.0.0.1:{port}" in log_path.read_text()
    assert (tmp_path / "env").is_dir()
    assert not (tmp_path / "unused").exists()


# -- the restart test -------------------------------------------------------------------------


SUBMITS = [
    (
        "/api/v1/services/aigc/image-generation/generation",
        {
            "model": "wan2.6-t2i",
            "input": {"messages": [{"role": "user", "content": [{"text": f"restart {i}"}]}]},
            "parameters": {"n": 1, "size": "1280*1280"},
        },
    )
    for i in range(3)
] + [
    (
        "/api/v1/services/aigc/text2image/image-synthesis",
        {
            "model": "wan2.1-t2i-turbo",
            "input": {"prompt": f"restart {i}"},
            "parameters": {"n": 1, "size": "1024*1024"},
        },
    )
    for i in range(3, 5)
]


def test_kill_9_with_tasks_in_flight_loses_nothing_and_submits_nothing_twice(
    tmp_path: Path, dashscope_vendor: FakeVendor
) -> None:
    data_dir = tmp_path / "data"
    env = {
        "DASHSCOPE_API_KEY": FAKE_KEY,
        "DASHSCOPE_BASE_URL": dashscope_vendor.base_url + "/api/v1",
    }
    dashscope_vendor.script(hold=True)  # upstream tasks stay RUNNING until released

    first = launch_gateway(data_dir, env=env)
    try:
        first.wait_healthy()
        out = first.output()
        assert re.search(r"wan2\.6-t2i\s+│\s+dashscope", out), out
        assert re.search(r"kling-v2-1\s+│\s+SANDBOX", out), out
        headers = {"Authorization": f"Bearer {printed_key(out)}", "X-DashScope-Async": "enable"}
        task_ids = []
        for path, body in SUBMITS:
            answer = httpx.post(first.base_url + path, json=body, headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["output"]["task_status"] == "PENDING"
            task_ids.append(answer.json()["output"]["task_id"])

        # in flight: every task submitted upstream and being polled, none finished
        wait_for(
            lambda: dashscope_vendor.state()["hits"].get("task", 0) >= 2 * len(SUBMITS),
            20,
            "the gateway to poll every upstream task",
        )
        upstream = dashscope_vendor.state()
        assert upstream["submits"] == len(SUBMITS)
        assert set(upstream["tasks"].values()) == {"RUNNING"}
        first.kill()
    finally:
        first.kill()

    dashscope_vendor.script(hold=False)
    with start_gateway_process(data_dir, env=env) as second:
        assert "sk-ig-" not in second.output()  # the key from the first start still works

        def all_done() -> list[dict[str, Any]] | None:
            outputs = [
                httpx.get(f"{second.base_url}/api/v1/tasks/{task_id}", headers=headers).json()[
                    "output"
                ]
                for task_id in task_ids
            ]
            statuses = {o["task_status"] for o in outputs}
            assert statuses <= {"PENDING", "RUNNING", "SUCCEEDED"}, outputs
            return outputs if statuses == {"SUCCEEDED"} else None

        outputs = wait_for(all_done, 30, "every task to finish after the restart")
        for output in outputs:
            url = (output.get("results") or [{}])[0].get("url") or (
                output["choices"][0]["message"]["content"][0]["image"]
            )
            assert url.startswith(second.base_url + "/files/"), url
            image = httpx.get(url)
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(image.content)).format == "PNG"

    upstream = dashscope_vendor.state()
    assert upstream["submits"] == len(SUBMITS)
    assert upstream["by_prompt"] == {f"restart {i}": 1 for i in range(len(SUBMITS))}
    assert set(upstream["tasks"].values()) == {"SUCCEEDED"}
