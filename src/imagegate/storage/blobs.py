"""BlobStore: result images as content-addressed files under ``<data_dir>/blobs``.

A blob's name is the sha256 of its bytes, fanned out as ``ab/cd/<sha>.<ext>`` so no folder
grows huge. The same image stored twice is one file. Files are only ever moved into place
(``os.replace`` from a temporary file in the same folder tree), so a reader never sees half a
file and a crash leaves at most a ``.part-*`` temporary, which the retention sweep removes.

A blob is addressed by its relative path (``ab/cd/<sha>.png``); that is what tasks store and
what the gateway serves under ``/files/<path>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_BLOB_PATH = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})\.(png|jpg|webp|gif|bin)$")
TEMP_PREFIX = ".part-"

_CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bin": "application/octet-stream",
}


@dataclass(frozen=True)
class Blob:
    sha256: str
    path: str  # relative: "ab/cd/<sha>.png"
    size: int
    content_type: str


def sniff_extension(head: bytes) -> str:
    """The file type from its first bytes (upstreams do not always say, or say it right)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return "bin"


class BlobStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(exist_ok=True)

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh path in the store's own file system, for a provider to download into."""
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix=TEMP_PREFIX, suffix=suffix)
        os.close(fd)
        return Path(name)

    def put_file(self, source: Path | str) -> Blob:
        """Move ``source`` into the store (deleting it); return the blob it became."""
        source = Path(source)
        digest = hashlib.sha256()
        with source.open("rb") as handle:
            head = handle.read(16)
            digest.update(head)
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        ext = sniff_extension(head)
        rel = f"{sha[:2]}/{sha[2:4]}/{sha}.{ext}"
        dest = self.root / rel
        size = source.stat().st_size
        if dest.exists():
            source.unlink()  # dedup: the same bytes are already stored
            os.utime(dest)  # fresh mtime: the retention sweep's grace period covers it again
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.parent.resolve() == dest.parent.resolve() or _same_device(source, dest):
                os.replace(source, dest)
            else:  # another file system: copy next to the target, then move atomically
                staged = self._stage_copy(source, dest.parent)
                os.replace(staged, dest)
                source.unlink()
        return Blob(sha, rel, size, _CONTENT_TYPES[ext])

    def put_bytes(self, data: bytes) -> Blob:
        temp = self.temp_path()
        temp.write_bytes(data)
        return self.put_file(temp)

    def resolve(self, rel: str) -> Path | None:
        """The file of a blob path, or None when the path is malformed or the blob is gone.

        Only paths of the exact ``ab/cd/<sha>.<ext>`` shape are accepted, so a request path
        can never escape the store.
        """
        match = _BLOB_PATH.match(rel)
        if (
            not match
            or match.group(1) != match.group(3)[:2]
            or match.group(2) != match.group(3)[2:4]
        ):
            return None
        path = self.root / rel
        return path if path.is_file() else None

    def path(self, rel: str) -> Path:
        """Where a blob lives (whether or not it exists)."""
        return self.root / rel

    def open(self, rel: str) -> BinaryIO:
        path = self.resolve(rel)
        if path is None:
            raise FileNotFoundError(f"blob {rel!r} is not in the store")
        return path.open("rb")

    def content_type(self, rel: str) -> str:
        return _CONTENT_TYPES.get(rel.rsplit(".", 1)[-1], "application/octet-stream")

    def iter_blobs(self) -> Iterator[str]:
        """Every stored blob path."""
        for path in self.root.glob("??/??/*"):
            rel = path.relative_to(self.root).as_posix()
            if _BLOB_PATH.match(rel):
                yield rel

    def delete(self, rel: str) -> bool:
        path = self.resolve(rel)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        return True

    def sweep(self, keep: set[str], grace_seconds: float = 3600.0) -> int:
        """Delete blobs not in ``keep`` and stale temporaries, if older than ``grace_seconds``.

        The grace period protects a file a worker has just stored but not yet recorded in
        its task.
        """
        cutoff = time.time() - grace_seconds
        removed = 0
        for rel in list(self.iter_blobs()):
            if rel in keep:
                continue
            path = self.root / rel
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        for temp in self.tmp_dir.glob(f"{TEMP_PREFIX}*"):
            try:
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
            except FileNotFoundError:
                continue
        return removed

    def _stage_copy(self, source: Path, folder: Path) -> Path:
        fd, name = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
        with os.fdopen(fd, "wb") as out, source.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                out.write(chunk)
        return Path(name)


def _same_device(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.parent.stat().st_dev
    except OSError:
        return False
