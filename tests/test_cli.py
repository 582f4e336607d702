"""The ``imagegate`` CLI, in process (CliRunner) and as the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from imagegate.catalog import load_catalog
from imagegate.cli import app
from tests.fakes.dashscope_vendor import FakeDashScope
from tests.fakes.server import serve

runner = CliRunner()
SCRIPT = shutil.which("imagegate", path=str(Path(sys.executable).parent))


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env=env)


def script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert SCRIPT, "the imagegate console script is not installed in this venv"
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def pairs(text: str) -> Any:
    """JSON with key order kept: objects become lists of (key, value) pairs."""
    return json.loads(text, object_pairs_hook=list)


def split_dry_run(stdout: str) -> tuple[str, dict[str, str], Any]:
    head, _, body = stdout.partition("\n\n")
    request_line, *header_lines = head.splitlines()
    headers = dict(line.split(": ", 1) for line in header_lines)
    return request_line, headers, pairs(body)


# -- models ------------------------------------------------------------------------------------


def test_models_lists_every_model() -> None:
    result = invoke("models")
    assert result.exit_code == 0, result.output
    for model in load_catalog():
        assert model.name in result.stdout
    assert "1280*1280 to 1440*1440" in result.stdout
    assert "not configured (set DASHSCOPE_API_KEY)" in result.stdout


def test_models_json_is_the_catalog() -> None:
    result = invoke("models", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [model.to_dict() for model in load_catalog()]


# -- generate with the sandbox ---------------------------------------------------------------


def test_size_rule_breach_exits_2_naming_size_and_rule(tmp_path: Path) -> None:
    result = invoke(
        "generate", "a flower shop", "--model", "wan2.6-t2i", "--size", "512*512", "--sandbox"
    )
    assert result.exit_code == 2
    assert "size" in result.stderr and "1280*1280 to 1440*1440" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_two_sandbox_images_of_16_9(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("a flower shop", "--model", "wan2.6-t2i", "--size", "16:9", "-n", "2")
    result = invoke("generate", *args, "--sandbox", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert len(files) == 2
    assert [Image.open(f).size for f in files] == [(1696, 960), (1696, 960)]
    assert all(str(f) in result.stdout for f in files)
    assert "sandbox" in result.stderr  # labelled as such


def test_json_result(tmp_path: Path) -> None:
    result = invoke(
        "generate", "x", "-m", "kling-v2-1", "--sandbox", "--json", "--out", str(tmp_path),
        "--ref-image", "https://example.com/ref.jpg", "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 2  # kling-v2-1 takes no seed
    assert "seed" in result.stderr
    result = invoke(
        "generate", "x", "-m", "kling-v2-1", "--sandbox", "--json", "--out", str(tmp_path),
        "--ref-image", "https://example.com/ref.jpg", "--clarity", "2048",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "SUCCEEDED" and data["sandbox"] is True
    assert data["task_id"].startswith("sandbox:")
    assert [(i["width"], i["height"]) for i in data["images"]] == [(2048, 2048)]
    assert any("ref_img_url" in warning for warning in data["warnings"])
    assert Path(data["images"][0]["path"]).exists()


def test_exit_codes_with_the_sandbox(tmp_path: Path) -> None:
    base = ("generate", "x", "--model", "wan2.6-t2i", "-n", "1", "--out", str(tmp_path))
    assert invoke(*base).exit_code == 3  # no DASHSCOPE_API_KEY
    failed = invoke(*base, "--sandbox", "--sandbox-failure-rate", "1")
    assert failed.exit_code == 4
    assert "SandboxInjectedFailure" in failed.stderr
    slow = invoke(*base, "--sandbox", "--sandbox-latency", "5", "--timeout", "0.2")
    assert slow.exit_code == 5
    assert "timeout" in slow.stderr
    assert invoke(*base, "--model", "midjourney").exit_code == 2
    assert invoke("generate", "x").exit_code == 2  # --model missing: usage error
    assert invoke(*base, "--provider", "nope").exit_code == 2


def test_serve_without_the_gateway_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # as in an installation without imagegate.server.commands: importing it fails
    monkeypatch.setitem(sys.modules, "imagegate.server.commands", None)
    result = invoke("serve")
    assert result.exit_code == 1
    assert "imagegate.server.commands" in result.stderr
    assert invoke("keys", "list").exit_code == 1


# -- dry runs of each seed page's own example ------------------------------------------------

CJ_BOWL = "生成一张微缩模型风格的创意场景图。画面中央是一个古典青花瓷碗,碗里盛着雪白的汤圆,最上面一颗破皮流出黑芝麻馅。"  # noqa: E501
FLOWER = "A flower shop with exquisite windows, a beautiful wooden door, and flowers on display"
REF = "https://res.chanjing.cc/chanjing/res/aigc_creation/photo/xxx.jpg"
DS_BODY = (
    '{\n  "model": "wan2.6-t2i",\n  "input": {\n    "messages": [\n      {\n        "role": '
    '"user",\n        "content": [\n          {\n            "text": "' + FLOWER + '"\n'
    '          }\n        ]\n      }\n    ]\n  },\n  "parameters": {\n    "prompt_extend": '
    'true,\n    "watermark": false,\n    "n": 1,\n    "negative_prompt": "",\n    "size": '
    '"1280*1280"\n  }\n}'
)
DS_ARGS = ["--prompt-extend", "--no-watermark", "-n", "1", "--negative", "", "--size", "1280*1280"]

#: (case, page body verbatim, CLI arguments, URL path, header expectations, warning expected)
SEED_CASES: list[tuple[str, str, list[str], str, dict[str, str | None], bool]] = [
    (
        "000-curl",
        '{\n    "ref_prompt": "' + CJ_BOWL + '",\n    "creation_type": 3,\n    "aspect_ratio": '
        '"9:16",\n    "number_of_images": 1,\n    "quality_mode": "std",\n    "model_code": '
        '"wan2.2-t2i"\n}',
        ["--model", "wan2.2-t2i", "--size", "9:16", "-n", "1", "--quality", "std"],
        "/open/v1/ai_creation/task/submit",
        {"Content-Type": "application/json"},
        False,
    ),
    (
        "000-body",
        '{\n  "ref_prompt": "高级感室内设计渲染图,现代极简风,真实材质表现",\n'
        '  "creation_type": 3,\n'
        '  "aspect_ratio": "9:16",\n  "number_of_images": 1,\n  "quality_mode": "std",\n'
        '  "model_code": "wan2.2-t2i"\n}',
        ["--model", "wan2.2-t2i", "--aspect-ratio", "9:16", "-n", "1", "--quality", "std"],
        "/open/v1/ai_creation/task/submit",
        {},
        False,
    ),
    (
        "001-async",
        DS_BODY,
        ["--model", "wan2.6-t2i", *DS_ARGS],
        "/api/v1/services/aigc/image-generation/generation",
        {"X-DashScope-Async": "enable", "Authorization": "Bearer $DASHSCOPE_API_KEY"},
        False,
    ),
    (
        "002-sync",
        DS_BODY,
        ["--model", "wan2.6-t2i", "--sync", *DS_ARGS],
        "/api/v1/services/aigc/multimodal-generation/generation",
        {"X-DashScope-Async": None, "Authorization": "Bearer $DASHSCOPE_API_KEY"},
        False,
    ),
    (
        "003-default",
        '{\r\n "model": "wan2.7-image-pro",\r\n '
        '"prompt": "一间有着精致窗户的花店,漂亮的木质门,摆放着花朵"\r\n}',
        ["--model", "wan2.7-image-pro"],
        "/v1/images/generations",
        {"Authorization": "Bearer $IMAGEGATE_OPENAI_API_KEY"},
        False,
    ),
    (
        "003-4K",
        '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "雪山湖泊日出,写实摄影",\r\n '
        '"size": "4K"\r\n}',
        ["--model", "wan2.7-image-pro", "--size", "4K"],
        "/v1/images/generations",
        {},
        False,
    ),
    (
        "003-pixels",
        '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "宽银幕城市夜景",\r\n "size": '
        '"1920*1080",\r\n "watermark": false\r\n}',
        ["--model", "wan2.7-image-pro", "--size", "1920*1080", "--no-watermark"],
        "/v1/images/generations",
        {},
        False,
    ),
    (
        "003-seed",
        '{\r\n "model": "wan2.7-image-pro",\r\n "prompt": "相同种子复现测试,红色玫瑰",\r\n "size": '
        '"2K",\r\n "n": 1,\r\n "watermark": false,\r\n "seed": 42\r\n}',
        [
            *("--model", "wan2.7-image-pro", "--size", "2K", "-n", "1"),
            *("--no-watermark", "--seed", "42"),
        ],
        "/v1/images/generations",
        {},
        False,
    ),
    (
        "004-body",
        '{\n  "ref_img_url": [\n    "' + REF + '"\n  ],\n  "ref_prompt": "少女风时尚海报,柔光,'
        '杂志封面质感",\n  "creation_type": 3,\n  "aspect_ratio": "3:4",\n  "clarity": 2048,\n'
        '  "number_of_images": 1,\n  "model_code": "kling-v2-1"\n}',
        [
            *("--model", "kling-v2-1", "--ref-image", REF),
            *("--size", "3:4", "--clarity", "2048", "-n", "1"),
        ],
        "/open/v1/ai_creation/task/submit",
        {},
        True,
    ),
    (
        "004-curl",
        '{\n    "ref_prompt": "' + CJ_BOWL + '",\n    "creation_type": 3,\n    "aspect_ratio": '
        '"9:16",\n    "clarity": 2048,\n    "number_of_images": 1,\n    "model_code": '
        '"kling-v2-1"\n}',
        ["--model", "kling-v2-1", "--size", "9:16", "--clarity", "2048", "-n", "1"],
        "/open/v1/ai_creation/task/submit",
        {},
        False,
    ),
]


def _prompt(page: dict[str, Any]) -> str:
    if "ref_prompt" in page:
        return str(page["ref_prompt"])
    if "prompt" in page:
        return str(page["prompt"])
    return str(page["input"]["messages"][0]["content"][0]["text"])


@pytest.mark.parametrize(
    ("case", "page_body", "args", "path", "headers", "warns"),
    SEED_CASES,
    ids=[case[0] for case in SEED_CASES],
)
def test_dry_run_prints_the_page_body(
    case: str,
    page_body: str,
    args: list[str],
    path: str,
    headers: dict[str, str | None],
    warns: bool,
) -> None:
    page = json.loads(page_body)
    expected = pairs(page_body)
    if case == "004-body":  # the ruling: ref_img_url is not forwarded, and a warning says so
        page.pop("ref_img_url")
        expected = [item for item in expected if item[0] != "ref_img_url"]
    result = invoke("generate", _prompt(page), *args, "--dry-run")
    assert result.exit_code == 0, result.output
    request_line, shown, body = split_dry_run(result.stdout)
    method, url = request_line.split(" ", 1)
    assert method == "POST" and url.endswith(path), request_line
    assert body == expected  # same keys, same values, same order as the page
    for name, value in headers.items():
        assert shown.get(name) == value, (name, shown)
    assert "sk-" not in result.stdout
    if warns:
        assert "warning:" in result.stderr and "ref_img_url" in result.stderr
    else:
        assert "warning:" not in result.stderr


def test_dry_run_json_and_sandbox() -> None:
    result = invoke("generate", "x", "-m", "wan2.6-t2i", "-n", "1", "--dry-run", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["provider"] == "dashscope" and data["call"]["method"] == "POST"
    sandboxed = invoke("generate", "x", "-m", "wan2.6-t2i", "--sandbox", "--dry-run")
    assert sandboxed.exit_code == 0 and "no HTTP request" in sandboxed.stderr
    assert invoke("generate", "x", "-m", "wan2.5-t2i-preview", "--sync", "--dry-run").exit_code == 2


# -- the installed console script, as a real process --------------------------------------------


def test_console_script_models_and_size_error() -> None:
    listed = script("models")
    assert listed.returncode == 0, listed.stderr
    assert all(model.name in listed.stdout for model in load_catalog())
    bad = script(
        "generate", "a flower shop", "--model", "wan2.6-t2i", "--size", "512*512", "--sandbox"
    )
    assert bad.returncode == 2
    assert "size" in bad.stderr and "1280*1280 to 1440*1440" in bad.stderr


def test_console_script_generates_two_pngs(tmp_path: Path) -> None:
    done = script(
        "generate", "a flower shop", "--model", "wan2.6-t2i", "--size", "16:9", "-n", "2",
        "--sandbox", "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 2 and len(list(tmp_path.iterdir())) == 2
    assert [Image.open(f).size for f in files] == [(1696, 960), (1696, 960)]


def test_console_script_exit_codes(tmp_path: Path) -> None:
    base = ("generate", "x", "--model", "wan2.6-t2i", "-n", "1", "--out", str(tmp_path))
    assert script(*base).returncode == 3
    assert script(*base, "--sandbox", env={"IMAGEGATE_SANDBOX_FAILURE_RATE": "1"}).returncode == 4
    slow = script(*base, "--sandbox", "--timeout", "0.3", env={"IMAGEGATE_SANDBOX_LATENCY": "9"})
    assert slow.returncode == 5


def test_console_script_dry_run_needs_no_key() -> None:
    shown = script("generate", FLOWER, "--model", "wan2.6-t2i", *DS_ARGS, "--sync", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    _line, _headers, body = split_dry_run(shown.stdout)
    assert body == pairs(DS_BODY)


# -- against the DashScope fake: real auth and upstream failures ------------------------------


@pytest.fixture
def dashscope_env() -> Iterator[tuple[FakeDashScope, dict[str, str]]]:
    fake = FakeDashScope("sk-fake", polls_to_finish=2)
    with serve(fake.app) as server:
        yield (
            fake,
            {
                "DASHSCOPE_API_KEY": "sk-fake",
                "DASHSCOPE_BASE_URL": f"{server.base_url}/api/v1",
                "IMAGEGATE_POLL_INTERVAL": "0.01",
            },
        )


def test_vendor_generate_and_failures(
    dashscope_env: tuple[FakeDashScope, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = dashscope_env
    base = ("generate", "a flower shop", "--model", "wan2.6-t2i", "-n", "1", "--out", str(tmp_path))
    done = script(*base, env=env)
    assert done.returncode == 0, done.stderr
    assert [Image.open(f).size for f in tmp_path.glob("*.png")] == [(1280, 1280)]
    assert fake.submit_count() == 1
    assert script(*base, env={**env, "DASHSCOPE_API_KEY": "sk-wrong"}).returncode == 3
    fake.plan_next("fail", "InternalError.Algo", "Algorithm process error.")
    failed = invoke(*base, env=env)
    assert failed.exit_code == 4
    assert "InternalError.Algo" in failed.stderr
