"""Several engines on one database (several processes or nodes), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagegate.engine.service import GatewayState, open_gateway
from imagegate.engine.upstreams import SingleUpstream
from imagegate.storage import db
from imagegate.types import TaskStatus
from tests.test_engine_worker import KEY, ScriptedProvider, config, crash, eventually, request
from tests.test_storage_tasks import PG_URL, postgres_reachable


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres])])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str | None]]:
    """Arguments for open_gateway: a SQLite file under data_dir, or a fresh PG schema."""
    if request.param == "sqlite":
        yield {"database_url": None, "schema": None}
        return
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    schema = f"ig_test_{uuid.uuid4().hex[:12]}"
    yield {"database_url": PG_URL, "schema": schema}
    engine = db.open_engine(database_url=PG_URL, schema=schema)
    db.drop_schema(engine, schema)
    engine.dispose()


def node(tmp_path: Path, provider: ScriptedProvider, database: dict[str, str | None]):
    return open_gateway(
        tmp_path / "data",
        providers=SingleUpstream(provider),
        engine_config=config(),
        **database,  # type: ignore[arg-type]
    )


async def test_two_nodes_share_the_work_and_submit_each_task_once(
    tmp_path: Path, database: dict[str, str | None]
) -> None:
    provider = ScriptedProvider(polls_to_finish=2)
    nodes: list[GatewayState] = [node(tmp_path, provider, database) for _ in range(2)]
    for state in nodes:
        await state.start()
    try:
        tasks = [
            await nodes[i % 2].service.submit(request(), owner=KEY, request_id="r", front="x")
            for i in range(10)
        ]
        # any node answers for any task
        done = [await nodes[1].service.wait(t.id, owner=KEY, timeout=10) for t in tasks]
    finally:
        for state in nodes:
            await state.stop()
            state.close()
    assert all(task.status is TaskStatus.SUCCEEDED for task in done)
    assert provider.submits == 10 and provider.submit_calls == 10


async def test_a_crashed_node_s_tasks_are_finished_by_another(
    tmp_path: Path, database: dict[str, str | None]
) -> None:
    gate = asyncio.Event()
    provider = ScriptedProvider(poll_gate=gate)
    dying = node(tmp_path, provider, database)
    await dying.start()
    tasks = [
        await dying.service.submit(request(), owner=KEY, request_id="r", front="x")
        for _ in range(3)
    ]
    await eventually(lambda: provider.submits == 3)
    await eventually(lambda: all(dying.tasks.get(t.id).upstream_task_id for t in tasks))  # type: ignore[union-attr]
    await crash(dying)
    gate.set()
    survivor = node(tmp_path, provider, database)
    await survivor.start()
    try:
        done = [await survivor.service.wait(t.id, owner=KEY, timeout=10) for t in tasks]
    finally:
        await survivor.stop()
        survivor.close()
    assert all(task.status is TaskStatus.SUCCEEDED for task in done)
    assert provider.submits == 3
