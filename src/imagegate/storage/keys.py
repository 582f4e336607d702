"""imagegate's own API keys and Chanjing-style access tokens.

A key is a public ``app_id`` (``ak_…``) plus a secret (``sk-ig-…``, 256 random bits) shown once
at creation. Only ``sha256(secret)`` is stored. Not bcrypt/argon2 on purpose: those slow hashes
protect low-entropy human passwords from guessing; a 256-bit random secret cannot be guessed,
and a fast hash lets every request find its key with one indexed lookup instead of spending
~100 ms of CPU per call.

Chanjing access tokens are rows in ``access_tokens`` (again only the hash is stored), not
stateless signed tokens: they survive restarts, every node of a deployment sees them, and
revoking a key ends its tokens at once. Issuing a new token does not end the older ones (the
"new token invalidates the old" rumour in the protocol notes is unconfirmed, and several
clients sharing one key pair would keep logging each other out).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.engine import RowMapping

from imagegate.storage import db
from imagegate.storage.db import access_tokens, api_keys, utcnow
from imagegate.types import ApiKey

SECRET_PREFIX = "sk-ig-"
APP_ID_PREFIX = "ak_"
TOKEN_PREFIX = "at-ig-"
DEFAULT_QPS = 5.0
DEFAULT_MAX_IN_FLIGHT = 20


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    """A key as ``imagegate keys list`` shows it."""

    key: ApiKey
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its secret, which is never shown again."""

    key: ApiKey
    secret: str

    @property
    def app_id(self) -> str:
        return self.key.id


class SqlKeyStore:
    """Implements ``server.context.KeyStore``, plus the admin side (create, list, revoke)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        name: str = "",
        *,
        qps: float = DEFAULT_QPS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        models: Sequence[str] = (),
        is_default: bool = False,
    ) -> CreatedKey:
        if qps <= 0:
            raise ValueError(f"qps must be greater than 0, got {qps}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        app_id = APP_ID_PREFIX + secrets.token_hex(12)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        with db.write(self.engine) as conn:
            conn.execute(
                api_keys.insert().values(
                    id=app_id,
                    name=name,
                    secret_hash=hash_secret(secret),
                    qps=float(qps),
                    max_in_flight=int(max_in_flight),
                    models=list(models),
                    created_at=utcnow(),
                    is_default=is_default,
                )
            )
        key = ApiKey(
            id=app_id, name=name, qps=qps, max_in_flight=max_in_flight, models=tuple(models)
        )
        return CreatedKey(key, secret)

    def ensure_default_key(self) -> CreatedKey | None:
        """On the first start (no key at all), create one and return it with its secret."""
        with db.read(self.engine) as conn:
            if conn.execute(select(api_keys.c.id).limit(1)).first() is not None:
                return None
        return self.create("default", is_default=True)

    def get(self, app_id: str) -> ApiKey | None:
        with db.read(self.engine) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == app_id)).mappings().first()
        return _key(row) if row else None

    def list(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with db.read(self.engine) as conn:
            rows = conn.execute(query).mappings().all()
        return [KeyRecord(_key(row), row["created_at"], row["revoked_at"]) for row in rows]

    def revoke(self, app_id: str) -> bool:
        """Revoke a key and end its access tokens; False when no such active key exists."""
        with db.write(self.engine) as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == app_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            conn.execute(delete(access_tokens).where(access_tokens.c.key_id == app_id))
        return result.rowcount == 1

    # ---- server.context.KeyStore -----------------------------------------------------------

    def authenticate(self, secret: str) -> ApiKey | None:
        if not secret:
            return None
        with db.read(self.engine) as conn:
            row = (
                conn.execute(
                    select(api_keys).where(
                        api_keys.c.secret_hash == hash_secret(secret),
                        api_keys.c.revoked_at.is_(None),
                    )
                )
                .mappings()
                .first()
            )
        return _key(row) if row else None

    def authenticate_pair(self, app_id: str, secret: str) -> ApiKey | None:
        if not app_id or not secret:
            return None
        with db.read(self.engine) as conn:
            row = (
                conn.execute(
                    select(api_keys).where(api_keys.c.id == app_id, api_keys.c.revoked_at.is_(None))
                )
                .mappings()
                .first()
            )
        if row is None or not hmac.compare_digest(row["secret_hash"], hash_secret(secret)):
            return None
        return _key(row)

    def issue_token(self, key: ApiKey, ttl_seconds: int = 86400) -> tuple[str, int]:
        """A new access token and its expiry as a Unix timestamp (Chanjing's ``expire_in``)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        with db.write(self.engine) as conn:
            conn.execute(
                access_tokens.insert().values(
                    token_hash=hash_secret(token),
                    key_id=key.id,
                    created_at=now,
                    expires_at=expires,
                )
            )
        return token, int(expires.timestamp())

    def check_token(self, token: str) -> ApiKey | None:
        if not token:
            return None
        with db.read(self.engine) as conn:
            row = (
                conn.execute(
                    select(api_keys)
                    .join(access_tokens, access_tokens.c.key_id == api_keys.c.id)
                    .where(
                        access_tokens.c.token_hash == hash_secret(token),
                        access_tokens.c.expires_at > utcnow(),
                        api_keys.c.revoked_at.is_(None),
                    )
                )
                .mappings()
                .first()
            )
        return _key(row) if row else None

    def prune_tokens(self) -> int:
        """Delete expired access tokens (the retention sweep calls this)."""
        with db.write(self.engine) as conn:
            result = conn.execute(
                delete(access_tokens).where(access_tokens.c.expires_at <= utcnow())
            )
        return int(result.rowcount)


def _key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"] or "",
        qps=float(row["qps"]),
        max_in_flight=int(row["max_in_flight"]),
        models=tuple(row["models"] or ()),
        revoked=row["revoked_at"] is not None,
    )
