"""Result images fetched over real HTTP (a loopback server) into the BlobStore."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imagegate.engine.results import outcome_of
from imagegate.storage.blobs import BlobStore
from imagegate.types import ImageResult, TaskError, TaskStatus, UpstreamState, Usage
from tests.fakes.server import serve
from tests.test_engine_worker import ScriptedProvider, png


def image_server(fail_first: int = 0, always_fail: frozenset[str] = frozenset()) -> Starlette:
    """Serves /img/<name>.png; the first ``fail_first`` requests of each name answer 500."""
    seen: Counter[str] = Counter()

    async def image(request: Request) -> Response:
        name = request.path_params["name"]
        seen[name] += 1
        if name in always_fail or seen[name] <= fail_first:
            return Response("upstream hiccup", status_code=500)
        return Response(png(int(name)), media_type="image/png")

    app = Starlette(routes=[Route("/img/{name}.png", image)])
    app.state.seen = seen
    return app


async def test_images_are_downloaded_with_retries(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    app = image_server(fail_first=1)
    with serve(app) as server:
        state = UpstreamState(
            "up-1",
            TaskStatus.SUCCEEDED,
            images=tuple(ImageResult(url=f"{server.base_url}/img/{i}.png") for i in (1, 2)),
            usage=Usage(2, "16*16"),
        )
        outcome = await outcome_of(state, ScriptedProvider(), blobs, download_delay=0.01)
    assert outcome.status is TaskStatus.SUCCEEDED
    assert [image["blob"] is not None for image in outcome.images] == [True, True]
    for image in outcome.images:
        assert blobs.resolve(image["blob"]) is not None
        assert image["upstream_url"].startswith(server.base_url)
        assert image["metadata"]["sha256"] in image["blob"]
    assert app.state.seen == {"1": 2, "2": 2}
    assert outcome.usage == Usage(2, "16*16")
    assert list(blobs.tmp_dir.iterdir()) == []


async def test_a_download_that_keeps_failing_is_kept_as_a_failed_image(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    app = image_server(always_fail=frozenset({"2"}))
    with serve(app) as server:
        state = UpstreamState(
            "up-1",
            TaskStatus.SUCCEEDED,
            images=tuple(ImageResult(url=f"{server.base_url}/img/{i}.png") for i in (1, 2)),
        )
        outcome = await outcome_of(
            state, ScriptedProvider(), blobs, download_attempts=2, download_delay=0.01
        )
    assert outcome.status is TaskStatus.SUCCEEDED
    good, bad = outcome.images
    assert good["blob"] and bad["blob"] is None
    assert bad["error_code"] == "download_failed" and "HTTP 500" in bad["error_message"]
    assert app.state.seen["2"] == 2
    assert outcome.usage == Usage(image_count=1)


async def test_no_stored_image_means_failed(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    app = image_server(always_fail=frozenset({"1"}))
    with serve(app) as server:
        state = UpstreamState(
            "up-1",
            TaskStatus.SUCCEEDED,
            images=(ImageResult(url=f"{server.base_url}/img/1.png"),),
        )
        outcome = await outcome_of(
            state, ScriptedProvider(), blobs, download_attempts=1, download_delay=0.01
        )
    assert outcome.status is TaskStatus.FAILED
    assert outcome.error is not None and outcome.error.code == "download_failed"


async def test_terminal_states_without_images(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    provider = ScriptedProvider()
    canceled = await outcome_of(UpstreamState("u", TaskStatus.CANCELED), provider, blobs)
    assert canceled.status is TaskStatus.CANCELED
    unknown = await outcome_of(UpstreamState("u", TaskStatus.UNKNOWN), provider, blobs)
    assert unknown.status is TaskStatus.FAILED
    assert unknown.error is not None and unknown.error.code == "UpstreamTaskUnknown"
    failed = await outcome_of(
        UpstreamState("u", TaskStatus.FAILED, error=TaskError("IPInfringementSuspect", "no")),
        provider,
        blobs,
    )
    assert failed.error == TaskError("IPInfringementSuspect", "no")
    empty = await outcome_of(UpstreamState("u", TaskStatus.SUCCEEDED), provider, blobs)
    assert empty.status is TaskStatus.FAILED
