"""TaskStore on real SQLite files and (when reachable) a real PostgreSQL on 127.0.0.1:5432."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text

from imagegate.errors import RateLimited
from imagegate.storage import db
from imagegate.storage.tasks import TaskStore, image_to_json
from imagegate.types import (
    GenerationRequest,
    ImageResult,
    SizeSpec,
    Task,
    TaskError,
    TaskStatus,
    Usage,
)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


needs_postgres = pytest.mark.skipif(
    not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432"
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres])])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database: a SQLite file in tmp, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        engine = db.open_engine(tmp_path / "data")
        yield engine
        engine.dispose()
        return
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    schema = f"ig_test_{uuid.uuid4().hex[:12]}"
    engine = db.open_engine(database_url=PG_URL, schema=schema)
    try:
        yield engine
    finally:
        db.drop_schema(engine, schema)
        engine.dispose()


def make_task(owner: str = "ak_one", **changes: object) -> Task:
    request = GenerationRequest(
        model="wan2.6-t2i",
        prompt="a red fox in snow",
        n=2,
        size=SizeSpec(1280, 1280, "1280*1280"),
        seed=42,
        extra={"style": "<auto>"},
    )
    task = Task(id=str(uuid.uuid4()), model="wan2.6-t2i", request=request, owner=owner)
    for name, value in changes.items():
        setattr(task, name, value)
    return task


def test_sqlite_file_is_under_data_dir_in_wal_mode(tmp_path: Path) -> None:
    engine = db.open_engine(tmp_path / "data")
    assert (tmp_path / "data" / "imagegate.db").is_file()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


def test_migrations_are_idempotent(database: Engine) -> None:
    assert db.migrate(database) == len(db.MIGRATIONS)
    assert db.migrate(database) == len(db.MIGRATIONS)
    with db.read(database) as conn:
        rows = conn.execute(select(db.schema_version)).all()
        assert len(rows) == 1
        names = set(inspect(conn).get_table_names())
    assert {"tasks", "api_keys", "access_tokens", "settings", "schema_version"} <= names


def test_a_second_open_of_the_same_file_keeps_the_data(tmp_path: Path) -> None:
    first = db.open_engine(tmp_path)
    store = TaskStore(first)
    task = make_task()
    store.insert(task)
    first.dispose()
    second = db.open_engine(tmp_path)
    assert TaskStore(second).get(task.id) is not None
    second.dispose()


def test_task_round_trip(database: Engine) -> None:
    store = TaskStore(database, blob_path=lambda rel: Path("/blobs") / rel)
    task = make_task(front="dashscope-generation", request_id="req-1", warnings=["w1"])
    store.insert(task)
    loaded = store.get(task.id)
    assert loaded is not None
    assert loaded.request == task.request
    assert loaded.status is TaskStatus.PENDING
    assert loaded.front == "dashscope-generation"
    assert loaded.request_id == "req-1"
    assert loaded.warnings == ["w1"]
    assert loaded.owner == "ak_one"
    assert abs(loaded.submit_time - task.submit_time) < timedelta(milliseconds=1)
    assert loaded.submit_time.tzinfo is not None

    record = store.claim("w", 30)
    assert record is not None and record.task.id == task.id
    image = ImageResult(url="https://upstream/x.png", width=1280, height=1280, seed=42)
    failed = ImageResult(error_code="DataInspectionFailed", error_message="image 2 was blocked")
    assert store.finish(
        task.id,
        "w",
        TaskStatus.SUCCEEDED,
        images=[image_to_json(image, blob="ab/cd/" + "ab" * 32 + ".png"), image_to_json(failed)],
        usage=Usage(image_count=1, size="1280*1280"),
    )
    done = store.get(task.id)
    assert done is not None and done.status is TaskStatus.SUCCEEDED
    assert done.end_time is not None and done.scheduled_time is not None
    assert done.usage == Usage(image_count=1, size="1280*1280")
    assert done.images[0].path == Path("/blobs/ab/cd/" + "ab" * 32 + ".png")
    assert done.images[0].metadata["upstream_url"] == "https://upstream/x.png"
    assert done.images[0].url is None  # served by the gateway, never the vendor's link
    assert done.images[1].error_code == "DataInspectionFailed"
    assert not done.images[1].ok


def test_failed_task_keeps_vendor_code_and_message(database: Engine) -> None:
    store = TaskStore(database)
    task = make_task()
    store.insert(task)
    assert store.claim("w", 30) is not None
    store.finish(task.id, "w", TaskStatus.FAILED, error=TaskError("InvalidParameter", "bad size"))
    loaded = store.get(task.id)
    assert loaded is not None and loaded.error == TaskError("InvalidParameter", "bad size")


def test_claim_is_exclusive_between_two_workers(database: Engine) -> None:
    store = TaskStore(database)
    task = make_task()
    store.insert(task)
    results: list[object] = []
    barrier = threading.Barrier(2)

    def claim(worker: str) -> None:
        barrier.wait()
        results.append(store.claim(worker, 30))

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    claimed = [r for r in results if r is not None]
    assert len(results) == 2 and len(claimed) == 1


def test_many_claimers_take_each_task_once(database: Engine) -> None:
    store = TaskStore(database)
    ids = set()
    for _ in range(12):
        task = make_task()
        store.insert(task)
        ids.add(task.id)
    taken: list[str] = []
    lock = threading.Lock()

    def drain(worker: str) -> None:
        while (record := store.claim(worker, 30)) is not None:
            with lock:
                taken.append(record.task.id)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(taken) == sorted(ids)


def test_expired_lease_can_be_claimed_again_and_old_worker_loses_it(database: Engine) -> None:
    store = TaskStore(database)
    task = make_task()
    store.insert(task)
    assert store.claim("old", 0.05) is not None
    assert store.claim("new", 30) is None  # still leased
    # let the lease run out
    with db.write(database) as conn:
        conn.execute(
            db.tasks.update()
            .where(db.tasks.c.id == task.id)
            .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    record = store.claim("new", 30)
    assert record is not None and record.lease_owner == "new"
    assert not store.renew(task.id, "old", 30)
    assert not store.progress(task.id, "old", TaskStatus.RUNNING, 30)
    assert store.renew(task.id, "new", 30)


def test_upstream_id_is_kept_even_when_the_task_was_canceled_meanwhile(database: Engine) -> None:
    store = TaskStore(database)
    task = make_task()
    store.insert(task)
    assert store.claim("w", 30) is not None
    assert store.mark_submitting(task.id, "w", "sandbox", 30)
    assert store.cancel(task.id, owner="ak_one")
    assert not store.record_upstream(task.id, "w", "up-1", TaskStatus.PENDING)
    record = store.get_record(task.id)
    assert record is not None
    assert record.task.status is TaskStatus.CANCELED
    assert record.task.upstream_task_id == "up-1"
    assert record.attempts == 1


def test_submitting_marker_and_attempts(database: Engine) -> None:
    store = TaskStore(database)
    task = make_task()
    store.insert(task)
    store.claim("w", 30)
    assert store.mark_submitting(task.id, "w", "scripted", 30)
    record = store.get_record(task.id)
    assert record is not None and record.submitting_since is not None
    assert record.task.provider == "scripted"
    assert store.record_upstream(task.id, "w", "up-9", TaskStatus.RUNNING)
    record = store.get_record(task.id)
    assert record is not None
    assert record.submitting_since is None and record.upstream_submit_time is not None
    assert record.task.status is TaskStatus.RUNNING


def test_release_gives_leases_back(database: Engine) -> None:
    store = TaskStore(database)
    for _ in range(3):
        store.insert(make_task())
    for _ in range(3):
        assert store.claim("w", 300) is not None
    assert store.claim("other", 300) is None
    assert store.release("w") == 3
    assert store.claim("other", 300) is not None


def test_list_filters_paging_and_owner(database: Engine) -> None:
    store = TaskStore(database)
    base = datetime.now(UTC) - timedelta(hours=1)
    mine = []
    for i in range(5):
        task = make_task(submit_time=base + timedelta(minutes=i))
        store.insert(task)
        mine.append(task.id)
    other = make_task(owner="ak_two")
    store.insert(other)
    page, total = store.list(owner="ak_one", page=1, page_size=2)
    assert total == 5
    assert [t.id for t in page] == [mine[4], mine[3]]  # newest first
    page3, _ = store.list(owner="ak_one", page=3, page_size=2)
    assert [t.id for t in page3] == [mine[0]]
    ids_page, total_ids = store.list(owner="ak_one", ids=[mine[1], other.id])
    assert total_ids == 1 and ids_page[0].id == mine[1]
    window, total_window = store.list(
        owner="ak_one", start=base + timedelta(minutes=1), end=base + timedelta(minutes=3)
    )
    assert total_window == 3 and [t.id for t in window] == [mine[3], mine[2], mine[1]]
    assert store.list(owner="ak_one", status=TaskStatus.SUCCEEDED) == ([], 0)
    assert store.list(owner="ak_one", model="wan2.2-t2i-flash") == ([], 0)
    assert store.get(other.id, owner="ak_one") is None
    assert store.count_unfinished("ak_one") == 5


def test_in_flight_limit_is_checked_with_the_insert(database: Engine) -> None:
    store = TaskStore(database)
    store.insert(make_task(), max_in_flight=2)
    store.insert(make_task(), max_in_flight=2)
    with pytest.raises(RateLimited, match="limit is 2 tasks in flight"):
        store.insert(make_task(), max_in_flight=2)
    store.insert(make_task(owner="ak_two"), max_in_flight=2)  # other keys are not affected


def test_cancel_only_while_pending(database: Engine) -> None:
    store = TaskStore(database)
    task = make_task()
    store.insert(task)
    assert not store.cancel(task.id, owner="ak_two")
    assert store.claim("w", 30) is not None
    assert store.progress(task.id, "w", TaskStatus.RUNNING, 30, scheduled=True)
    assert not store.cancel(task.id, owner="ak_one")
    pending = make_task()
    store.insert(pending)
    assert store.cancel(pending.id, owner="ak_one", warning="upstream may still run")
    loaded = store.get(pending.id)
    assert loaded is not None and loaded.status is TaskStatus.CANCELED
    assert loaded.warnings == ["upstream may still run"]


@needs_postgres
@pytest.mark.postgres
def test_postgres_claim_uses_skip_locked() -> None:
    """A row locked by one open transaction is skipped, not waited for, by another claimer."""
    schema = f"ig_test_{uuid.uuid4().hex[:12]}"
    engine = db.open_engine(database_url=PG_URL, schema=schema)
    try:
        store = TaskStore(engine)
        first, second = make_task(), make_task(submit_time=datetime.now(UTC) + timedelta(1))
        store.insert(first)
        store.insert(second)
        with engine.connect() as locker, locker.begin():
            locker.execute(text("SELECT id FROM tasks WHERE id = :id FOR UPDATE"), {"id": first.id})
            record = store.claim("w", 30)  # would block without SKIP LOCKED
            assert record is not None and record.task.id == second.id
    finally:
        db.drop_schema(engine, schema)
        engine.dispose()
