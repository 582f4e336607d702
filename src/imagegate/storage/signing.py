"""Signed, expiring links to stored images: HMAC-SHA256 over the path and the expiry.

``sign("/files/ab/cd/<sha>.png")`` gives ``/files/ab/cd/<sha>.png?expires=<unix>&signature=<hex>``.
Changing one character of the path, the expiry or the signature makes ``verify`` fail, and so
does an expiry in the past. The secret is created on the first start and kept in the database
(``settings`` table), so links stay valid across restarts and across nodes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from sqlalchemy import Engine

from imagegate.storage.settings import get_or_create_setting

DEFAULT_EXPIRES_IN = 24 * 3600
SECRET_SETTING = "url_signing_secret"


class HmacUrlSigner:
    """Implements ``server.context.UrlSigner``."""

    def __init__(
        self,
        secret: bytes | str,
        *,
        default_expires_in: int = DEFAULT_EXPIRES_IN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret.encode() if isinstance(secret, str) else secret
        if len(self._secret) < 16:
            raise ValueError("the URL signing secret must be at least 16 bytes")
        self.default_expires_in = default_expires_in
        self._clock = clock

    @classmethod
    def from_database(cls, engine: Engine, **options: object) -> HmacUrlSigner:
        """The signer whose secret is stored in the database (created on first use)."""
        secret = get_or_create_setting(engine, SECRET_SETTING, lambda: secrets.token_hex(32))
        return cls(secret, **options)  # type: ignore[arg-type]

    def signature(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, path: str, expires_in: int | None = None) -> str:
        lifetime = self.default_expires_in if expires_in is None else expires_in
        expires = int(self._clock()) + int(lifetime)
        separator = "&" if "?" in path else "?"
        return f"{path}{separator}expires={expires}&signature={self.signature(path, expires)}"

    def verify(self, path: str, expires: str, signature: str) -> bool:
        if not expires or not expires.isdigit() or not signature:
            return False
        when = int(expires)
        expected = self.signature(path, when)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return False
        return self._clock() <= when
