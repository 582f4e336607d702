"""API keys (hashed, revocable) and Chanjing access tokens."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from imagegate.storage import db
from imagegate.storage.keys import SqlKeyStore


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = db.open_engine(tmp_path)
    yield engine
    engine.dispose()


def test_secret_is_stored_only_as_its_hash(engine: Engine) -> None:
    keys = SqlKeyStore(engine)
    created = keys.create("ci", qps=2, max_in_flight=3, models=["wan2.6-t2i"])
    assert created.app_id.startswith("ak_") and created.secret.startswith("sk-ig-")
    with db.read(engine) as conn:
        row = conn.execute(select(db.api_keys)).mappings().one()
    assert created.secret not in {str(value) for value in row.values()}
    assert row["secret_hash"] == hashlib.sha256(created.secret.encode()).hexdigest()
    key = keys.authenticate(created.secret)
    assert key is not None and key.id == created.app_id
    assert (key.qps, key.max_in_flight, key.models) == (2.0, 3, ("wan2.6-t2i",))
    assert key.allows("wan2.6-t2i") and not key.allows("wan2.2-t2i-flash")


def test_wrong_secrets_and_pairs_fail(engine: Engine) -> None:
    keys = SqlKeyStore(engine)
    one, two = keys.create("one"), keys.create("two")
    assert keys.authenticate("") is None
    assert keys.authenticate(one.secret + "x") is None
    assert keys.authenticate_pair(one.app_id, one.secret) is not None
    assert keys.authenticate_pair(one.app_id, two.secret) is None
    assert keys.authenticate_pair("ak_nope", one.secret) is None


def test_revoke_ends_the_key_and_its_tokens(engine: Engine) -> None:
    keys = SqlKeyStore(engine)
    created = keys.create("temp")
    token, _ = keys.issue_token(created.key)
    assert keys.check_token(token) is not None
    assert keys.revoke(created.app_id)
    assert not keys.revoke(created.app_id)
    assert keys.authenticate(created.secret) is None
    assert keys.authenticate_pair(created.app_id, created.secret) is None
    assert keys.check_token(token) is None
    listed = {record.key.id: record for record in keys.list()}
    assert listed[created.app_id].key.revoked and listed[created.app_id].revoked_at is not None
    assert keys.list(include_revoked=False) == []


def test_tokens_expire_with_a_unix_timestamp(engine: Engine) -> None:
    keys = SqlKeyStore(engine)
    created = keys.create()
    token, expire_in = keys.issue_token(created.key, ttl_seconds=86400)
    assert abs(expire_in - (time.time() + 86400)) < 5
    key = keys.check_token(token)
    assert key is not None and key.id == created.app_id
    second, _ = keys.issue_token(created.key)
    assert keys.check_token(token) is not None and keys.check_token(second) is not None
    short, _ = keys.issue_token(created.key, ttl_seconds=1)
    assert keys.check_token(short) is not None
    time.sleep(1.1)
    assert keys.check_token(short) is None
    assert keys.check_token("at-ig-forged") is None
    assert keys.prune_tokens() == 1


def test_default_key_is_created_only_on_first_start(engine: Engine) -> None:
    keys = SqlKeyStore(engine)
    created = keys.ensure_default_key()
    assert created is not None and keys.authenticate(created.secret) is not None
    assert keys.ensure_default_key() is None
    assert [record.key.name for record in keys.list()] == ["default"]


def test_limits_are_checked(engine: Engine) -> None:
    keys = SqlKeyStore(engine)
    with pytest.raises(ValueError, match="qps"):
        keys.create(qps=0)
    with pytest.raises(ValueError, match="max_in_flight"):
        keys.create(max_in_flight=0)
