"""``GET /files/<blob path>?expires=…&signature=…``: stored images behind signed, expiring links.

Vendor image URLs die after about 24 hours; the gateway keeps its own copy and hands out links
it signed itself (``UrlSigner``: HMAC over the path and the expiry). No API key is needed to
follow a link, exactly like the vendors' OSS links, so the signature is the only gate: a
missing, altered or expired one answers 403 and reveals nothing about whether the file exists.

The blob store's own path check (``ab/cd/<sha256>.<ext>``) means a request path can never reach
outside the store, even with a valid signature.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, JSONResponse, Response

from imagegate.server.context import UrlSigner

FILES_PREFIX = "/files"
#: a cached copy may be kept at most this long, and never past the link's own expiry
MAX_CACHE_SECONDS = 86400

_CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}


def content_type_for(path: str) -> str:
    """The media type of a stored image from its extension (the store names files by type)."""
    return _CONTENT_TYPES.get(path.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def _refusal(status: int, code: str, message: str, request: Request) -> Response:
    request_id = getattr(request.state, "request_id", "")
    body = {"request_id": request_id, "code": code, "message": message}
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def files_router(
    signer: UrlSigner,
    resolve: Callable[[str], Path | None],
    *,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The ``/files`` route: check the link's signature, then stream the blob ``resolve`` finds.

    ``resolve`` maps a blob's relative path (``ab/cd/<sha>.png``) to its file, or None when the
    path is malformed or the blob is gone (``BlobStore.resolve``).
    """
    api = APIRouter()

    @api.api_route(FILES_PREFIX + "/{blob_path:path}", methods=["GET", "HEAD"])
    async def download(blob_path: str, request: Request) -> Response:
        expires = request.query_params.get("expires", "")
        signature = request.query_params.get("signature", "")
        if not expires or not signature:
            return _refusal(
                403,
                "AccessDenied",
                "This file link needs the query parameters 'expires' and 'signature' "
                "(links come from task results).",
                request,
            )
        if not signer.verify(request.url.path, expires, signature):
            return _refusal(
                403,
                "AccessDenied",
                "This file link is expired or its signature does not match: the 'signature' "
                "must be the gateway's HMAC of the path and 'expires'. Read the task again "
                "for a fresh link.",
                request,
            )
        found = resolve(blob_path)
        if found is None:
            return _refusal(
                404,
                "NotFound",
                "The file this link points to is no longer stored (retention period over).",
                request,
            )
        remaining = max(0, min(MAX_CACHE_SECONDS, int(expires) - int(clock())))
        headers = {"Cache-Control": f"private, max-age={remaining}, immutable"}
        return FileResponse(found, media_type=content_type_for(blob_path), headers=headers)

    return api
