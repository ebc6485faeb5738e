"""/v1/uploads: send a file to be indexed.

`POST /v1/uploads {filename, size, content_type}` makes an upload and says where to send the bytes:
- in the cloud (a source bucket is configured): V4 signed URLs into
  `gs://BUCKET/<org>/uploads/<id>/<filename>`: `upload_url` (one PUT) and `resumable_url` (POST with
  `x-goog-resumable: start`, then PUT to the session URI it answers, in pieces); the bucket trigger
  indexes the object as any other, and GET /v1/uploads/<id> follows its asset;
- embedded: `PUT /v1/uploads/<id>/content` on this API, streamed into HEIMDEX_HOME/uploads/<org>/<id>/
  and then indexed in the background.
`Idempotency-Key` returns the same upload for a repeated request (409 if it named another file). Limits:
HEIMDEX_UPLOAD_MAX_BYTES (413), video types only (415); file names are sanitised (`safe_name`).
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import Any, ClassVar

from flask import request
from flask_openapi3 import OpenAPI, Tag
from flask_openapi3.models import RawModel

from heimdex.api import errors
from heimdex.api.context import BEARER, ApiContext, dump, error_responses, not_found, org
from heimdex.api.models import IdempotencyHeader, Upload, UploadBody, UploadPath

UPLOADS = Tag(name="uploads", description="Send files to be indexed")
ERRORS = error_responses(400, 401, 404, 409, 413, 415, 503)
CHUNK = 1024 * 1024
MAX_NAME_BYTES = 200
VIDEO_TYPE = re.compile(r"video/[A-Za-z0-9!#$&^_.+-]+", re.IGNORECASE)


class UploadBytes(RawModel):
    mimetypes: ClassVar[list[str]] = ["application/octet-stream"]  # type: ignore[misc]


def safe_name(raw: str) -> str:
    """A file name that is one path segment on every system: the last segment of what was sent,
    NFC, without control, separator or shell-special characters, no leading dot, at most
    MAX_NAME_BYTES of UTF-8 (the extension kept)."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch if (ch.isalnum() or ch in "._- ") else "_" for ch in name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    name = re.sub(r"_+", "_", name)
    stem, suffix = os.path.splitext(name)
    suffix = suffix[:16]
    while len((stem + suffix).encode()) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return (stem.strip(" .") or "upload") + suffix


def is_video(content_type: str) -> bool:
    return VIDEO_TYPE.fullmatch(content_type.strip()) is not None


def upload_model(row: dict[str, Any], upload_url: str | None, resumable_url: str | None = None) -> Upload:
    pending = row["status"] == "pending"
    return Upload(
        upload_id=row["upload_id"],
        status=row["status"],
        filename=row["filename"],
        size=row["size"],
        content_type=row["content_type"],
        source=row["source"],
        upload_url=upload_url if pending else None,
        upload_method="PUT" if upload_url and pending else None,
        resumable_url=resumable_url if pending else None,
        asset_id=row["asset_id"],
        error=row["error"],
    )


ASSET_TO_UPLOAD = {"processing": "indexing", "ready": "ready", "failed": "failed"}


def asset_of(result: Any) -> str | None:
    """The asset id of an index() result: a finished job (its ref) or a skipped file."""
    ref = getattr(result, "ref", None)
    found = ref.asset_id if ref is not None else getattr(result, "asset_id", None)
    return str(found) if found else None


def register(app: OpenAPI, ctx: ApiContext) -> None:
    engine = ctx.engine
    settings = engine.settings
    cloud_bucket = settings.upload_bucket or (settings.source_buckets[0] if settings.source_buckets else None)

    def where(upload_id: str, filename: str) -> str:
        if cloud_bucket:
            return f"gs://{cloud_bucket}/{org()}/uploads/{upload_id}/{filename}"
        return str(Path(settings.home).absolute() / "uploads" / org() / upload_id / filename)

    def answer(row: dict[str, Any], status: int = 200) -> Any:
        if row["status"] != "pending":
            return dump(upload_model(row, None), status)
        if row["source"].startswith("gs://"):
            ttl, kind = settings.media_url_ttl_s, row["content_type"]
            put = engine.signed_upload_url(row["source"], kind, ttl)
            resumable = engine.signed_upload_url(row["source"], kind, ttl, resumable=True)
            return dump(upload_model(row, put, resumable), status)
        return dump(upload_model(row, f"{ctx.base()}/v1/uploads/{row['upload_id']}/content"), status)

    def progress(row: dict[str, Any]) -> dict[str, Any]:
        """Cloud: the bucket trigger indexes the object; the upload follows its asset."""
        if row["status"] != "pending" or not row["source"].startswith("gs://"):
            return row
        found = engine.resolve_assets(row["source"], org=org())
        if not found:
            return row
        asset = found[0]
        return {
            **row,
            "status": ASSET_TO_UPLOAD[asset["status"]],
            "asset_id": asset["asset_id"],
            "error": asset["error"],
        }

    @app.post(
        "/v1/uploads",
        tags=[UPLOADS],
        security=BEARER,
        responses={200: Upload, 201: Upload, **ERRORS},
    )
    def create(body: UploadBody, header: IdempotencyHeader) -> Any:
        """Make an upload (201), or answer the one an earlier request with this Idempotency-Key made (200)."""
        if body.size > settings.upload_max_bytes:
            return errors.error(
                413, "payload_too_large", f"uploads are limited to {settings.upload_max_bytes} bytes"
            )
        filename = safe_name(body.filename)
        if not is_video(body.content_type):
            return errors.error(415, "unsupported_media_type", "only video files can be uploaded")
        upload_id = "upl-" + secrets.token_hex(12)
        fields = {
            "upload_id": upload_id,
            "key": header.idempotency_key or upload_id,
            "filename": filename,
            "size": body.size,
            "content_type": body.content_type,
            "source": where(upload_id, filename),
        }
        row, made = engine.create_upload(fields, org=org())
        if not made and (row["filename"], row["size"], row["content_type"]) != (
            filename,
            body.size,
            body.content_type,
        ):
            return errors.error(409, "conflict", "this Idempotency-Key was used for another upload")
        return answer(row, 201 if made else 200)

    @app.get("/v1/uploads/<upload_id>", tags=[UPLOADS], security=BEARER, responses={200: Upload, **ERRORS})
    def status(path: UploadPath) -> Any:
        """An upload: pending (bytes not yet received), received, indexing, ready (asset_id) or failed."""
        row = engine.upload(path.upload_id, org=org())
        if row is None:
            return not_found("upload")
        return answer(progress(row))

    @app.put(
        "/v1/uploads/<upload_id>/content",
        tags=[UPLOADS],
        security=BEARER,
        responses={200: Upload, **ERRORS},
    )
    def content(path: UploadPath, raw: UploadBytes) -> Any:
        """Embedded: the file's bytes, streamed to disk (exactly the size declared), then indexed."""
        row = engine.upload(path.upload_id, org=org())
        if row is None:
            return not_found("upload")
        if row["source"].startswith("gs://"):
            return errors.error(409, "conflict", "send this upload's bytes to its signed upload_url")
        if not engine.claim_upload(path.upload_id, org=org()):  # one sender at a time
            return errors.error(409, "conflict", f"this upload is {row['status']} already")
        dest = Path(row["source"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        got, refused = 0, None
        try:
            with os.fdopen(fd, "wb") as fh:
                while chunk := request.stream.read(CHUNK):
                    got += len(chunk)
                    if got > row["size"]:
                        too_many = f"more than the {row['size']} bytes declared"
                        refused = errors.error(413, "payload_too_large", too_many)
                        break
                    fh.write(chunk)
            if refused is None and got != row["size"]:
                short = f"got {got} of the {row['size']} bytes declared"
                refused = errors.error(400, "invalid_request", short)
            if refused is None:
                os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if refused is not None or not dest.exists():
                engine.update_upload(path.upload_id, org=org(), status="pending")  # send it again
        if refused is not None:
            return refused
        engine.update_upload(path.upload_id, org=org(), status="received")
        index_upload(path.upload_id, dest, org())
        return dump(upload_model({**row, "status": "received"}, None))

    def index_upload(upload_id: str, path: Path, org_id: str) -> None:
        if not hasattr(engine, "index"):
            return

        def run() -> None:
            try:  # the asset it becomes, named while it is indexed: a page follows its progress
                asset_id: str | None = engine.asset_ref(path, org_id).asset_id
            except OSError:
                asset_id = None
            engine.update_upload(upload_id, org=org_id, status="indexing", asset_id=asset_id)
            try:
                (result,) = engine.index([path], org=org_id)
                ok = result.status == "ready"
                engine.update_upload(
                    upload_id,
                    org=org_id,
                    status="ready" if ok else "failed",
                    asset_id=getattr(result, "asset_id", None)
                    or getattr(getattr(result, "ref", None), "asset_id", None),
                    error=None if ok else (result.error or "indexing failed"),
                )
            except Exception as exc:
                engine.update_upload(upload_id, org=org_id, status="failed", error=str(exc)[:500])

        threading.Thread(target=run, name=f"upload-{upload_id}", daemon=True).start()

    del create, status, content
