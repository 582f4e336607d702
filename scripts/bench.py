"""Speed and memory figures for imagegate (``make bench``).

Measures, on this machine and on 127.0.0.1 only:

1. validation: requests checked per second by the one validator (no I/O);
2. sandbox rendering: seconds per PNG at the sizes the catalog allows;
3. the gateway, run as a real ``imagegate serve`` process with the sandbox upstream:
   - DashScope async submits per second (accept, validate, queue, answer) and their latency,
     then how long until every one of those tasks has finished (render, store);
   - OpenAI-compatible synchronous generations end to end (render, store, signed URL), on an
     idle queue;
   - the server's peak resident memory (VmHWM) after the load.

Every phase is bounded in count and time and stops by itself. Prints a table and, with
``--json``, the same figures as data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from imagegate.catalog import load_catalog
from imagegate.catalog.validate import build_request, validate
from imagegate.providers.sandbox_render import render_png

BIN = Path(sys.executable).parent
UNLIMITED = ("--qps", "100000", "--max-in-flight", "100000")
HARD_LIMIT_S = 120.0  # no phase of the gateway bench may run longer than this


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def bench_validation(rounds: int) -> dict[str, Any]:
    catalog = load_catalog()
    cases = [
        ("wan2.6-t2i", {"size": "1280*1280", "n": 2}),
        ("wan2.2-t2i-flash", {"size": "1024x768", "n": 4, "seed": 42}),
        ("wan2.7-image-pro", {"size": "2K", "n": 1}),
        ("kling-v2-1", {"aspect_ratio": "16:9", "clarity": 2048}),
        ("wan2.6-t2i", {"size": "16:9"}),
    ]
    start = time.perf_counter()
    for _ in range(rounds):
        for model, options in cases:
            validate(build_request(model, "a flower shop at dusk", **options), catalog=catalog)
    elapsed = time.perf_counter() - start
    count = rounds * len(cases)
    return {"requests": count, "per_second": count / elapsed, "us_each": elapsed / count * 1e6}


def bench_render(sizes: list[tuple[int, int]], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for width, height in sizes:
        times = []
        size_bytes = 0
        for i in range(repeats):
            start = time.perf_counter()
            size_bytes = len(render_png("a flower shop", 1000 + i, width, height))
            times.append(time.perf_counter() - start)
        rows.append(
            {
                "size": f"{width}*{height}",
                "seconds_median": statistics.median(times),
                "png_bytes": size_bytes,
            }
        )
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Gateway:
    """A real ``imagegate serve`` in a temporary data directory, stopped on exit."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="imagegate-bench-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "IMAGEGATE_DATA_DIR": str(self.dir),
            "IMAGEGATE_SANDBOX_LATENCY": "0",
            "IMAGEGATE_POLL_INTERVAL": "0.05",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.key = ""

    def __enter__(self) -> Gateway:
        created = subprocess.run(
            [str(BIN / "imagegate"), "keys", "create", "--json", "--name", "bench", *UNLIMITED],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.key = json.loads(created.stdout.strip().splitlines()[-1])["key"]
        self.process = subprocess.Popen(
            [str(BIN / "imagegate"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the gateway did not answer /healthz within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


async def _run(
    count: int, concurrency: int, call: Callable[[int], Awaitable[None]]
) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        nonlocal failures
        while not queue.empty():
            i = queue.get_nowait()
            start = time.perf_counter()
            try:
                await call(i)
            except Exception:
                failures += 1
            else:
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(concurrency))), timeout=HARD_LIMIT_S
    )
    elapsed = time.perf_counter() - start
    return {
        "requests": count,
        "concurrency": concurrency,
        "failures": failures,
        "per_second": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.5) * 1000 if latencies else None,
        "p95_ms": _percentile(latencies, 0.95) * 1000 if latencies else None,
    }


async def bench_gateway(gateway: Gateway, submits: int, syncs: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {gateway.key}"}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=headers, timeout=60, limits=limits
    ) as http:
        task_ids: list[str] = []

        async def submit(i: int) -> None:
            response = await http.post(
                "/api/v1/services/aigc/text2image/image-synthesis",
                headers={"X-DashScope-Async": "enable"},
                json={
                    "model": "wan2.2-t2i-flash",
                    "input": {"prompt": f"bench {i}"},
                    "parameters": {"size": "512*512", "n": 1},
                },
            )
            response.raise_for_status()
            task_ids.append(response.json()["output"]["task_id"])

        async def generate(i: int) -> None:
            response = await http.post(
                "/v1/images/generations",
                json={"model": "wan2.7-image-pro", "prompt": f"bench {i}", "size": "1K"},
            )
            response.raise_for_status()
            assert response.json()["data"][0]["url"]

        started = time.perf_counter()
        async_submit = await _run(submits, 16, submit)
        # the queued tasks are worked off before the sync phase, so it does not wait behind them
        drained = await _drain(http, task_ids)
        drain = {
            "tasks": len(task_ids),
            "finished": drained,
            "seconds": time.perf_counter() - started,
        }
        sync_generate = await _run(syncs, 4, generate)
    return {
        "dashscope_async_submit": async_submit,
        "async_tasks_done": drain,
        "openai_sync_generate": sync_generate,
    }


async def _drain(http: httpx.AsyncClient, task_ids: list[str]) -> int:
    """Poll the tasks until all have ended (or the hard limit passes); how many ended.

    Tasks are worked on roughly in submit order, so each round reads from the oldest pending
    one and stops at the first that is still running: the polling stays a light load.
    """
    pending = list(task_ids)
    deadline = time.monotonic() + HARD_LIMIT_S
    while pending and time.monotonic() < deadline:
        answer = await http.get(f"/api/v1/tasks/{pending[0]}")
        if answer.json()["output"]["task_status"] in ("PENDING", "RUNNING"):
            await asyncio.sleep(0.1)
        else:
            pending.pop(0)
    return len(task_ids) - len(pending)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    scale = 0.1 if args.quick else 1.0
    figures: dict[str, Any] = {
        "validation": bench_validation(int(4000 * scale) or 1),
        "render": bench_render(
            [(512, 512), (1280, 1280), (1696, 960), (2048, 2048), (4096, 4096)],
            1 if args.quick else 3,
        ),
    }
    with Gateway() as gateway:
        assert gateway.process is not None
        figures["gateway_idle_rss_mib"] = _peak_rss_mib(gateway.process.pid)
        figures["gateway"] = asyncio.run(
            bench_gateway(gateway, int(400 * scale) or 1, int(40 * scale) or 1)
        )
        figures["gateway_peak_rss_mib"] = _peak_rss_mib(gateway.process.pid)

    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    validation = figures["validation"]
    print(
        f"validation: {validation['per_second']:,.0f} requests/s "
        f"({validation['us_each']:.1f} us each, {validation['requests']} requests)"
    )
    for row in figures["render"]:
        print(
            f"sandbox render {row['size']:>10}: {row['seconds_median'] * 1000:8.1f} ms "
            f"({row['png_bytes'] / 1024:,.0f} KiB PNG)"
        )
    gateway_rows = dict(figures["gateway"])
    drain = gateway_rows.pop("async_tasks_done")
    print(
        f"gateway async tasks done end to end: {drain['finished']} of {drain['tasks']} in "
        f"{drain['seconds']:.1f} s ({drain['finished'] / drain['seconds']:.1f} tasks/s: submit, "
        "render, store)"
    )
    for name, row in gateway_rows.items():
        print(
            f"gateway {name}: {row['per_second']:.1f}/s, p50 {row['p50_ms']:.1f} ms, "
            f"p95 {row['p95_ms']:.1f} ms ({row['requests']} requests, "
            f"concurrency {row['concurrency']}, {row['failures']} failed)"
        )
    print(
        f"gateway resident memory: {figures['gateway_idle_rss_mib']:.0f} MiB at start, "
        f"{figures['gateway_peak_rss_mib']:.0f} MiB peak"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
