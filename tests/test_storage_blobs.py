"""BlobStore: content addressing, dedup, atomic moves, safe paths, the sweep."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

from PIL import Image

from imagegate.storage.blobs import BlobStore


def png(color: tuple[int, int, int], size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, "PNG")
    return out.getvalue()


def test_put_file_moves_into_content_addressed_path(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = png((255, 0, 0))
    temp = store.temp_path()
    temp.write_bytes(data)
    blob = store.put_file(temp)
    sha = hashlib.sha256(data).hexdigest()
    assert blob.sha256 == sha
    assert blob.path == f"{sha[:2]}/{sha[2:4]}/{sha}.png"
    assert blob.content_type == "image/png" and blob.size == len(data)
    assert not temp.exists()
    assert (tmp_path / "blobs" / blob.path).read_bytes() == data
    with store.open(blob.path) as handle:
        assert handle.read() == data


def test_same_bytes_are_stored_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = png((0, 255, 0))
    first = store.put_bytes(data)
    second = store.put_bytes(data)
    other = store.put_bytes(png((0, 0, 255)))
    assert first == second and other.path != first.path
    assert sorted(store.iter_blobs()) == sorted({first.path, other.path})
    assert list(store.tmp_dir.iterdir()) == []


def test_type_is_sniffed_from_content(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "JPEG")
    blob = store.put_bytes(out.getvalue())
    assert blob.path.endswith(".jpg") and blob.content_type == "image/jpeg"
    assert store.content_type(blob.path) == "image/jpeg"


def test_resolve_refuses_anything_but_blob_paths(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    (tmp_path / "secret.txt").write_text("no")
    blob = store.put_bytes(png((1, 2, 3)))
    assert store.resolve(blob.path) == tmp_path / "blobs" / blob.path
    sha = blob.sha256
    for bad in (
        "../secret.txt",
        f"{sha[:2]}/{sha[2:4]}/../../../secret.txt",
        f"/{blob.path}",
        f"00/00/{sha}.png",  # fan-out must match the hash
        f"{sha[:2]}/{sha[2:4]}/{sha}.exe",
        f"{sha[:2]}/{sha[2:4]}/{'0' * 64}.png",  # well-formed but absent
    ):
        assert store.resolve(bad) is None, bad


def test_sweep_keeps_referenced_and_recent_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    keep = store.put_bytes(png((9, 9, 9)))
    old = store.put_bytes(png((8, 8, 8)))
    fresh = store.put_bytes(png((7, 7, 7)))
    stale_temp = store.temp_path()
    past = time.time() - 7200
    for rel in (keep.path, old.path):
        os.utime(store.path(rel), (past, past))
    os.utime(stale_temp, (past, past))
    removed = store.sweep({keep.path}, grace_seconds=3600)
    assert removed == 1
    assert store.resolve(keep.path) and store.resolve(fresh.path)
    assert store.resolve(old.path) is None
    assert not stale_temp.exists()


def test_storing_again_refreshes_the_grace_period(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = png((5, 5, 5))
    blob = store.put_bytes(data)
    past = time.time() - 7200
    os.utime(store.path(blob.path), (past, past))
    store.put_bytes(data)  # a new task produced the same image
    assert store.sweep(set(), grace_seconds=3600) == 0
