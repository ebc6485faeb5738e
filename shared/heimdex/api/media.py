"""/v1/media: what signed media URLs (signing.py) open, without an Authorization header.

- `video`: files on this machine, and Drive files (read a range at a time with the organisation's
  own Drive credentials), are streamed with HTTP Range (ranges.py) so a player can seek;
  bucket sources redirect (302) to a short-lived V4 signed (gs://) or presigned (s3://) URL;
- `thumbnails/<scene>.jpg`: a scene's thumbnail, read from the derived store;
- `faces/<face>.jpg`: a face track's crop (people covers and appearances), only the organisation's
  own (another organisation's face id is a 404, whatever the signature).

A URL whose organisation, asset, object or expiry was altered, or that expired, is refused (403)
before anything is looked up; an asset deleted since is 404.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Iterator
from typing import Any

from flask import Response, redirect, request
from flask_openapi3 import OpenAPI, Tag

from heimdex.adapters.drive_access import AccessLost
from heimdex.api import errors
from heimdex.api.context import ApiContext, error_responses, not_found
from heimdex.api.models import FacePath, MediaPath, Signature, ThumbnailPath
from heimdex.api.ranges import byte_range, bytes_chunks, file_chunks
from heimdex.domain import MediaError

MEDIA = Tag(name="media", description="Signed URLs an <img> or <video> tag loads without credentials")


def _binary(media_type: str, what: str) -> dict[str, Any]:
    return {"description": what, "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}


DRIVE_CHUNK = 4 * 1024 * 1024  # bytes a Drive request reads while streaming
RESPONSES = error_responses(400, 403, 404, 416, 501, 503)


def _refused() -> Response:
    return errors.error(403, "forbidden", "the media URL is invalid or has expired")


def ranged(size: int, etag: str, media_type: str, chunks: Any) -> Response:
    """A 200, 206 or 416 answer for the request's Range (RFC 9110); `chunks(first, length)`."""
    rng = byte_range(request.headers.get("Range"), size, if_range=request.headers.get("If-Range"), etag=etag)
    if rng.status == 416:
        resp = errors.error(416, "range_not_satisfiable", f"the range is outside the {size} bytes")
        resp.headers["Content-Range"] = f"bytes */{size}"
        resp.headers["Accept-Ranges"] = "bytes"
        return resp
    body: Iterator[bytes] = iter(()) if request.method == "HEAD" else chunks(rng.first, rng.length)
    resp = Response(body, status=rng.status, mimetype=media_type, direct_passthrough=True)
    resp.headers["Accept-Ranges"] = "bytes"
    resp.headers["ETag"] = etag
    resp.headers["Cache-Control"] = "private, max-age=300"
    resp.content_length = rng.length if size else 0
    if rng.status == 206:
        resp.headers["Content-Range"] = f"bytes {rng.first}-{rng.last}/{size}"
    return resp


def register(app: OpenAPI, ctx: ApiContext) -> None:
    engine = ctx.engine

    @app.get(
        "/v1/media/<org_id>/<asset_id>/video",
        tags=[MEDIA],
        responses={
            200: _binary("video/mp4", "the whole file"),
            206: _binary("video/mp4", "the requested byte range"),
            302: {"description": "to a signed bucket URL"},
            **RESPONSES,
        },
    )
    def video(path: MediaPath, query: Signature) -> Any:
        """The asset's original media: streamed with Range (files) or redirected (bucket objects)."""
        if not ctx.signer.verify(path.org_id, path.asset_id, "video", query.exp, query.sig):
            return _refused()
        row = engine.asset(path.asset_id, org=path.org_id)
        if row is None:
            return not_found()
        source: str = row["source"]
        signed = engine.signed_source_url(source, ctx.signer.ttl_s)
        if signed:
            return redirect(signed, 302)
        if source.startswith("drive://"):
            return drive_media(path.org_id, source)
        if "://" in source:
            return errors.error(501, "not_implemented", "streaming this kind of source is not supported")
        try:
            st = os.stat(source)
        except OSError:
            return errors.error(404, "not_found", "the original file is gone")
        media_type = mimetypes.guess_type(source)[0] or "application/octet-stream"
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        return ranged(st.st_size, etag, media_type, lambda first, n: file_chunks(source, first, n))

    def drive_media(org_id: str, source: str) -> Response:
        """A Drive file streamed with the organisation's own Drive credentials, a range at a time."""
        sources = engine.sources.for_org(org_id)
        try:
            info = sources.stat(source)
        except AccessLost as exc:  # the organisation's grant was revoked, or nothing maps the folder
            return errors.error(403, "source_access_lost", str(exc))
        except MediaError:  # Drive answers 404: the file is gone
            return errors.error(404, "not_found", "the original file is gone")
        media_type = mimetypes.guess_type(source)[0] or "video/mp4"

        def chunks(first: int, length: int) -> Iterator[bytes]:
            end = first + length
            while first < end:
                last = min(first + DRIVE_CHUNK, end) - 1
                yield sources.read_range(source, first, last)
                first = last + 1

        return ranged(info.size, f'"{info.version}"', media_type, chunks)

    @app.get(
        "/v1/media/<org_id>/<asset_id>/thumbnails/<index>.jpg",
        tags=[MEDIA],
        responses={
            200: _binary("image/jpeg", "the thumbnail"),
            206: _binary("image/jpeg", "a byte range"),
            **RESPONSES,
        },
    )
    def thumbnail(path: ThumbnailPath, query: Signature) -> Any:
        """A scene's thumbnail (JPEG)."""
        obj = f"thumbnails/{path.index}.jpg"
        if not ctx.signer.verify(path.org_id, path.asset_id, obj, query.exp, query.sig):
            return _refused()
        row = engine.scene(path.asset_id, int(path.index), org=path.org_id)
        if row is None or not row["thumbnail"]:
            return not_found("thumbnail")
        data: bytes = engine.derived.read_bytes(row["thumbnail"])
        etag = f'"{path.asset_id}-{path.index}"'
        return ranged(len(data), etag, "image/jpeg", lambda first, n: bytes_chunks(lambda: data, first, n))

    @app.get(
        "/v1/media/<org_id>/<asset_id>/faces/<face_id>.jpg",
        tags=[MEDIA],
        responses={
            200: _binary("image/jpeg", "the face crop"),
            206: _binary("image/jpeg", "a byte range"),
            **RESPONSES,
        },
    )
    def face(path: FacePath, query: Signature) -> Any:
        """A face track's crop (JPEG): a person's cover or one of their appearances."""
        if not ctx.signer.verify(
            path.org_id, path.asset_id, f"faces/{path.face_id}.jpg", query.exp, query.sig
        ):
            return _refused()
        data = engine.face_crop(path.asset_id, int(path.face_id), org=path.org_id)
        if data is None:
            return not_found("face")
        etag = f'"{path.asset_id}-face-{path.face_id}"'
        return ranged(len(data), etag, "image/jpeg", lambda first, n: bytes_chunks(lambda: data, first, n))

    del video, thumbnail, face
