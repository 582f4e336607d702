"""Signed file URLs: valid, expired, altered."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from imagegate.storage import db
from imagegate.storage.signing import HmacUrlSigner

PATH = "/files/ab/cd/" + "ab" * 32 + ".png"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path, query["expires"][0], query["signature"][0]


def test_valid_link_verifies_and_expires_after_24_hours() -> None:
    clock = Clock(1_700_000_000.0)
    signer = HmacUrlSigner("s" * 32, clock=clock)
    path, expires, signature = parts(signer.sign(PATH))
    assert path == PATH
    assert int(expires) == 1_700_000_000 + 24 * 3600
    assert signer.verify(path, expires, signature)
    clock.now += 24 * 3600
    assert signer.verify(path, expires, signature)  # the last second still counts
    clock.now += 1
    assert not signer.verify(path, expires, signature)


def test_altered_links_fail() -> None:
    signer = HmacUrlSigner("s" * 32)
    path, expires, signature = parts(signer.sign(PATH, expires_in=60))
    assert signer.verify(path, expires, signature)
    assert not signer.verify(path.replace("ab.png", "ac.png"), expires, signature)
    assert not signer.verify(path, str(int(expires) + 1000), signature)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert not signer.verify(path, expires, flipped)
    assert not signer.verify(path, expires, "")
    assert not signer.verify(path, "", signature)
    assert not signer.verify(path, "-5", signature)
    assert not signer.verify(path, expires, signature + "00")
    assert not HmacUrlSigner("t" * 32).verify(path, expires, signature)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        HmacUrlSigner("short")


def test_secret_is_created_once_and_kept_in_the_database(tmp_path: Path) -> None:
    engine = db.open_engine(tmp_path)
    first = HmacUrlSigner.from_database(engine)
    url = first.sign(PATH)
    engine.dispose()
    engine = db.open_engine(tmp_path)
    second = HmacUrlSigner.from_database(engine)  # after a restart
    assert second.verify(*parts(url))
    engine.dispose()
